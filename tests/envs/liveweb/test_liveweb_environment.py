"""The tool environment: rendering, links, search forms, paging, errors and replay determinism."""

import json

import pytest

from orbit.envs.liveweb.cache import PageCache, write_page
from orbit.envs.liveweb.environment import (
    ACTION_INVALID, CALL_AFTER_STOP, OUTSIDE_CACHE, PAGE_INVALID, LiveWebEnvironment,
)
from orbit.envs.liveweb.tools import ARGUMENTS_INVALID, ARGUMENTS_NOT_JSON, TOOL_NAMES, TOOL_SCHEMAS, UNKNOWN_TOOL

STOCKS = "https://stockquotes.test/"


@pytest.fixture
def env(demo_cache):
    return LiveWebEnvironment(demo_cache)


def test_tool_schemas_are_openai_functions():
    assert TOOL_NAMES == ("goto", "click", "type", "scroll", "view_more", "stop")
    for tool in TOOL_SCHEMAS:
        assert tool["type"] == "function"
        params = tool["function"]["parameters"]
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
    json.dumps(TOOL_SCHEMAS)


def test_goto_renders_an_accessibility_tree(env):
    result = env.step("goto", {"url": STOCKS})
    assert result.error is None
    lines = result.observation.splitlines()
    assert lines[0] == "[page] Market overview | StockQuotes"
    assert lines[1] == "[url] https://stockquotes.test/"
    assert lines[2].startswith("[lines 1-24 of ") and lines[2].endswith("more below]")
    text = result.observation
    assert "# Market overview" in text
    assert "| Symbol | Company | Last | Change |" in text
    assert '[I1 search field "q" placeholder "Symbol or company"]' in text
    assert '[B1 button "Go"]' in text
    assert "form GET /search:" in text
    assert "[L2 Markets]" in text


def test_click_link_id_and_css_selector(env, demo_cache):
    env.step("goto", {"url": STOCKS})
    symbol = demo_cache.page(STOCKS).api_data["companies"][0]["symbol"]
    by_id = env.step("click", {"selector": "L9"})
    assert f"[url] https://stockquotes.test/quote/{symbol}" in by_id.observation
    by_css = env.step("click", {"selector": 'a[href$="/history"]'})
    assert by_css.error is None
    assert f"[url] https://stockquotes.test/quote/{symbol}/history" in by_css.observation
    assert f"# {symbol} price history" in by_css.observation


def test_search_form_resolves_to_the_cached_result_page(env):
    env.step("goto", {"url": STOCKS})
    typed = env.step("type", {"selector": "I1", "text": "zeni"})
    assert typed.observation == 'Typed "zeni" into I1 ("q").' and typed.error is None
    submitted = env.step("click", {"selector": "B1"})
    assert "[url] https://stockquotes.test/search?q=ZENI" in submitted.observation
    assert '# Results for "ZENI"' in submitted.observation
    env.step("goto", {"url": STOCKS})
    entered = env.step("type", {"selector": 'input[name="q"]', "text": "Zeni", "press_enter": True})
    assert entered.observation == submitted.observation


def test_search_for_an_uncached_query_is_outside_the_cache(env):
    env.step("goto", {"url": STOCKS})
    result = env.step("type", {"selector": "I1", "text": "no such company", "press_enter": True})
    assert result.error == OUTSIDE_CACHE
    assert "search?q=no+such+company" in result.observation


def test_paging_long_pages_by_window(env):
    first = env.step("goto", {"url": "https://newsagg.test/"}).observation
    total = int(first.splitlines()[2].split(" of ")[1].split(",")[0])
    assert total > 24
    second = env.step("view_more", {"direction": "down"}).observation
    assert second.splitlines()[2].startswith(f"[lines {total - 23}-{total} of {total}")
    again = env.step("view_more", {}).observation
    assert again.startswith("[already at the bottom of the page]")
    up = env.step("scroll", {"direction": "up", "amount": 5}).observation
    assert up.splitlines()[2].startswith(f"[lines {total - 28}-{total - 5} of {total}")
    top = env.step("scroll", {"direction": "up", "amount": 500}).observation
    assert top.splitlines()[2].startswith("[lines 1-24 ")
    assert env.step("scroll", {"direction": "up"}).observation.startswith("[already at the top of the page]")


