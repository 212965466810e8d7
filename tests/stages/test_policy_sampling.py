"""Rejection sampling through Dagster against a real OpenAI-compatible server on 127.0.0.1."""

import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orbit.io import lake
from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.policies.server import Faults, start_server
from orbit.policies.table_policy import TablePolicy
from orbit.stages.generate import SamplingPlan, run_sampling
from orbit_assets.runner import RunFailed, raw_samples_config, run_rounds
from resources import resources_for

STRONG = {"opponent": {"kind": "mcts", "simulations": 30}}


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    (tmp_path / "dagster").mkdir()
    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance, tmp_path


def _run(instance, home, **config):
    return run_rounds(["r0000"], ["tic_tac_toe"], instance=instance, resources=resources_for(lake=str(home / "lake")),
                      run_config=raw_samples_config(**config), log=lambda m: None)


def test_policy_samples_land_in_raw_samples_and_rerun_resumes(dagster_home):
    instance, home = dagster_home
    with start_server(TablePolicy()) as server:
        _run(instance, home, num_tasks=10, policy=server.policy_uri, budget=30, options=STRONG)
        first = server.stats.chat_requests
        raw = pq.read_table(lake.partition_file(home / "lake", "raw_samples", "r0000", "tic_tac_toe")).to_pylist()
        policy_rows = [r for r in raw if r["source"] == "policy"]
        assert 10 <= len(policy_rows) <= 30 and first > 0
        assert {r["policy"] for r in policy_rows} == {"embedded:uniform"}
        meta = json.loads(policy_rows[0]["metadata"])
        assert meta["sampling"]["strategy"] == "adaptive" and meta["sampling"]["budget"] == 30
        _run(instance, home, num_tasks=10, policy=server.policy_uri, budget=30, options=STRONG)
        assert server.stats.chat_requests == first, "the rerun is answered from the request cache"
        again = pq.read_table(lake.partition_file(home / "lake", "raw_samples", "r0000", "tic_tac_toe")).to_pylist()
        assert [r["record_id"] for r in again] == [r["record_id"] for r in raw]
    y = pq.read_table(lake.partition_file(home / "lake", "yield_metrics", "r0000", "tic_tac_toe")).to_pylist()
    pol = next(r for r in y if r["source"] == "policy")
    assert pol["budget"] == 30 and pol["attempts"] == len(policy_rows)


def test_unreachable_endpoint_fails_before_any_partition_is_written(dagster_home):
    instance, home = dagster_home
    with start_server(TablePolicy()) as server:
        url = server.url
    with pytest.raises(RunFailed, match="cannot reach"):
        _run(instance, home, num_tasks=4, policy=f"openai:{url}/v1#embedded:uniform", budget=8)
    assert not lake.partition_file(home / "lake", "raw_samples", "r0000", "tic_tac_toe").exists()


def test_wrong_model_name_fails_before_any_partition_is_written(dagster_home):
    instance, home = dagster_home
    with start_server(TablePolicy()) as server:
        base = server.policy_uri.split("#")[0]
        with pytest.raises(RunFailed, match="no-such-model"):
            _run(instance, home, num_tasks=4, policy=f"{base}#no-such-model", budget=8)
    assert not lake.partition_file(home / "lake", "raw_samples", "r0000", "tic_tac_toe").exists()


def _sample(env, policy, plan, n_tasks=30, round_key="r0000", **options):
    spec = env_spec(env)
    family = family_of(spec)
    req = GenerationRequest(env=spec, round_key=round_key, num_tasks=n_tasks, samples_per_task=1, options=options)
    return run_sampling(req, family, family.verifier(spec), spec.pass_threshold, policy, plan)


def test_garbage_from_the_endpoint_fails_the_sample_with_its_reason_and_the_run_goes_on():
    from orbit.policies.endpoint import EndpointPolicy

    faults = Faults()
    faults.inject("garbage", "garbage", "garbage", "garbage", "garbage", "garbage")
    with start_server(TablePolicy(), faults=faults) as server:
        base, model = server.policy_uri[len("openai:"):].split("#")
        policy = EndpointPolicy(base, model, max_retries=0)
        records, stats = _sample("tic_tac_toe", policy, SamplingPlan(best_of=1), n_tasks=12)
    assert len(records) == 12 and stats.attempts == 12
    failed = [json.loads(r["metadata"]).get("sample_error") for r in records]
    assert sum(e == "endpoint.garbage_body" for e in failed) >= 1
    from orbit.stages.verify import verify_record

    spec = env_spec("tic_tac_toe")
    for rec, err in zip(records, failed):
        _, passed, reasons = verify_record(rec, family_of(spec).verifier(spec), 1.0)
        if err:
            assert not passed and err in reasons


def test_adaptive_and_fixed_budget_accounting():
    plan_fixed = SamplingPlan(best_of=3)
    records, stats = _sample("tic_tac_toe", TablePolicy(), plan_fixed, n_tasks=20, **STRONG)
    assert stats.attempts == 60 == len(records) and stats.budget == 60
    records, stats = _sample("tic_tac_toe", TablePolicy(), SamplingPlan(budget=60), n_tasks=20, **STRONG)
    assert stats.attempts <= 60 and len(records) == stats.attempts
    per_task = {}
    for r in records:
        per_task.setdefault(r["task_id"], []).append(r)
    from orbit.stages.verify import verify_record

    spec = env_spec("tic_tac_toe")
    verifier = family_of(spec).verifier(spec)
    for task_id, rs in per_task.items():
        passes = [verify_record(r, verifier, 1.0)[1] for r in sorted(rs, key=lambda r: r["sample_idx"])]
        if any(passes):
            assert passes.index(True) == len(passes) - 1, "a solved task stops sampling at its first pass"


def test_trained_table_policy_wins_more_than_uniform():
    """Train on the winners of the uniform policy, then play the same opponent on fresh seeds."""
    train_records, _ = _sample("tic_tac_toe", TablePolicy(), SamplingPlan(best_of=8), n_tasks=150, **STRONG)
    from orbit.stages.verify import verify_record

    spec = env_spec("tic_tac_toe")
    verifier = family_of(spec).verifier(spec)
    winners = [r for r in train_records if verify_record(r, verifier, 1.0)[1]]
    trained = TablePolicy.train(pa.Table.from_pylist(winners), name="test-trained", alpha=0.1, temperature=0.5)

    def win_rate(policy):
        recs, stats = _sample("tic_tac_toe", policy, SamplingPlan(best_of=4), n_tasks=150, round_key="r0007", **STRONG)
        return stats.passes / stats.attempts

    trained_rate, uniform_rate = win_rate(trained), win_rate(TablePolicy())
    assert trained_rate > uniform_rate + 0.04, (trained_rate, uniform_rate)
