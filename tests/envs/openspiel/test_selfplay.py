import copy
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import generate

from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.envs.openspiel.prompts import LEGAL_HEADER
from orbit.envs.openspiel.verifier import GameReplayVerifier
from orbit.stages.verify import verify_record

GAMES = ["tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker"]


def parquet_bytes(table):
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="module")
def ttt_records():
    return generate("tic_tac_toe", n=40)


@pytest.mark.parametrize("env", GAMES)
def test_every_generated_record_verifies_to_its_claim(env):
    records = generate(env, n=10)
    verifier = GameReplayVerifier()
    for rec in records:
        verdict = verifier.verify(rec)
        assert verdict.reasons == (), (rec["task_id"], verdict)
        assert verdict.score == rec["score"]
        meta = json.loads(rec["metadata"])
        assert meta["task"]["game"] == env and rec["task_id"].startswith(env)
    # the learner's turns are chat messages: system, then user/assistant pairs answered with an ID
    rec = records[0]
    assert rec["messages"][0]["role"] == "system" and "Answer with the ID" in rec["messages"][0]["content"]
    user = rec["messages"][1]
    assert user["role"] == "user" and LEGAL_HEADER in user["content"] and " -> " in user["content"]
    assert rec["messages"][2]["role"] == "assistant" and rec["messages"][2]["content"].isdigit()


def test_generation_is_deterministic_and_parallel_matches_serial():
    a = generate("connect_four", n=48, workers=1)
    b = generate("connect_four", n=48, workers=2, pool_worth_seconds=0)  # force the process pool
    assert a == b
    c = generate("connect_four", n=48, workers=1, round_key="r0001")
    assert [r["seed"] for r in c] != [r["seed"] for r in a]


def _batches(env, n, workers, **options):
    spec = env_spec(env)
    req = GenerationRequest(env=spec, round_key="r0000", num_tasks=n, samples_per_task=1, workers=workers,
                            options=options)
    return list(family_of(spec).generate(req))


def _file_bytes(batches, tmp_path, name):
    from orbit.io import lake
    from orbit.io.schema import RECORD_SCHEMA

    return lake.write_batches(batches, RECORD_SCHEMA, tmp_path / name).read_bytes()


def test_the_pool_plays_what_it_is_handed_and_the_batches_do_not_depend_on_who_plays(tmp_path, monkeypatch):
    from concurrent.futures import ProcessPoolExecutor

    from orbit.compute import workers
    from orbit.envs.openspiel import family

    serial = _batches("connect_four", 96, 2, pool_worth_seconds=1e9)  # never a pool
    workers.start_pool(2).result()  # every worker up: the pool plays every chunk after the first game
    before = workers.POOL_STATS["requests"]
    submitted = []
    submit = ProcessPoolExecutor.submit
    monkeypatch.setattr(ProcessPoolExecutor, "submit",
                        lambda pool, fn, *a, **k: submitted.append(a[-2]) or submit(pool, fn, *a, **k))
    pooled = _batches("connect_four", 96, 2, pool_worth_seconds=0)
    monkeypatch.undo()
    assert workers.POOL_STATS["requests"] == before + 1
    assert [b.num_rows for b in pooled] == [b.num_rows for b in serial]  # the same row groups once written
    assert pa.Table.from_batches(pooled).equals(pa.Table.from_batches(serial))
    assert _file_bytes(pooled, tmp_path, "pooled.parquet") == _file_bytes(serial, tmp_path, "serial.parquet")
    # the pool got the chunks after the probe, each worker's last one in pieces, and nothing else
    chunk_rows = [b.num_rows for b in serial][2:]
    tail = [len(p) for rows in chunk_rows[-2:] for p in family.chunked(list(range(rows)), family.TAIL_PIECES)]
    assert len(tail) > 2
    assert [len(piece) for piece in submitted] == chunk_rows[:-2] + tail
    assert sum(chunk_rows) == 96 - family.PROBE_JOBS


