"""The OpenSpiel self-play family: bots play the learner seat, the replay verifier scores.

Tasks are (game, params, seed = base_seed + i, seat = i mod players); each task
is played ``samples_per_task`` times with match seeds derived from (round, env,
task seed, sample index), so rematerializing a partition reproduces its rows.
Matches are spread in task chunks over one worker pool per process, started by the
first request worth it and reused by every later one. While the pool starts, in the
background, the requesting process plays the first chunks itself; once it runs, the
workers start after the first game and this process plays the rest of the probe
meanwhile. Each worker's last chunk goes out in pieces, so both finish together.
"""

import json
import math
import time
from concurrent.futures.process import BrokenProcessPool
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, Iterator, Mapping

import pyarrow as pa
import pyspiel

from orbit.io import lake
from orbit.envs.base import EnvOptionError, EnvSpec, GenerationRequest, default_trajectory_key
from orbit.envs.openspiel.bots import TABLE_KINDS, bot_label, make_bot
from orbit.envs.openspiel.cfr import (BEST_RESPONSE, SOLVERS, PolicyTable, params_key, policy_key, policy_table,
                                      solve_cfr)
from orbit.envs.openspiel.match import BotMatch, MatchResult, bot_chat, learner_score, play_bots
from orbit.envs.openspiel.rollout import play_policy_match
from orbit.envs.openspiel.tasks import SUPPORTED_GAMES, GameTask, TaskSpecError, load_game, match_seeds
from orbit.envs.openspiel.chat_replay import ChatReplay, history_from_chat, strip_final_prompt
from orbit.envs.openspiel.verifier import GameReplayVerifier
from orbit.io.plain_messages import chat_order
from orbit.io.schema import (RECORD_SCHEMA, SCHEMA_VERSION, batch_from_columns, encode_metadata, message,
                          plain_chat_array, record_ids, records_to_batch)
from orbit.compute.workers import POOL_STATS, batch_ipc, ipc_batch, pool_running, shutdown_pool, start_pool

CFR_ASSET = "cfr_policies"
CHUNKS_PER_WORKER = 8
PROBE_JOBS = 16
BATCH_JOBS = 512
TAIL_PIECES = 4  # each worker's last chunk of a pooled request is played in this many pieces
POOL_WORTH_S = 1.0  # estimated serial seconds below which starting worker processes does not pay off
POOL_WARM_WORTH_S = 0.05  # the same once this process's pool is running (nothing left to start)
_VALUE_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)  # as encode_metadata writes values

def game_tasks(game: str, params: Mapping[str, Any], num_tasks: int, base_seed: int) -> list[GameTask]:
    players = load_game(game, params).num_players()
    return [GameTask(game=game, seed=base_seed + i, seat=i % players, params=dict(params)) for i in range(num_tasks)]


def table_config(game: str, params: Mapping[str, Any], config: Mapping[str, Any],
                 opponent: Mapping[str, Any] | None = None) -> tuple[str, dict, int] | None:
    """(policy key, params, iterations) of the policy table a bot plays (``cfr.policy_key``: the game
    itself for CFR), None for a bot that plays none. A best response (a learner) is to the env's
    ``opponent``, whose table has that opponent's kind and iterations."""
    kind = config.get("kind")
    if kind in SOLVERS:
        return policy_key(game, kind), dict(params), int(config.get("iterations", 100))
    if kind == BEST_RESPONSE:
        opponent = opponent or {}
        base = opponent.get("kind")
        if base not in SOLVERS:
            raise ValueError(f"a best response is to a cfr or cfr_plus opponent, not {base!r}")
        return policy_key(game, BEST_RESPONSE, base), dict(params), int(opponent.get("iterations", 100))
    return None


def cfr_configs(specs: list[EnvSpec]) -> list[tuple[str, dict, int]]:
    """Every (game, params, iterations) a table bot of these envs needs (``game`` is a ``policy_key``:
    the game itself for a CFR bot); a best response comes after the policy it answers."""
    out = []
    for spec in specs:
        if spec.family != "openspiel":
            continue
        game, params = spec.options["game"], dict(spec.options.get("params") or {})
        opponent = spec.options.get("opponent") or {}
        for role in ("learner", "opponent"):
            cfg = spec.options.get(role) or {}
            items = [table_config(game, params, cfg, opponent)]
            if cfg.get("kind") == BEST_RESPONSE:
                items.insert(0, table_config(game, params, opponent))
            for item in items:
                if item is not None and item not in out:
                    out.append(item)
    return out


