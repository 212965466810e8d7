"""Teacher generation: deterministic from (round, env), one oracle answer per task, specs and ids derivable."""

import json

import pyarrow as pa
import pytest

from orbit.envs.base import GenerationRequest
from orbit.envs.reasoning_gym import items
from orbit.envs.reasoning_gym.family import FAMILY
from orbit.envs.reasoning_gym.library import load
from orbit.envs.reasoning_gym.prompts import SYSTEM_PROMPT
from orbit.envs.reasoning_gym.teacher import NO_ORACLE, TEACHER_POLICY
from orbit.io.schema import RECORD_SCHEMA, encode_metadata, make_record, records_to_batch, stable_hash
from orbit.stages.verify import verify_record

from rg_env import generate, leg_spec


def test_same_request_same_rows_and_another_round_other_items(spec, records):
    assert generate(spec, samples=2) == records
    other = generate(spec, round_key="r0001", samples=2)
    assert {r["task_id"] for r in other}.isdisjoint({r["task_id"] for r in records})
    assert [r["messages"][1]["content"] for r in other] != [r["messages"][1]["content"] for r in records]
    seeds = {json.loads(r["metadata"])["task"]["seed"] for r in records + other}
    assert len(seeds) == 2 and all(0 <= s < 2**31 for s in seeds)
    assert generate(spec, base_seed=7)[0]["task_id"] != records[0]["task_id"]


def test_rows_have_the_documented_shape(spec, records):
    factory = load()
    dataset = factory.create_dataset("leg_counting", min_animals=2, max_animals=4,
                                     seed=json.loads(records[0]["metadata"])["task"]["seed"], size=20)
    assert len(records) == 40
    for n, record in enumerate(records):
        task_index, sample_idx = divmod(n, 2)
        meta = json.loads(record["metadata"])
        task = meta["task"]
        assert set(meta) == {"task"}
        assert task == {"task": "leg_counting", "seed": record["seed"], "size": 20, "index": task_index,
                        "config": {"min_animals": 2, "max_animals": 4, "min_instances": 1, "max_instances": 15}}
        assert record["task_id"] == f"leg_counting-{stable_hash(task, length=12)}-i{task_index}"
        assert record["metadata"] == encode_metadata(meta)
        assert (record["source"], record["policy"], record["score"], record["tools"]) == ("teacher", TEACHER_POLICY,
                                                                                         1.0, None)
        assert record["sample_idx"] == sample_idx and record["round"] == "r0000" and record["env"] == "leg_counting"
        entry = dataset[task_index]
        assert [(m["role"], m["content"]) for m in record["messages"]] == [
            ("system", SYSTEM_PROMPT), ("user", entry["question"]), ("assistant", f"<answer>{entry['answer']}</answer>")]


def test_batches_equal_the_rows_make_record_makes(records):
    batch = records_to_batch(records)
    remade = [make_record(env=r["env"], task_id=r["task_id"], round_key=r["round"], sample_idx=r["sample_idx"],
                          source=r["source"], policy=r["policy"], seed=r["seed"], messages=r["messages"],
                          score=r["score"], metadata=json.loads(r["metadata"])) for r in records]
    assert records_to_batch(remade).equals(batch)
    assert batch.schema.equals(RECORD_SCHEMA)


def test_large_partitions_come_in_batches_and_items_regenerate_alike():
    spec = leg_spec(2500)
    request = GenerationRequest(env=spec, round_key="r0002", num_tasks=2500, samples_per_task=1, workers=1)
    batches = list(FAMILY.generate(request))
    assert [b.num_rows for b in batches] == [1024, 1024, 452]
    items.clear_caches()  # what another process sees: items regenerated from the spec alone
    rows = pa.Table.from_batches(batches).slice(2490).to_pylist()
    verifier = FAMILY.verifier(spec)
    assert [verify_record(r, verifier, 1.0) for r in rows] == [(1.0, True, [])] * 10


def test_curriculum_levels_set_the_config_per_round():
    spec = leg_spec(5, config={}, levels=[0, 3])
    by_round = {key: generate(spec, round_key=key) for key in ("r0000", "r0001", "r0007")}
    configs = {key: json.loads(rows[0]["metadata"])["task"] for key, rows in by_round.items()}
    for rows in by_round.values():
        for row in rows:
            meta = json.loads(row["metadata"])
            assert row["metadata"] == encode_metadata(meta)
            assert row["task_id"] == f"leg_counting-{stable_hash(meta['task'], length=12)}-i{meta['task']['index']}"
    assert configs["r0000"]["level"] == 0 and configs["r0001"]["level"] == 3 and configs["r0007"]["level"] == 3
    assert (configs["r0000"]["config"]["min_animals"], configs["r0000"]["config"]["max_animals"]) == (1, 1)
    assert (configs["r0001"]["config"]["min_animals"], configs["r0001"]["config"]["max_animals"]) == (1, 4)
    verifier = FAMILY.verifier(spec)
    for rows in by_round.values():
        assert all(verify_record(r, verifier, 1.0) == (1.0, True, []) for r in rows)
    fixed = leg_spec(3, config={}, curriculum_level=2)
    rows = generate(fixed, round_key="r0005")
    assert json.loads(rows[0]["metadata"])["task"]["level"] == 2
    assert all(verify_record(r, FAMILY.verifier(fixed), 1.0) == (1.0, True, []) for r in rows)


@pytest.mark.parametrize("task", ["basic_arithmetic", "chain_sum"])
def test_other_tasks_run_end_to_end(task):
    from orbit.envs.base import EnvSpec

    spec = EnvSpec(name=task, family="reasoning_gym", description=task, options={"task": task}, num_tasks=30)
    FAMILY.check(spec)
    rows = generate(spec)
    verifier = FAMILY.verifier(spec)
    assert len(rows) == 30 and len({r["task_id"] for r in rows}) == 30
    assert all(verify_record(r, verifier, 1.0) == (1.0, True, []) for r in rows)


def test_a_task_without_oracle_answers_gives_failed_teacher_rows():
    from orbit.envs.base import EnvSpec

    spec = EnvSpec(name="boxnet", family="reasoning_gym", description="", options={"task": "boxnet"}, num_tasks=3)
    rows = generate(spec)
    assert all(json.loads(r["metadata"])["sample_error"] == NO_ORACLE and r["score"] == 0.0 for r in rows)
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user"]
    score, passed, reasons = verify_record(rows[0], FAMILY.verifier(spec), 1.0)
    assert not passed and NO_ORACLE in reasons


def test_nothing_to_generate_for_no_tasks(spec):
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=0, samples_per_task=1, workers=1)
    assert list(FAMILY.generate(request)) == []