def test_a_request_that_starts_the_pool_gives_the_batches_of_a_serial_one(tmp_path):
    """No pool running: the probe decides, the pool starts in the background while this process plays
    the first chunks, then the pool plays the rest; the batches are those of a serial request."""
    from orbit.compute import workers

    serial = _batches("tic_tac_toe", 200, 2, pool_worth_seconds=1e9)
    workers.shutdown_pool()
    pooled = _batches("tic_tac_toe", 200, 2, pool_worth_seconds=0)
    assert workers.pool_running(2)
    assert [b.num_rows for b in pooled] == [b.num_rows for b in serial]
    assert _file_bytes(pooled, tmp_path, "pooled.parquet") == _file_bytes(serial, tmp_path, "serial.parquet")


def test_a_batch_crosses_processes_as_ipc_bytes_unchanged():
    from orbit.compute.workers import batch_ipc, ipc_batch

    batch = _batches("kuhn_poker", 20, 1)[-1]
    back = ipc_batch(batch_ipc(batch))
    assert back.equals(batch) and back.schema.equals(batch.schema, check_metadata=True)
    assert back.to_pylist() == batch.to_pylist()


def test_start_pool_hands_every_caller_of_a_pool_the_same_future():
    from orbit.compute import workers

    first = workers.start_pool(1)
    assert workers.start_pool(1) is first
    assert first.result().submit(sum, [1, 2]).result() == 3
    workers.shutdown_pool()
    again = workers.start_pool(1)
    assert again is not first and again.result() is not first.result()
    assert again.result().submit(sum, [3, 4]).result() == 7


def test_a_pool_that_fails_to_start_is_dropped_and_the_next_request_starts_a_fresh_one(monkeypatch):
    import functools
    import os
    from concurrent.futures.process import BrokenProcessPool

    from orbit.compute import workers

    workers.shutdown_pool()
    monkeypatch.setattr(workers, "_ready", functools.partial(os._exit, 3))  # each new worker dies at once
    failed = workers.start_pool(1)
    with pytest.raises(BrokenProcessPool, match="a worker of the pool exited while starting"):
        failed.result(timeout=300)
    assert not workers.pool_running(1)
    monkeypatch.undo()
    fresh = workers.start_pool(1)
    assert fresh is not failed and fresh.result(timeout=300).submit(sum, [1, 2]).result() == 3