def cfr_table_file(lake_root: Path) -> Path:
    return lake.partition_file(lake_root, CFR_ASSET)


def unsolved_cfr_configs(specs: list[EnvSpec], lake_root: Path) -> list[tuple[str, dict, int]]:
    """The (game, params, iterations) these envs' CFR bots need that the lake's table does not hold yet."""
    path = cfr_table_file(lake_root)
    have: set = set()
    if path.exists():
        table = lake.read_table(path, columns=["game", "params", "iterations"])
        have = set(zip(*(table.column(c).to_pylist() for c in ("game", "params", "iterations"))))
    return [(g, p, i) for g, p, i in cfr_configs(specs) if (g, params_key(p), i) not in have]


def load_cfr_table(game: str, params: Mapping[str, Any], iterations: int, lake_root: Path | None) -> PolicyTable:
    """The stored CFR policy when the lake has it, else solved here."""
    if lake_root is not None and cfr_table_file(lake_root).exists():
        try:
            return policy_table(lake.read_table(cfr_table_file(lake_root)), game, params, iterations)
        except KeyError:
            pass
    return policy_table(solve_cfr(game, params, iterations), game, params, iterations)


def _ints_json(values: list[int]) -> str:
    """``_VALUE_JSON.encode`` of a list of ints (an int's JSON text is its ``str``)."""
    return f"[{', '.join(map(str, values))}]"


def _floats_json(values: list[float] | None) -> str:
    """``_VALUE_JSON.encode`` of a list of floats or None (a finite float's JSON text is its ``repr``)."""
    if values is None or not all(map(math.isfinite, values)):
        return _VALUE_JSON.encode(values)
    return f"[{', '.join(map(float.__repr__, values))}]"


def selfplay_metadata(task_json: str, learner_json: str, opponent_json: str, history: "list[int] | tuple[int, ...]",
                      returns: "list[float] | tuple[float, ...] | None", terminated: str | None) -> str:
    """``encode_metadata`` of a self-play record's metadata (task, history, returns, terminated, learner,
    opponent) from the per-task parts already encoded: the same text, keys in sorted order."""
    terminated = "null" if terminated is None else encode_basestring(terminated)
    return (f'{{"history": {_ints_json(history)}, "learner": {learner_json}, '
            f'"opponent": {opponent_json}, "returns": {_floats_json(returns)}, '
            f'"task": {task_json}, "terminated": {terminated}}}')


def task_metadata(task: GameTask) -> str:
    """``encode_metadata(task.to_json())``: the keys (game, params, seat, seed) are already in sorted order."""
    if type(task.seat) is not int or type(task.seed) is not int or type(task.game) is not str:
        return encode_metadata(task.to_json())
    params = _VALUE_JSON.encode(dict(task.params)) if task.params else "{}"
    return f'{{"game": {encode_basestring(task.game)}, "params": {params}, "seat": {task.seat}, "seed": {task.seed}}}'


