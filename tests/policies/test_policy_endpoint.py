"""EndpointPolicy against a real loopback server through the real openai client."""

import traceback

import pytest

from orbit.policies.base import Policy, PolicyUnavailable
from orbit.policies.endpoint import EndpointPolicy, Request, run_many
from orbit.policies.server import start_server
from orbit.policies.table_policy import TablePolicy

from policy_fixtures import LEGAL, endpoint, game_messages, run

SECRET = "sk-test-do-not-leak-5f2a9c"


def requests(count: int) -> list[Request]:
    return [Request(game_messages(), seed=i) for i in range(count)]


def test_answer_tokens_and_cost(server):
    policy = endpoint(server, prompt_price_per_mtok=2.0, completion_price_per_mtok=10.0)
    assert isinstance(policy, Policy)
    turn = policy.complete(game_messages(), seed=7)
    assert turn.ok and turn.retries == 0
    assert turn.message["role"] == "assistant" and turn.message["content"] in LEGAL
    words = sum(len((m["content"] or "").split()) for m in game_messages())
    assert (turn.prompt_tokens, turn.completion_tokens) == (words, 1)
    assert turn.cost == pytest.approx((words * 2.0 + 10.0) / 1e6)
    assert endpoint(server).complete(game_messages(), seed=7).cost is None


def test_seed_passthrough_and_input_order(server):
    policy = endpoint(server)
    turns, stats = run(policy, run_many(policy, requests(20), concurrency=8))
    local = TablePolicy()
    assert [t.message["content"] for t in turns] == [
        local.complete(game_messages(), seed=i).message["content"] for i in range(20)]
    assert (stats.requests, stats.failures, stats.retries) == (20, 0, 0)
    assert stats.prompt_tokens == 20 * turns[0].prompt_tokens and stats.completion_tokens == 20


@pytest.mark.parametrize(("policy_limit", "run_limit", "expected"), [(3, 10, 3), (16, 2, 2)])
def test_concurrency_limit_honoured(server, policy_limit, run_limit, expected):
    server.faults.latency_s = 0.05
    policy = endpoint(server, concurrency=policy_limit)
    turns, _ = run(policy, run_many(policy, requests(12), concurrency=run_limit))
    assert all(t.ok for t in turns)
    assert server.stats.max_in_flight == expected


def test_retries_on_429_5xx_and_dropped_connections(server):
    server.faults.inject("429", "500", "503", "drop")
    policy = endpoint(server, max_retries=4)
    turn = policy.complete(game_messages(), seed=1)
    assert turn.ok and turn.retries == 4
    assert server.stats.chat_requests == 5


def test_retries_exhausted_name_the_last_failure(server):
    server.faults.inject("500", "500", "500")
    turn = endpoint(server, max_retries=2).complete(game_messages(), seed=1)
    assert (turn.error, turn.retries, turn.message["content"]) == ("endpoint.http_500: injected 500", 2, None)
    assert server.stats.chat_requests == 3


def test_timeouts_are_retried(server):
    server.faults.hang_s = 3.0
    server.faults.inject("hang")
    policy = endpoint(server, timeout_s=0.3, max_retries=1)
    turn = policy.complete(game_messages(), seed=1)
    assert turn.ok and turn.retries == 1
    server.faults.inject("hang", "hang")
    turn = policy.complete(game_messages(), seed=1)
    assert (turn.error, turn.retries) == ("endpoint.timeout", 1)


def test_bad_bodies_become_named_failures_and_the_run_goes_on(server):
    server.faults.inject("garbage", "empty_choices", "truncated")
    policy = endpoint(server)
    turns, stats = run(policy, run_many(policy, requests(6), concurrency=1))
    assert [t.error for t in turns[:3]] == ["endpoint.garbage_body", "endpoint.empty_choices",
                                            "endpoint.truncated_json"]
    assert all(t.ok for t in turns[3:])
    assert stats.failures == 3 and stats.retries == 0
    assert stats.failure_reasons == {"endpoint.garbage_body": 1, "endpoint.empty_choices": 1,
                                     "endpoint.truncated_json": 1}


def test_unservable_prompt_and_wrong_model_fail_without_retry(server):
    policy = endpoint(server)
    no_actions = policy.complete(game_messages("no action block here"), seed=0)
    assert no_actions.error == ("endpoint.http_400:policy.no_legal_actions: "
                                "the policy could not answer: policy.no_legal_actions")
    wrong = EndpointPolicy(server.url, "no-such-model", backoff_s=0.001).complete(game_messages(), seed=0)
    assert wrong.error.startswith("endpoint.http_404:model_not_found: The model `no-such-model` does not exist")
    assert wrong.retries == 0
    assert server.stats.chat_requests == 2


def test_check_passes_on_a_served_model(server):
    endpoint(server).check()


def test_check_unreachable_endpoint():
    handle = start_server(TablePolicy())
    url = handle.url
    handle.stop()
    with pytest.raises(PolicyUnavailable, match="cannot reach the endpoint at http://127.0.0.1"):
        EndpointPolicy(url, "embedded:uniform").check()


def test_check_wrong_model_name(server):
    with pytest.raises(PolicyUnavailable, match=r"model 'qwen2.5-7b' is not served .* 'embedded:uniform'"):
        EndpointPolicy(server.url, "qwen2.5-7b").check()


def test_api_key_read_from_the_named_env_var_and_never_leaked(monkeypatch):
    with start_server(TablePolicy(), api_key=SECRET) as handle:
        policy = EndpointPolicy(handle.url, "embedded:uniform", api_key_env="ORBIT_TEST_KEY")
        with pytest.raises(PolicyUnavailable) as unset:
            policy.check()
        assert "$ORBIT_TEST_KEY" in str(unset.value)
        monkeypatch.setenv("ORBIT_TEST_KEY", SECRET)
        policy.check()
        assert policy.complete(game_messages(), seed=0).ok
        monkeypatch.setenv("ORBIT_TEST_KEY", SECRET + "-wrong")
        with pytest.raises(PolicyUnavailable) as wrong:
            policy.check()
        rejected = policy.complete(game_messages(), seed=0)
        assert rejected.error == "endpoint.http_401:invalid_api_key"
        leaks = [repr(policy), str(policy.__dict__), repr(rejected),
                 "".join(traceback.format_exception(unset.value)), "".join(traceback.format_exception(wrong.value))]
        assert not any(SECRET in text for text in leaks)
    with pytest.raises(ValueError, match="NAME of an environment variable") as misuse:
        EndpointPolicy("http://127.0.0.1:1/v1", "m", api_key_env=SECRET)
    assert SECRET not in str(misuse.value)


def test_concurrency_holds_across_policies_sharing_slot_files(server, tmp_path):
    import asyncio

    server.faults.latency_s = 0.05

    async def both(slots_dir):
        a, b = (endpoint(server, concurrency=1, constrained="off", slots_dir=slots_dir) for _ in range(2))
        try:
            await asyncio.gather(run_many(a, requests(6), concurrency=4), run_many(b, requests(6), concurrency=4))
        finally:
            await a.aclose()
            await b.aclose()

    asyncio.run(both(None))
    assert server.stats.max_in_flight == 2  # two "processes", each at its own limit
    server.stats.max_in_flight = 0
    asyncio.run(both(str(tmp_path / "slots")))
    assert server.stats.max_in_flight == 1  # the lock files make the limit the endpoint's