def test_a_script_without_a_main_guard_is_told_why_its_pool_broke(tmp_path):
    """The forkserver imports the main module in every worker: a script calling Orbit at its top level runs
    again there and the worker dies. The caller's error names the script and the guard."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text("from orbit.compute.workers import start_pool\n\nstart_pool(1).result(timeout=300)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("orbit.compute.workers.PoolStartFailed:")]
    assert "a worker of the pool exited while starting" in line, out.stderr[-3000:]
    assert str(script) in line and 'if __name__ == "__main__":' in line


def test_winners_pass_and_losers_fail_with_reason(ttt_records):
    outcomes = [verify_record(r, GameReplayVerifier(), 1.0) for r in ttt_records]
    assert any(p for _, p, _ in outcomes)
    for rec, (score, passed, reasons) in zip(ttt_records, outcomes):
        assert passed == (score == 1.0)
        if not passed:
            assert reasons == ["score.below_threshold"]


def test_opponent_is_configurable():
    strong = generate("tic_tac_toe", n=20, opponent={"kind": "mcts", "simulations": 300},
                      learner={"kind": "random"})
    weak = generate("tic_tac_toe", n=20, learner={"kind": "random"})
    wins = lambda rs: sum(r["score"] == 1.0 for r in rs)
    assert json.loads(strong[0]["metadata"])["opponent"] == {"kind": "mcts", "simulations": 300}
    assert wins(strong) < wins(weak)


def _first_win(records):
    return copy.deepcopy(next(r for r in records if r["score"] == 1.0 and len(r["messages"]) >= 5))


def _reasons(rec):
    return GameReplayVerifier().verify(rec).reasons


def test_tamper_illegal_action(ttt_records):
    rec = _first_win(ttt_records)
    meta = json.loads(rec["metadata"])
    # answer the second learner turn with the square the learner already took on its first turn
    first_action = int(rec["messages"][2]["content"])
    rec["messages"][4]["content"] = str(first_action)
    assert "action.illegal" in _reasons(rec)
    assert meta  # metadata untouched


def test_tamper_swapped_winner(ttt_records):
    rec = _first_win(ttt_records)
    meta = json.loads(rec["metadata"])
    meta["returns"] = list(reversed(meta["returns"]))
    rec["metadata"] = json.dumps(meta)
    assert "outcome.mismatch" in _reasons(rec)
    loser = copy.deepcopy(next(r for r in ttt_records if r["score"] == 0.0))
    loser["score"] = 1.0
    assert "score.claim_mismatch" in _reasons(loser)


def test_tamper_swapped_seat(ttt_records):
    rec = _first_win(ttt_records)
    meta = json.loads(rec["metadata"])
    meta["task"]["seat"] = 1 - meta["task"]["seat"]
    rec["metadata"] = json.dumps(meta)
    assert _reasons(rec)


def test_tamper_edited_observation(ttt_records):
    rec = _first_win(ttt_records)
    content = rec["messages"][3]["content"]
    rec["messages"][3]["content"] = content.replace(".", "x", 1)
    assert "observation.mismatch" in _reasons(rec)


def test_tamper_edited_legal_actions(ttt_records):
    rec = _first_win(ttt_records)
    rec["messages"][1]["content"] += "\n9 -> x(3,3)"
    assert "legal_actions.mismatch" in _reasons(rec)


def test_tamper_truncated_game(ttt_records):
    rec = _first_win(ttt_records)
    rec["messages"] = rec["messages"][:-2]
    assert "game.not_terminal" in _reasons(rec) or "action.history_mismatch" in _reasons(rec)
    rec2 = _first_win(ttt_records)
    meta = json.loads(rec2["metadata"])
    meta["history"] = meta["history"][:-1]
    rec2["metadata"] = json.dumps(meta)
    assert _reasons(rec2)
    rec3 = _first_win(ttt_records)
    meta = json.loads(rec3["metadata"])
    meta["history"] = meta["history"][:-1]
    rec3["metadata"] = json.dumps(meta)
    rec3["messages"] = rec3["messages"][:-2] if json.loads(rec3["metadata"])["history"] else rec3["messages"]
    assert _reasons(rec3)


def test_tamper_non_numeric_answer(ttt_records):
    rec = _first_win(ttt_records)
    rec["messages"][2]["content"] = "I play the centre"
    assert "answer.unparseable" in _reasons(rec)


def test_tamper_history_action_differs_from_answer(ttt_records):
    rec = _first_win(ttt_records)
    meta = json.loads(rec["metadata"])
    seat = meta["task"]["seat"]
    idx = meta["history"].index(int(rec["messages"][2]["content"]))
    legal_other = next(a for a in range(9) if a not in meta["history"][: idx + 1])
    meta["history"][idx] = legal_other
    rec["metadata"] = json.dumps(meta)
    assert seat in (0, 1) and _reasons(rec)


def test_bad_task_spec_is_named():
    rec = generate("kuhn_poker", n=1)[0]
    meta = json.loads(rec["metadata"])
    meta["task"]["game"] = "chess"
    rec["metadata"] = json.dumps(meta)
    assert _reasons(rec)[0].startswith("task.spec_invalid")


def chat_match(task, learner, opponent, seed, game):
    """The chat path: ``match_steps`` answered with the text ``str(learner(state))``, as a chat policy answers."""
    from orbit.envs.openspiel.match import match_steps

    steps = match_steps(task, opponent, seed, game)
    try:
        turn = next(steps)
        while True:
            turn = steps.send(str(learner(turn.state)))
    except StopIteration as stop:
        return stop.value


@pytest.mark.parametrize("env", GAMES)
def test_generated_rows_are_those_of_the_plain_record_functions(env):
    """The generator's per-task shortcuts (record ids, match seeds, metadata text, remembered prompts, bot
    matches played without text and their messages written afterwards) write exactly the rows the plain
    functions write: make_record_id, match_seed, json.dumps, turn_prompt, the chat path's match_steps."""
    from orbit.envs.openspiel import prompts
    from orbit.envs.openspiel.bots import bot_label, make_bot
    from orbit.envs.openspiel.tasks import load_game, match_seed
    from orbit.io.schema import make_record, records_to_batch

    spec = env_spec(env)
    learner, opponent = dict(spec.options["learner"]), dict(spec.options["opponent"])
    rows = generate(env, n=9, samples=3, round_key="r0002")
    prompts._GAME_TEXT.clear()  # every turn prompt rendered afresh
    tasks = family_of(spec)._tasks(GenerationRequest(env=spec, round_key="r0002", num_tasks=9, samples_per_task=3))
    cfr = family_of(spec)._cfr_table(GenerationRequest(env=spec, round_key="r0002", num_tasks=9, samples_per_task=3),
                                     learner, opponent)
    expected = []
    for task in tasks:
        for sample_idx in range(3):
            seed = match_seed("r0002", env, task.seed, sample_idx)
            game = load_game(task)
            result = chat_match(task, make_bot(learner, game, seed + 1, cfr), make_bot(opponent, game, seed + 2, cfr),
                                seed, game)
            state = game.new_initial_state()  # every user turn is the prompt of a fresh replay's state
            shown = iter(m["content"] for m in result.messages if m["role"] == "user")
            for action in result.history:
                if not state.is_chance_node() and state.current_player() == task.seat:
                    assert next(shown) == prompts.turn_prompt(state, task.seat)
                state.apply_action(action)
            expected.append(make_record(
                env=env, task_id=task.task_id, round_key="r0002", sample_idx=sample_idx, source="selfplay",
                policy=bot_label(learner), seed=seed, messages=result.messages, score=result.learner_score(task.seat),
                metadata={"task": task.to_json(), "history": result.history, "returns": result.returns,
                          "terminated": result.terminated, "learner": learner, "opponent": opponent}))
    assert rows == pa.Table.from_batches([records_to_batch(expected)]).to_pylist()
    # the generator's columns are the Arrow data (nulls and all) and the Parquet bytes of the rows
    spec_request = GenerationRequest(env=spec, round_key="r0002", num_tasks=9, samples_per_task=3)
    generated = pa.Table.from_batches(list(family_of(spec).generate(spec_request)))
    plain = pa.Table.from_batches([records_to_batch(expected)])
    assert generated.equals(plain, check_metadata=True)
    assert parquet_bytes(generated.combine_chunks()) == parquet_bytes(plain)
    for row in rows:  # the metadata text is json.dumps' own
        assert row["metadata"] == json.dumps(json.loads(row["metadata"]), sort_keys=True, ensure_ascii=False)