class SelfplayColumns:
    """The records of a chunk of matches, gathered match by match and made into columns at the end.

    ``add_bot`` keeps what each bot match decided as flat values: its history, returns, learner
    turns and answers as tuples (which the garbage collector stops tracking), so the match's lists
    and result die with it and nothing per game waits for the batch to be traced by the collector
    again and again. ``batch`` then writes the messages (``bot_chat``), ids, scores and metadata
    texts in one pass: run between searches, that work found its code and data evicted by the search
    every time, and cost several times as much. ``add`` takes a match whose messages are written
    already. The batch equals ``records_to_batch`` of the rows ``make_record`` makes from the same
    matches."""

    def __init__(self, env_name: str, round_key: str, learner: Mapping, opponent: Mapping):
        self.env_name, self.round_key = env_name, round_key
        self.learner, self.opponent = learner, opponent
        self.tasks: list[GameTask] = []
        self.sample_idx: list[int] = []
        self.seed: list[int] = []
        self.history: list[tuple[int, ...]] = []
        self.returns: list[tuple[float, ...] | None] = []
        self.terminated: list[str | None] = []
        self.chats: list = []  # per row: a bot match's (turns, answers), or the row's messages

    def _add(self, task: GameTask, sample_idx: int, seed: int, history, returns, terminated) -> None:
        self.tasks.append(task)
        self.sample_idx.append(sample_idx)
        self.seed.append(seed)
        self.history.append(tuple(history))
        self.returns.append(None if returns is None else tuple(returns))
        self.terminated.append(terminated)

    def add_bot(self, task: GameTask, sample_idx: int, seed: int, match: BotMatch) -> None:
        self._add(task, sample_idx, seed, match.history, match.returns, match.terminated)
        if match.prompts is None:
            self.chats.append((tuple(match.turns), tuple(match.answers)))
        else:  # the turn prompts the match rendered as it played
            self.chats.append((tuple(match.turns), tuple(match.answers), tuple(match.prompts)))

    def add(self, task: GameTask, sample_idx: int, seed: int, result: MatchResult) -> None:
        self._add(task, sample_idx, seed, result.history, result.returns, result.terminated)
        self.chats.append(result.messages)

    def messages(self) -> pa.Array:
        """The messages column: plain chat given flat (``plain_chat_array``) unless a row's messages are
        not plain chat (never a bot match's), then built from the rows."""
        roles: list = []
        contents: list = []
        offsets = [0]
        rows: list[list] | None = None  # each row's messages, once one is not plain chat
        task = game = None
        for job_task, history, chat in zip(self.tasks, self.history, self.chats):
            if type(chat) is tuple:
                if job_task is not task:  # rows come task by task
                    task, game = job_task, load_game(job_task)
                texts = bot_chat(task, game, history, *chat)
                if rows is None:
                    roles += chat_order(len(texts))
                    contents += texts
                    offsets.append(len(roles))
                    continue
                chat = [message(role, text) for role, text in zip(chat_order(len(texts)), texts)]
            elif rows is None:
                if not any(m["tool_calls"] is not None or m["tool_call_id"] is not None or m["name"] is not None
                           for m in chat):
                    roles += [m["role"] for m in chat]
                    contents += [m["content"] for m in chat]
                    offsets.append(len(roles))
                    continue
                rows = _rows_messages(roles, contents, offsets)
            rows.append(chat)
        if rows is None:
            array = plain_chat_array(roles, contents, offsets)
            if array is not None:
                return array
            rows = _rows_messages(roles, contents, offsets)  # a role or content that is not a string
        return records_to_batch([{"messages": m} for m in rows], pa.schema([RECORD_SCHEMA.field("messages")])).column(0)

    def batch(self) -> pa.RecordBatch:
        policy = bot_label(self.learner)
        learner_json, opponent_json = encode_metadata(self.learner), encode_metadata(self.opponent)
        record_id, task_ids, scores, metadata = [], [], [], []
        task = None
        for job_task, sample_idx, history, returns, terminated in zip(
                self.tasks, self.sample_idx, self.history, self.returns, self.terminated):
            if job_task is not task:
                task, task_id = job_task, job_task.task_id
                ids = record_ids(self.env_name, self.round_key, task_id, "selfplay", policy)
                task_json = task_metadata(task)
            record_id.append(ids(sample_idx))
            task_ids.append(task_id)
            scores.append(learner_score(returns, task.seat))
            metadata.append(selfplay_metadata(task_json, learner_json, opponent_json, history, returns, terminated))
        columns = {"record_id": record_id, "env": self.env_name, "task_id": task_ids, "round": self.round_key,
                   "sample_idx": self.sample_idx, "source": "selfplay", "policy": policy, "seed": self.seed,
                   "messages": self.messages(), "tools": None, "score": scores, "metadata": metadata,
                   "schema_version": SCHEMA_VERSION}
        return batch_from_columns(columns, len(record_id))


def _rows_messages(roles: list, contents: list, offsets: list[int]) -> list[list[dict]]:
    """Each row's messages from the flat roles and contents (``offsets``: each row's end)."""
    return [[message(roles[i], contents[i]) for i in range(start, end)] for start, end in zip(offsets, offsets[1:])]


Tables = tuple["PolicyTable | None", "PolicyTable | None"]  # the learner's and the opponent's policy tables


def _play_into(columns: SelfplayColumns, env_name: str, round_key: str, learner: Mapping, opponent: Mapping,
               jobs: list[tuple[GameTask, int]], tables: Tables) -> SelfplayColumns:
    """Play ``jobs`` (task, sample index) in order, each match's record going into ``columns``;
    ``tables``: the (learner, opponent) bots' policy tables."""
    learner_table, opponent_table = tables
    task = game = None
    for job_task, sample_idx in jobs:
        if job_task is not task:  # jobs come task by task: per-task values are made once
            if game is None or job_task.game != task.game or job_task.params != task.params:
                game = load_game(job_task)
            task = job_task
            seed_of = match_seeds(round_key, env_name, task.seed)
        seed = seed_of(sample_idx)
        columns.add_bot(task, sample_idx, seed, play_bots(
            task, make_bot(learner, game, seed + 1, learner_table), make_bot(opponent, game, seed + 2, opponent_table),
            seed, game))
    return columns


