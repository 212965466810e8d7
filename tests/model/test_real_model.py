"""Orbit end to end against a real model behind a real server (SmolLM2-135M, llama-cpp-python).

* a tic_tac_toe and a kuhn_poker round through Dagster with constrained decoding: every move is
  a legal ID, and the untrained model wins some matches (p > 0);
* a LiveWeb episode whose tool calls the server accepts (tool_choice sent, content "" on
  tool-call turns), recorded and graded like any other.
"""

import json

import dagster as dg
import duckdb
import pytest

from orbit.io import lake
from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.envs.openspiel.prompts import parse_answer
from orbit.envs.liveweb.demo_sites import ensure_demo_cache
from orbit.policies.endpoint import EndpointPolicy
from orbit.stages.generate import SamplingPlan, run_sampling
from orbit.stages.verify import verify_record
from orbit_assets.runner import raw_samples_config, run_rounds
from resources import PolicyResource, resources_for

from conftest import ALIAS

GAMES = ["tic_tac_toe", "kuhn_poker"]
TASKS = 8

# a 135M model on a shared 2-core machine: minutes per round, never a time assertion
pytestmark = pytest.mark.timeout(3600)


@pytest.fixture
def home(tmp_path, monkeypatch):
    (tmp_path / "dagster").mkdir()
    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    return tmp_path


def test_the_server_is_probed_for_json_object(llama):
    policy = EndpointPolicy(llama.url, ALIAS)
    policy.check()
    assert policy.constrained_mode == "json_object"  # llama-cpp-python answers 500 to json_schema


def test_game_rounds_through_orbit_with_constrained_decoding(llama, home):
    resources = resources_for(lake=str(home / "lake"))
    resources["policies"] = PolicyResource(concurrency=1, timeout_s=120, cache_root=str(home / "cache"))
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        run_rounds(["r0000"], GAMES, instance=instance, resources=resources, log=lambda m: None,
                   run_config=raw_samples_config(num_tasks=TASKS, samples_per_task=1, policy=llama.policy_uri,
                                                 best_of=1, options={"opponent": {"kind": "random"}}))
    con = duckdb.connect()
    for env in GAMES:
        verified = str(lake.partition_file(home / "lake", "verified_samples", "r0000", env))
        rows = con.execute("SELECT messages, passed, reasons, metadata FROM read_parquet(?) WHERE source = 'policy'",
                           [verified]).fetchall()
        assert len(rows) == TASKS
        answers = [m["content"] for messages, *_ in rows for m in messages if m["role"] == "assistant"]
        assert answers and all(a.lstrip().startswith("{") and parse_answer(a) is not None for a in answers), answers
        reasons = {r for _, _, rs, _ in rows for r in rs}
        assert not reasons & {"answer.unparseable", "action.illegal"}, reasons
        meta = json.loads(rows[0][3])
        assert meta["sampling"]["constrained"] == "json_object" and meta["usage"]["completion_tokens"] > 0
        yields = str(lake.partition_file(home / "lake", "yield_metrics", "r0000", env))
        p, requests, tokens_per_s, cost = con.execute(
            "SELECT pass_rate, requests, tokens_per_s, cost FROM read_parquet(?) WHERE source = 'policy'",
            [yields]).fetchone()
        print(f"{env}: untrained SmolLM2-135M p = {p:.3f} over {TASKS} matches, {requests} requests, "
              f"{tokens_per_s:.1f} completion tokens/s")
        assert p > 0 and requests >= TASKS and tokens_per_s > 0 and cost is None


def test_liveweb_episode_whose_tool_calls_the_server_accepts(llama, tmp_path):
    cache_dir = ensure_demo_cache(tmp_path / "cache", seed=0)
    spec = env_spec("liveweb")
    family = family_of(spec)
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=2, samples_per_task=1,
                                options={"cache_dir": str(cache_dir), "max_turns": 2})
    # temperature 0.3: fewer runaway tool arguments (see conftest.N_CTX); a retry would only queue
    # behind the request llama.cpp is still generating, so none
    policy = EndpointPolicy(llama.url, ALIAS, concurrency=1, timeout_s=600, max_retries=0, temperature=0.3)
    verifier = family.verifier(spec, {"cache_dir": str(cache_dir)})
    records, stats = run_sampling(request, family, verifier, 1.0, policy, SamplingPlan(best_of=1, concurrency=1))
    assert len(records) == 2 and stats.accounting.requests >= 2
    errors = [json.loads(r["metadata"]).get("sample_error") for r in records]
    assert not any(errors), errors  # no HTTP 500: tools, tool_choice and content "" were accepted
    calls = [c for r in records for m in r["messages"] if m["role"] == "assistant" for c in (m["tool_calls"] or [])]
    tool_turns = [m for r in records for m in r["messages"] if m["role"] == "tool"]
    assert calls and len(tool_turns) == len(calls), "the model called tools and each call got an observation"
    multi_turn = [r for r in records if sum(m["role"] == "assistant" for m in r["messages"]) > 1]
    assert multi_turn, "a turn after a tool call was sent (with content '') and answered"
    for record in records:
        _, passed, reasons = verify_record(record, verifier, 1.0)
        assert isinstance(passed, bool) and (passed or reasons)
    print(f"liveweb: {len(calls)} tool calls accepted, {len(multi_turn)} multi-turn episodes, "
          f"{stats.accounting.requests} requests")


NEW_GAMES = ["clobber", "liars_dice"]  # one new perfect-information game, one imperfect-information game


def test_new_games_through_orbit_with_constrained_decoding(llama, home):
    """clobber 5x5 (against MCTS; a 7x7 hex conversation outgrows the 4,096-token context) and liars_dice (against the CFR+ table, solved by the round) through Dagster:
    every move the model makes is a legal ID of the prompt's list; any p."""
    resources = resources_for(lake=str(home / "lake"))
    resources["policies"] = PolicyResource(concurrency=1, timeout_s=120, cache_root=str(home / "cache"))
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        run_rounds(["r0000"], NEW_GAMES, instance=instance, resources=resources, log=lambda m: None,
                   run_config=raw_samples_config(num_tasks=4, samples_per_task=1, policy=llama.policy_uri,
                                                 best_of=1))
    con = duckdb.connect()
    for env in NEW_GAMES:
        verified = str(lake.partition_file(home / "lake", "verified_samples", "r0000", env))
        rows = con.execute("SELECT messages, passed, reasons FROM read_parquet(?) WHERE source = 'policy'",
                           [verified]).fetchall()
        assert len(rows) == 4
        answers = [m["content"] for messages, *_ in rows for m in messages if m["role"] == "assistant"]
        assert answers and all(parse_answer(a) is not None for a in answers), answers
        reasons = {r for _, _, rs in rows for r in rs}
        assert not reasons & {"answer.unparseable", "action.illegal"}, reasons
        print(f"{env}: untrained SmolLM2-135M p = {sum(r[1] for r in rows) / len(rows):.2f} over 4 matches "
              f"against the default opponent; reasons {sorted(reasons)}")