def test_a_chunk_whose_messages_are_not_plain_chat_gets_the_rows_messages_column():
    """The columnar batch falls back to the rows' own messages column when a message is not plain chat."""
    from orbit.envs.openspiel import family
    from orbit.envs.openspiel.match import MatchResult
    from orbit.envs.openspiel.tasks import GameTask, match_seed
    from orbit.io.schema import make_record, message, records_to_batch, tool_call

    tasks = [GameTask(game="tic_tac_toe", seed=s, seat=s % 2) for s in (3, 4, 5)]
    odd = [message("system", "s"), message("assistant", None, tool_calls=[tool_call("c1", "f", {"a": 1})]),
           message("tool", "x", tool_call_id="c1")]
    # a plain row before the odd one (its roles and contents were taken apart already) and one after
    results = [MatchResult(messages=[message("system", "s"), message("user", "u")], history=[2], returns=[0.0, 0.0],
                           terminated=None),
               MatchResult(messages=odd, history=[4, 0], returns=[1.0, -1.0], terminated=None),
               MatchResult(messages=[message("system", "s")], history=[], returns=None, terminated="action.illegal")]
    jobs = [(t, 0) for t in tasks]
    seeds = [match_seed("r0001", "tic_tac_toe", t.seed, 0) for t in tasks]
    learner, opponent = {"kind": "random"}, {"kind": "random"}
    columns = family.SelfplayColumns("tic_tac_toe", "r0001", learner, opponent)
    for (task, sample_idx), seed, result in zip(jobs, seeds, results):
        columns.add(task, sample_idx, seed, result)
    batch = columns.batch()
    expected = [make_record(env="tic_tac_toe", task_id=t.task_id, round_key="r0001", sample_idx=0, source="selfplay",
                            policy="random", seed=seed, messages=r.messages, score=r.learner_score(t.seat),
                            metadata={"task": t.to_json(), "history": r.history, "returns": r.returns,
                                      "terminated": r.terminated, "learner": learner, "opponent": opponent})
                for t, seed, r in zip(tasks, seeds, results)]
    assert batch.equals(records_to_batch(expected))


