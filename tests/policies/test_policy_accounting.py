"""Partition accounting and constrained answers through rejection sampling on the loopback server."""

import json

from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.policies.endpoint import EndpointPolicy
from orbit.policies.request_cache import RequestCache
from orbit.policies.server import LLAMA_CPP, start_server
from orbit.policies.table_policy import TablePolicy
from orbit.stages.generate import SamplingPlan, run_sampling
from orbit.stages.verify import verify_record


def sample(policy, cache=None, env="tic_tac_toe", n_tasks=6):
    spec = env_spec(env)
    family = family_of(spec)
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=n_tasks, samples_per_task=1)
    records, stats = run_sampling(request, family, family.verifier(spec), spec.pass_threshold, policy,
                                  SamplingPlan(best_of=1, concurrency=2), cache)
    return records, stats, family.verifier(spec)


def test_constrained_answers_are_json_legal_and_verified_and_the_partition_is_accounted(tmp_path):
    with start_server(TablePolicy(), rules=LLAMA_CPP) as handle:
        policy = EndpointPolicy(handle.url, "embedded:uniform", prompt_price_per_mtok=1.0,
                                completion_price_per_mtok=2.0, concurrency=2)
        with RequestCache(tmp_path / "requests.sqlite") as cache:
            records, stats, verifier = sample(policy, cache)
            sent = handle.stats.chat_requests
            again, stats2, _ = sample(policy, cache)
        assert handle.stats.chat_requests == sent, "the rerun is answered from the cache"
    acct = stats.accounting
    metas = [json.loads(r["metadata"]) for r in records]
    calls = sum(m["usage"]["calls"] for m in metas)
    assert acct.requests == calls and acct.cached == 0 and acct.failures == 0
    assert acct.prompt_tokens == sum(m["usage"]["prompt_tokens"] for m in metas) > 0
    assert acct.cost > 0 and acct.seconds > 0 and acct.requests_per_s > 0
    assert (stats2.accounting.requests, stats2.accounting.cached, stats2.accounting.cost) == (0, calls, None)
    for record, meta in zip(records, metas):
        assert meta["sampling"]["constrained"] == "json_object" and meta["sampling"]["seconds"] > 0
        answers = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
        assert all(a.startswith('{"move": "') for a in answers)
        verdict = verify_record(record, verifier, 1.0)
        assert "answer.unparseable" not in verdict[2] and "action.illegal" not in verdict[2]


def test_cost_is_null_without_prices():
    with start_server(TablePolicy()) as handle:
        records, stats, _ = sample(EndpointPolicy(handle.url, "embedded:uniform", constrained="off"), n_tasks=3)
    assert stats.accounting.cost is None and stats.accounting.requests > 0
    assert all(json.loads(r["metadata"])["usage"]["cost"] is None for r in records)