def _play_chunk(env_name: str, round_key: str, learner: Mapping, opponent: Mapping,
                jobs: list[tuple[GameTask, int]], tables: Tables) -> pa.RecordBatch:
    """The records of ``jobs`` (task, sample index) as one batch, with the values ``make_record`` writes."""
    columns = SelfplayColumns(env_name, round_key, learner, opponent)
    return _play_into(columns, env_name, round_key, learner, opponent, jobs, tables).batch()


def _play_chunk_ipc(*args) -> bytes:
    """``_play_chunk`` on a pool worker: the batch as Arrow IPC bytes (see ``ipc_batch``)."""
    return batch_ipc(_play_chunk(*args))


def chunked(items: list, n_chunks: int) -> list[list]:
    size = max(1, -(-len(items) // max(1, n_chunks)))
    return [items[i : i + size] for i in range(0, len(items), size)]


OPTION_KEYS = ("game", "params", "learner", "opponent", "max_tokens", "pool_worth_seconds")
BOT_KEYS = {"mcts": ("kind", "simulations", "rollouts"), "cfr": ("kind", "iterations"),
            "cfr_plus": ("kind", "iterations"), "best_response": ("kind",), "simple_gin_rummy": ("kind",),
            "random": ("kind",)}
# Games whose policy tables are solved in seconds (the table bots: cfr, cfr_plus, best_response)
TABLE_GAMES = frozenset({"kuhn_poker", "leduc_poker", "liars_dice", "goofspiel"})


def _positive_int(key: str, value: Any, high: int) -> None:
    if type(value) is not int or not 1 <= value <= high:
        raise EnvOptionError(key, f"expected a whole number from 1 to {high}, got {value!r}")


def check_bot(key: str, config: Any) -> None:
    if not isinstance(config, Mapping):
        raise EnvOptionError(key, f"expected a table such as {{ kind = \"mcts\", simulations = 50 }}, got {config!r}")
    kind = config.get("kind", "random")
    if kind not in BOT_KEYS:
        raise EnvOptionError(f"{key}.kind", f"unknown bot {kind!r}; expected one of {', '.join(BOT_KEYS)}")
    for k, v in config.items():
        if k not in BOT_KEYS[kind]:
            raise EnvOptionError(f"{key}.{k}", f"not an option of a {kind} bot (it takes {', '.join(BOT_KEYS[kind])})")
        if k != "kind":
            _positive_int(f"{key}.{k}", v, 10_000_000)


class OpenSpielFamily:
    name = "openspiel"

    def check(self, spec: EnvSpec) -> None:
        """The env's options: a supported game that loads with its params, and bots this family has."""
        for key in spec.options:
            if key not in OPTION_KEYS:
                raise EnvOptionError(key, f"not an option of the openspiel family (it takes {', '.join(OPTION_KEYS)})")
        game = spec.options.get("game")
        if game not in SUPPORTED_GAMES:
            raise EnvOptionError("game", f"unsupported game {game!r}; supported: {', '.join(SUPPORTED_GAMES)}")
        params = spec.options.get("params") or {}
        if not isinstance(params, Mapping):
            raise EnvOptionError("params", "expected a table of game parameters")
        try:
            load_game(game, dict(params))
        except Exception as exc:  # pyspiel's own message names the parameter
            raise EnvOptionError("params", f"{game} does not load with {dict(params)}: {exc}") from exc
        for role in ("learner", "opponent"):
            if role in spec.options:
                check_bot(role, spec.options[role])
        loaded = load_game(game, dict(params))
        for role in ("learner", "opponent"):
            kind = (spec.options.get(role) or {}).get("kind", "random")
            if kind == "mcts" and loaded.get_type().information != pyspiel.GameType.Information.PERFECT_INFORMATION:
                raise EnvOptionError(f"{role}.kind", f"{game} is a game of imperfect information, and MCTS "
                                     "searches the true state (it would see hidden cards and dice); use a policy "
                                     "table (cfr, cfr_plus, best_response) or random")
            if kind in TABLE_KINDS and game not in TABLE_GAMES:
                raise EnvOptionError(f"{role}.kind", f"a {kind} bot needs a solved policy table, solved only for "
                                     f"{', '.join(sorted(TABLE_GAMES))}")
            if kind == "simple_gin_rummy" and game != "gin_rummy":
                raise EnvOptionError(f"{role}.kind", "the simple_gin_rummy bot plays gin_rummy only")
        if (spec.options.get("opponent") or {}).get("kind") == BEST_RESPONSE:
            raise EnvOptionError("opponent.kind", "best_response is a learner: the best response to the opponent")
        if (spec.options.get("learner") or {}).get("kind") == BEST_RESPONSE and \
                (spec.options.get("opponent") or {}).get("kind") not in SOLVERS:
            raise EnvOptionError("learner.kind", "a best_response learner answers a cfr or cfr_plus opponent")
        if "max_tokens" in spec.options:
            _positive_int("max_tokens", spec.options["max_tokens"], 1_000_000)

    def __init__(self):
        self._cfr_tables: dict[tuple, PolicyTable] = {}

    def _cfr_table(self, request: GenerationRequest, *configs: Mapping) -> PolicyTable | None:
        """The policy table of the first of ``configs`` that plays one (a best response: to the request's
        opponent), from the lake or solved here; remembered per process."""
        game, params = request.option("game"), dict(request.option("params") or {})
        opponent = request.option("opponent") or {}
        for cfg in configs:
            table = table_config(game, params, cfg, opponent)
            if table is not None:
                key = (table[0], params_key(params), table[2], str(request.lake))
                if key not in self._cfr_tables:
                    self._cfr_tables[key] = load_cfr_table(table[0], params, table[2], request.lake)
                return self._cfr_tables[key]
        return None

    def _tables(self, request: GenerationRequest, learner: Mapping, opponent: Mapping) -> Tables:
        return self._cfr_table(request, learner), self._cfr_table(request, opponent)

    def _tasks(self, request: GenerationRequest) -> list[GameTask]:
        params = dict(request.option("params") or {})
        return game_tasks(request.option("game"), params, request.num_tasks, request.base_seed)

    def policy_tasks(self, request: GenerationRequest) -> list[tuple[str, GameTask]]:
        return [(t.task_id, t) for t in self._tasks(request)]

    async def rollout(self, request: GenerationRequest, task: GameTask, sample_idx: int, policy_id: str,
                      complete, extra_metadata: Mapping | None = None) -> dict:
        opponent = dict(request.option("opponent") or {"kind": "random"})
        return await play_policy_match(
            task, env=request.env.name, round_key=request.round_key, sample_idx=sample_idx, policy_id=policy_id,
            opponent=opponent, complete=complete, cfr_table=self._cfr_table(request, opponent),
            extra_metadata=extra_metadata,
        )

    def generate(self, request: GenerationRequest) -> Iterator[pa.RecordBatch]:
        learner = dict(request.option("learner") or {"kind": "random"})
        opponent = dict(request.option("opponent") or {"kind": "random"})
        tables = self._tables(request, learner, opponent)  # (learner's, opponent's)
        tasks = self._tasks(request)
        jobs = [(t, s) for t in tasks for s in range(request.samples_per_task)]
        args = (request.env.name, request.round_key, learner, opponent)
        # The batches depend on the sizes and workers only, never on timing or on who plays them:
        # the first job, the rest of the probe, then the chunks.
        head, rest = jobs[:PROBE_JOBS], jobs[PROBE_JOBS:]
        workers = min(request.workers, len(rest) // PROBE_JOBS or 1)
        chunks = chunked(rest, max(len(rest) // BATCH_JOBS, workers * CHUNKS_PER_WORKER if workers > 1 else 1))
        if not head:
            return
        warm = workers > 1 and pool_running(workers)
        worth = float(request.option("pool_worth_seconds", POOL_WARM_WORTH_S if warm else POOL_WORTH_S))
        started = time.perf_counter()
        first_columns = _play_into(SelfplayColumns(*args), *args, head[:1], tables)
        one_game = time.perf_counter() - started  # the match, not the batch
        first = first_columns.batch()
        if warm and one_game * len(rest) >= worth:
            # This process's pool runs already, so nothing is left to start and one game is estimate
            # enough: the workers play the chunks while this process plays the rest of the probe.
            yield from self._pooled(args, tables, workers, first, head[1:], chunks)
            return
        # Play the rest of the probe here and time it (after the first game, so one-time imports and
        # game loading do not count): starting worker processes only pays off for the rest when the
        # remaining work clearly outweighs it.
        started = time.perf_counter()
        batch = _play_chunk(*args, head[1:], tables) if len(head) > 1 else None
        estimate = (time.perf_counter() - started) / max(1, len(head) - 1) * len(rest)
        yield first
        if batch is not None:
            yield batch
        if workers <= 1 or estimate < worth:
            for chunk in chunks:
                yield _play_chunk(*args, chunk, tables)
            return
        # The pool starts in the background: meanwhile this process plays the chunks in order, and
        # hands the rest to the pool once every worker is up.
        ready = start_pool(workers)
        played = 0
        while played < len(chunks) and not ready.done():
            yield _play_chunk(*args, chunks[played], tables)
            played += 1
        if played < len(chunks):
            yield from self._pooled(args, tables, workers, None, [], chunks[played:], ready.result())

    @staticmethod
    def _pooled(args: tuple, tables: Tables, workers: int, first: pa.RecordBatch | None,
                here: list, chunks: list[list], pool=None) -> Iterator[pa.RecordBatch]:
        """``first``, the batch of ``here`` (played in this process meanwhile), then ``chunks`` played on
        the pool, in that order.

        The last ``workers`` chunks go out in TAIL_PIECES pieces each, and their batches are joined
        again (the same batch): the workers then finish within a piece of each other, where whole
        chunks left one idle for half a chunk on average. Each piece comes back as Arrow IPC bytes,
        a copy to write and a zero-copy read, where pickling a nested batch costs several times as much.
        """
        pool = pool or start_pool(workers).result()
        POOL_STATS["requests"] += 1
        tail = len(chunks) - workers
        parts = [chunked(chunk, TAIL_PIECES) if i >= tail else [chunk] for i, chunk in enumerate(chunks)]
        futures: list[list] = []
        try:
            for pieces in parts:
                futures.append([pool.submit(_play_chunk_ipc, *args, piece, tables) for piece in pieces])
            if first is not None:
                yield first
            if here:
                yield _play_chunk(*args, here, tables)
            for pieces in futures:
                batches = [ipc_batch(future.result()) for future in pieces]
                yield batches[0] if len(batches) == 1 else pa.concat_batches(batches)
        except BrokenProcessPool:
            shutdown_pool()  # a worker died: the next request starts a fresh pool
            raise
        except BaseException:
            for pieces in futures:
                for future in pieces:
                    future.cancel()
            raise

    def verifier(self, env: EnvSpec, options: Mapping[str, Any] | None = None) -> GameReplayVerifier:
        return GameReplayVerifier(env)

    def trajectory_key(self, record: Mapping[str, Any]) -> str:
        """The dedup stage's canonical trajectory of a game: the game string (name and parameters), the
        learner's seat and the whole action history (both sides and chance). A record without a readable
        task and history falls back to the text key (its prompt and final answer)."""
        try:
            meta = json.loads(record.get("metadata") or "{}")
            task, history = meta.get("task"), meta.get("history")
            if isinstance(task, dict) and isinstance(history, list) and task.get("game"):
                params = task.get("params") or {}
                params = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str) if params else "{}"
                moves = ",".join(map(str, history))
                return f"game\x00{task['game']}({params})\x00seat={task.get('seat')}\x00[{moves}]"
        except (TypeError, ValueError, RecursionError, AttributeError):
            pass
        return default_trajectory_key(record)

    def rollout_record(self, env: EnvSpec, record: dict, prefix: list, history: list | None) -> tuple[dict, str | None]:
        """A trainer rollout's record (its conversation and task, no history) made whole for the verifier:
        ``history`` when the rollout knows every action, else the history read back from the conversation
        (``chat_replay``); a closing ``Game over.`` message is the rollout's, not the record's. Returns the
        record and why the conversation could not be read to its end (None when it could)."""
        meta = json.loads(record["metadata"])
        game, params = env.options.get("game"), dict(env.options.get("params") or {})
        try:
            task = GameTask.from_json(meta.get("task"), expect=(game, params))
        except (TaskSpecError, TypeError, ValueError):
            return record, None  # the verifier names what is wrong with the task
        messages = record["messages"]
        if history is not None:
            replay = ChatReplay(history, strip_final_prompt(messages))
        else:
            replay = history_from_chat(task, prefix, messages)
        meta["history"] = replay.history
        return {**record, "messages": replay.messages, "metadata": json.dumps(meta)}, replay.problem


FAMILY = OpenSpielFamily()
