"""The textarena family: TextArena games in self-play or under a chat policy, replay-verified.

Env options (``options``): ``env_id`` (one of ``games.SUPPORTED_IDS``), ``opponent``, ``learner``,
``max_turns``, ``max_tokens``. ``check`` refuses an env it cannot run at load: an unknown id (with close
ids), a TextArena id it does not support, one that needs a download that fails offline, an unknown
option or a bad value. ``generate`` plays the learner agent (no model endpoint: source ``selfplay``,
policy ``textarena:<learner>``) in every task's seat, ``policy_tasks``/``rollout`` put a chat policy
there, ``verifier`` replays, ``rollout_record`` makes a trainer's conversation a record.

Generation runs in this process: the games step in microseconds (a Sudoku reset, the slowest, takes
milliseconds), less than a worker process would take to import TextArena. Importing this module does
not import TextArena.
"""

from typing import Any, Iterator, Mapping

import pyarrow as pa

from orbit.envs.base import EnvSpec, GenerationRequest, assistant_turns, normalise_text, prompt_digest
from orbit.envs.textarena.options import OPTION_KEYS, Options, read_options, spec_options
from orbit.envs.textarena.tasks import Task, tasks_of

BATCH_ROWS = 256


def request_options(request: GenerationRequest) -> Options:
    """The options of a request: its own over its env's."""
    return read_options(request.option)


class TextArenaFamily:
    name = "textarena"
    option_keys = OPTION_KEYS

    @staticmethod
    def trajectory_key(record: Mapping[str, Any]) -> str:
        """A text game's canonical trajectory: its prompt's hash and every move it made, normalised (the
        final answer alone would merge two games that only end alike)."""
        moves = [normalise_text(m.get("content")) for m in assistant_turns(record)]
        return f"textgame\x00{prompt_digest(record)}\x00" + "\x00".join(moves)

    def check(self, spec: EnvSpec) -> None:
        """Refuse an env this family cannot run (``EnvOptionError`` naming the option), before any round."""
        spec_options(spec.options)

    def _tasks(self, request: GenerationRequest, options: Options) -> list[Task]:
        return tasks_of(request.env.name, options.env_id, options.game.num_players, request.round_key,
                        request.base_seed, request.num_tasks)

    def policy_tasks(self, request: GenerationRequest) -> list[tuple[str, Task]]:
        return [(t.task_id, t) for t in self._tasks(request, request_options(request))]

    async def rollout(self, request: GenerationRequest, task: Task, sample_idx: int, policy_id: str,
                      complete, extra_metadata: Mapping | None = None) -> dict:
        from orbit.envs.textarena.rollout import play_policy

        return await play_policy(request_options(request), task, env=request.env.name, round_key=request.round_key,
                                 sample_idx=sample_idx, policy_id=policy_id, complete=complete,
                                 extra_metadata=extra_metadata)

    def generate(self, request: GenerationRequest) -> Iterator[pa.RecordBatch]:
        from orbit.envs.textarena.episode import selfplay_record
        from orbit.io.schema import records_to_batch

        options = request_options(request)
        rows: list[dict] = []
        for task in self._tasks(request, options):
            for sample_idx in range(request.samples_per_task):
                rows.append(selfplay_record(request.env.name, request.round_key, options, task, sample_idx))
                if len(rows) >= BATCH_ROWS:
                    yield records_to_batch(rows)
                    rows = []
        if rows:
            yield records_to_batch(rows)

    def verifier(self, env: EnvSpec, options: Mapping[str, Any] | None = None):
        from orbit.envs.textarena.verifier import TextArenaReplayVerifier

        return TextArenaReplayVerifier(env)

    def rollout_record(self, env: EnvSpec, record: dict, prefix: list, history: list | None) -> tuple[dict, str | None]:
        from orbit.envs.textarena.chat_replay import rollout_record

        return rollout_record(env, record, prefix, history)


FAMILY = TextArenaFamily()