def test_the_columns_write_the_metadata_text_make_record_writes_whatever_the_returns():
    """History and returns are kept as tuples until the batch: the text is still ``json.dumps``' own,
    for returns that are not finite numbers and for a forfeit (None) too."""
    from orbit.envs.openspiel import family
    from orbit.envs.openspiel.match import MatchResult
    from orbit.envs.openspiel.tasks import GameTask
    from orbit.io.schema import make_record, message, records_to_batch

    task = GameTask(game="kuhn_poker", seed=7, seat=1)
    results = [MatchResult(messages=[message("system", "s")], history=[1, 0, 2], returns=returns, terminated=terminated)
               for returns, terminated in [([float("inf"), -1.0], None), ([float("nan"), 0.5], None),
                                           ([-0.0, 2.0], None), (None, "answer.unparseable")]]
    learner, opponent = {"kind": "cfr", "iterations": 3}, {"kind": "random"}
    columns = family.SelfplayColumns("kuhn_poker", "r0003", learner, opponent)
    for i, result in enumerate(results):
        columns.add(task, i, 100 + i, result)
    expected = [make_record(env="kuhn_poker", task_id=task.task_id, round_key="r0003", sample_idx=i, source="selfplay",
                            policy="cfr3", seed=100 + i, messages=r.messages, score=r.learner_score(task.seat),
                            metadata={"task": task.to_json(), "history": r.history, "returns": r.returns,
                                      "terminated": r.terminated, "learner": learner, "opponent": opponent})
                for i, r in enumerate(results)]
    batch = columns.batch()
    assert batch.column("metadata").to_pylist() == [r["metadata"] for r in expected]
    assert batch.equals(records_to_batch(expected))


@pytest.mark.parametrize("env", GAMES)
def test_a_bot_match_without_text_is_the_chat_paths_match_forfeits_and_all(env):
    """``play_bot_match`` (played without text, messages written afterwards, remembered prompts or not)
    gives the chat path's result: the same messages, history, returns and reason, also when the learner
    answers an illegal move, something other than an int, or text that names no move."""
    from orbit.envs.openspiel import prompts
    from orbit.envs.openspiel.bots import make_bot
    from orbit.envs.openspiel.match import play_bot_match
    from orbit.envs.openspiel.tasks import GameTask, load_game

    game = load_game(env)

    def spoiled(bot, at, answer):  # the bot's own move until its ``at``-th turn, then ``answer``
        turns = iter(range(10**6))

        def step(state):
            move = bot(state)
            return answer(move) if next(turns) == at else move
        return step

    answers = [lambda move: move, lambda move: 99, lambda move: -1, lambda move: float(move), lambda move: str(move),
               lambda move: f"{move}.", lambda move: "pass", lambda move: True, lambda move: move + 0]
    reasons = set()
    for seed in range(24):
        task = GameTask(game=env, seed=seed, seat=seed % game.num_players())
        for at, answer in [(0, answers[seed % len(answers)]), (1, answers[(seed + 3) % len(answers)])]:
            for fresh in (True, False):  # the turn prompts rendered from a replay, then remembered
                if fresh:
                    prompts._GAME_TEXT.clear()
                bots = [(spoiled(make_bot({"kind": "random"}, game, seed + 1), at, answer),
                         make_bot({"kind": "random"}, game, seed + 2)) for _ in range(2)]
                fast = play_bot_match(task, *bots[0], seed, game)
                chat = chat_match(task, *bots[1], seed, game)
                assert fast == chat, (env, seed, at)
                reasons.add(fast.terminated)
    assert reasons == {None, "action.illegal", "answer.unparseable"}


def test_a_simultaneous_move_node_is_refused_by_both_match_loops(monkeypatch):
    """Neither loop draws a chance outcome or asks a bot at a node of simultaneous moves: both name it."""
    from orbit.envs.openspiel import prompts
    from orbit.envs.openspiel.bots import random_bot
    from orbit.envs.openspiel.match import play_bot_match
    from orbit.envs.openspiel.tasks import GameTask

    monkeypatch.setitem(prompts.RULES, "matrix_rps", "Rock, paper, scissors.")  # so the chat loop gets to its moves
    task = GameTask(game="matrix_rps", seed=0, seat=0)
    with pytest.raises(ValueError, match="simultaneous moves are not supported"):
        play_bot_match(task, random_bot(1), random_bot(2), 0)
    with pytest.raises(ValueError, match="simultaneous moves are not supported"):
        chat_match(task, random_bot(1), random_bot(2), 0, None)
