"""Resume: cached turns are not asked again, and what a crashed run got is kept."""

import asyncio

import pytest

from orbit.policies.request_cache import RequestCache, RequestKey, partition_cache_path

from policy_fixtures import endpoint, game_messages, run


def keys(policy, count: int) -> list[RequestKey]:
    return [RequestKey("r0001", "tic_tac_toe", f"task-{i}", 0, policy.id) for i in range(count)]


def ask_all(cache: RequestCache, policy, count: int, seed_offset: int = 0) -> list:
    async def all_of_them():
        return await asyncio.gather(*(cache.complete(policy, k, game_messages(), seed=i + seed_offset)
                                      for i, k in enumerate(keys(policy, count))))
    return run(policy, all_of_them())


def test_rerun_does_not_query_cached_requests(server, tmp_path):
    path = partition_cache_path(tmp_path, "r0001", "tic_tac_toe")
    assert path == tmp_path / "round=r0001" / "env=tic_tac_toe" / "requests.sqlite"
    policy = endpoint(server)
    server.faults.inject("garbage")
    with RequestCache(path) as cache:
        first = ask_all(cache, policy, 6)
        assert server.stats.chat_requests == 6 and len(cache) == 5
    assert sum(not t.ok for t in first) == 1
    with RequestCache(path) as cache:
        second = ask_all(cache, policy, 6)
        assert (cache.hits, cache.misses) == (5, 1)
    assert server.stats.chat_requests == 7
    assert all(t.ok for t in second)
    assert [s for s, f in zip(second, first) if f.ok] == [f for f in first if f.ok]


def test_changed_request_is_asked_again(server, tmp_path):
    policy = endpoint(server)
    with RequestCache(tmp_path / "requests.sqlite") as cache:
        ask_all(cache, policy, 3)
        ask_all(cache, policy, 3, seed_offset=100)
        assert (cache.hits, cache.misses) == (0, 6) and len(cache) == 3
    assert server.stats.chat_requests == 6


def test_turns_are_durable_before_close(server, tmp_path):
    policy = endpoint(server)
    writer = RequestCache(tmp_path / "requests.sqlite")
    ask_all(writer, policy, 4)
    reader = RequestCache(tmp_path / "requests.sqlite")
    assert len(reader) == 4
    assert reader.get(keys(policy, 1)[0]).ok
    reader.close()
    writer.close()


def test_key_must_name_the_policy(server, tmp_path):
    policy = endpoint(server)
    with RequestCache(tmp_path / "requests.sqlite") as cache, pytest.raises(ValueError, match="names policy"):
        run(policy, cache.complete(policy, RequestKey("r0001", "tic_tac_toe", "t", 0, "other"),
                                   game_messages(), seed=0))


@pytest.mark.parametrize("change", [
    {"temperature": 0.2}, {"top_p": 0.9}, {"max_tokens": 64}, {"constrained": "json_object"},
])
def test_cache_key_covers_every_sampling_setting(server, tmp_path, change):
    from orbit.policies.base import Decoding

    decoding = Decoding(max_tokens=100, choices=("0", "2", "4", "8"))
    base = {"constrained": "off", "max_tokens": 200}
    with RequestCache(tmp_path / "requests.sqlite") as cache:
        key = keys(endpoint(server), 1)[0]
        for settings in (base, base, {**base, **change}):
            policy = endpoint(server, **settings)
            run(policy, cache.complete(policy, key, game_messages(), seed=1, decoding=decoding))
        assert (cache.hits, cache.misses) == (1, 2)


def test_cache_key_covers_base_url_and_decoding(server, tmp_path):
    from orbit.policies.base import Decoding
    from orbit.policies.endpoint import EndpointPolicy
    from orbit.policies.request_cache import policy_request_hash
    from orbit.policies.server import start_server
    from orbit.policies.table_policy import TablePolicy

    async def digest(policy, **kw):
        return await policy_request_hash(policy, game_messages(), None, 1, **kw)

    policy = endpoint(server, constrained="json_object")
    with start_server(TablePolicy()) as other:
        elsewhere = EndpointPolicy(other.url, policy.model, constrained="json_object")
        assert run(policy, digest(policy)) != run(elsewhere, digest(elsewhere))
    legal = Decoding(choices=("0", "2"))
    assert run(policy, digest(policy)) != run(policy, digest(policy, decoding=legal))
    assert run(policy, digest(policy, decoding=legal)) != run(policy, digest(policy, decoding=Decoding(choices=("0",))))
    table = TablePolicy()
    assert run(table, digest(table)) != run(TablePolicy(temperature=0.5), digest(TablePolicy(temperature=0.5)))
