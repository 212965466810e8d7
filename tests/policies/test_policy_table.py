"""The embedded table policy: parsing, sampling, training, checkpoints and serving."""

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orbit.policies.endpoint import Request, run_many
from orbit.policies.server import start_server
from orbit.policies.table_policy import NO_LEGAL_ACTIONS, TablePolicy, legal_actions
from orbit.policies.uri import load_policy
from orbit.io.schema import RECORD_SCHEMA, make_record, message

from policy_fixtures import GAME_PROMPT, LEGAL, game_messages, run

OTHER_PROMPT = GAME_PROMPT.replace(".x.", "ox.")


def trajectory(*pairs: tuple[str, str]) -> list[dict]:
    messages = [message("system", "Answer with one action ID.")]
    for prompt, answer in pairs:
        messages += [message("user", prompt), message("assistant", answer)]
    return messages


def record(messages: list[dict], sample_idx: int) -> dict:
    return make_record(env="tic_tac_toe", task_id="t0", round_key="r0000", sample_idx=sample_idx,
                       source="policy", policy="embedded:uniform", seed=sample_idx, messages=messages, score=1.0)


def test_legal_actions_parsing():
    assert legal_actions(GAME_PROMPT) == LEGAL
    assert legal_actions("no block") == []
    assert legal_actions("Legal actions:\n3 -> a\nnot an action\n5 -> b") == ["3"]
    stale = "Legal actions:\n1 -> old\nnow:\nLegal actions (answer with one ID):\n7 -> new\n"
    assert legal_actions(stale) == ["7"]


def test_fresh_policy_is_uniform_and_deterministic_given_seed():
    policy = TablePolicy()
    assert policy.id == "embedded:uniform"
    assert policy.probabilities(GAME_PROMPT, LEGAL) == [0.25] * 4
    answers = [policy.complete(game_messages(), seed=s).message["content"] for s in range(2000)]
    assert set(answers) == set(LEGAL)
    assert all(abs(n - 500) < 90 for n in Counter(answers).values())
    assert answers == [TablePolicy().complete(game_messages(), seed=s).message["content"] for s in range(2000)]


def test_prompt_without_legal_actions_is_a_named_failure():
    turn = TablePolicy().complete([message("user", "what now?")], seed=0)
    assert turn.error == NO_LEGAL_ACTIONS and turn.message["content"] is None


def test_training_counts_passed_legal_choices_only():
    records = [
        {"messages": trajectory((GAME_PROMPT, "4"), (OTHER_PROMPT, "8")), "passed": True},
        {"messages": trajectory((GAME_PROMPT, "4")), "passed": True},
        {"messages": trajectory((GAME_PROMPT, "0")), "passed": False},
        {"messages": trajectory((GAME_PROMPT, "5"))},
    ]
    policy = TablePolicy.train(records, name="ttt-r0001", alpha=1.0)
    assert policy.id == "embedded:ttt-r0001" and policy.trained_on_rows == 2
    assert policy.probabilities(GAME_PROMPT, LEGAL) == pytest.approx([1 / 6, 1 / 6, 1 / 2, 1 / 6])
    assert policy.probabilities(OTHER_PROMPT, LEGAL) == pytest.approx([0.2, 0.2, 0.2, 0.4])
    greedy = TablePolicy.train(records, name="greedy", temperature=0.0)
    assert {greedy.complete(game_messages(), seed=s).message["content"] for s in range(50)} == {"4"}
    with pytest.raises(ValueError):
        TablePolicy.train(records, name="uniform")


def test_training_from_an_arrow_table_and_checkpoint_roundtrip(tmp_path):
    rows = [record(trajectory((GAME_PROMPT, "4")), i) for i in range(3)] + [record(trajectory((GAME_PROMPT, "2")), 3)]
    table = pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
    policy = TablePolicy.train(table, name="ttt-r0001", alpha=0.5)
    path = policy.save(tmp_path / "ttt-r0001.parquet")
    assert pq.read_schema(path).names == ["state_hash", "state_text", "action", "count"]
    loaded = TablePolicy.load(path)
    assert (loaded.id, loaded.alpha, loaded.trained_on_rows) == ("embedded:ttt-r0001", 0.5, 4)
    assert loaded.counts == policy.counts and loaded.texts == policy.texts
    assert [loaded.complete(game_messages(), seed=s).message["content"] for s in range(100)] == [
        policy.complete(game_messages(), seed=s).message["content"] for s in range(100)]
    via_uri = load_policy(f"embedded:{path}", temperature=0.0)
    assert via_uri.id == "embedded:ttt-r0001" and via_uri.complete(game_messages(), seed=1).message["content"] == "4"
    with pytest.raises(ValueError, match="not an Orbit table-policy checkpoint"):
        pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
        TablePolicy.load(tmp_path / "other.parquet")


def test_served_table_policy_answers_legal_actions_through_the_endpoint(tmp_path):
    trained = TablePolicy.train([{"messages": trajectory((GAME_PROMPT, "8"))}], name="ttt-r0002", temperature=0.0)
    checkpoint = trained.save(tmp_path / "ttt-r0002.parquet")
    with start_server(TablePolicy.load(checkpoint, temperature=0.0)) as handle:
        assert handle.policy_uri == f"openai:{handle.url}#embedded:ttt-r0002"
        policy = load_policy(handle.policy_uri, timeout_s=5.0)
        policy.check()
        prompts = [GAME_PROMPT, OTHER_PROMPT]
        turns, stats = run(policy, run_many(policy, [Request(game_messages(prompts[i % 2]), seed=i)
                                                     for i in range(10)], concurrency=4))
    assert stats.failures == 0
    assert all(t.message["content"] in LEGAL for t in turns)
    assert [t.message["content"] for t in turns[::2]] == ["8"] * 5