def test_relative_goto_resolves_against_the_open_page(env):
    env.step("goto", {"url": "https://cityweather.test/"})
    result = env.step("goto", {"url": "/region/western-isles"})
    assert "[url] https://cityweather.test/region/western-isles" in result.observation


def test_missing_page_is_an_error_observation_and_keeps_the_state(env):
    env.step("goto", {"url": STOCKS})
    before = env.view()
    for url in ("https://stockquotes.test/nowhere", "https://example.com/", "mailto:x@y.z"):
        result = env.step("goto", {"url": url})
        assert result.error == OUTSIDE_CACHE
        assert result.observation.startswith("Error (navigation.outside_cache): ")
    assert env.view() == before


@pytest.mark.parametrize("name, arguments, reason", [
    ("teleport", "{}", UNKNOWN_TOOL),
    ("goto", "{url: nope", ARGUMENTS_NOT_JSON),
    ("goto", "[]", ARGUMENTS_INVALID),
    ("goto", '{"url": 5}', ARGUMENTS_INVALID),
    ("goto", "{}", ARGUMENTS_INVALID),
    ("goto", '{"url": "https://stockquotes.test/", "extra": 1}', ARGUMENTS_INVALID),
    ("scroll", '{"direction": "sideways"}', ARGUMENTS_INVALID),
    ("scroll", '{"direction": "down", "amount": 0}', ARGUMENTS_INVALID),
    ("type", '{"selector": "I1", "text": "x", "press_enter": "yes"}', ARGUMENTS_INVALID),
    ("stop", '{"answers": [1, 2]}', ARGUMENTS_INVALID),
    ("click", '{"selector": "L999"}', ACTION_INVALID),
    ("click", '{"selector": "a[["}', ACTION_INVALID),
    ("type", '{"selector": "L1", "text": "x"}', ACTION_INVALID),
])
def test_bad_calls_return_error_observations(env, name, arguments, reason):
    env.step("goto", {"url": STOCKS})
    result = env.step(name, arguments)
    assert result.error == reason
    assert result.observation.startswith(f"Error ({reason}): ")


def test_actions_before_any_page_are_invalid(env):
    assert env.step("click", {"selector": "L1"}).error == ACTION_INVALID
    assert env.step("view_more", {"direction": "down"}).error == ACTION_INVALID


def test_stop_ends_the_episode(env):
    result = env.step("stop", {"answers": {"1": "42"}})
    assert result.observation == "Episode finished with 1 answer(s)." and env.done
    assert env.answers == {"1": "42"}
    assert env.step("goto", {"url": STOCKS}).error == CALL_AFTER_STOP


def test_invalid_cached_page_is_an_error_observation(tmp_path):
    write_page(tmp_path, "https://site.example/", "<html><body><a href='/bad'>bad</a></body></html>", {}, "t")
    write_page(tmp_path, "https://site.example/bad", "<p>ok</p>", {}, "t")
    bad = tmp_path / "site.example" / "bad" / "page.json"
    bad.write_text("{oops")
    env = LiveWebEnvironment(PageCache(tmp_path))
    env.step("goto", {"url": "https://site.example/"})
    result = env.step("click", {"selector": "L1"})
    assert result.error == PAGE_INVALID
    assert "site.example/bad/page.json: page.json is not valid JSON" in result.observation


def test_replay_gives_identical_observations(demo_cache_dir):
    calls = [("goto", {"url": STOCKS}), ("view_more", {"direction": "down"}), ("click", {"selector": "L30"}),
             ("type", {"selector": "I1", "text": "Acme", "press_enter": True}), ("scroll", {"direction": "down"}),
             ("click", {"selector": "L999"}), ("goto", {"url": "https://coinlist.test/coins?page=3"})]
    runs = []
    for _ in range(2):
        env = LiveWebEnvironment(PageCache(demo_cache_dir))
        runs.append([env.step(name, json.dumps(args)) for name, args in calls])
    assert runs[0] == runs[1]
