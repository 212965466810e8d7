"""Answer checking, templates and composite tasks."""

import random

import pytest

from orbit.envs.liveweb.cache import PageCache, PageError
from orbit.envs.liveweb.plugins import (
    CRYPTO, NAME, NEWS, NUMBER, PLUGINS, STOCKS, WEATHER, Truth, normalize_name, parse_quantity,
)
from orbit.envs.liveweb.tasks import build_task, check_subtask_count, choose_templates
from orbit.envs.liveweb.templates import AGGREGATE, COMPARE, LOOKUP, TEMPLATES, templates_of

PRICE = Truth(NUMBER, "$1,234.50", 1234.5, "usd", 0.005)
TEMP = Truth(NUMBER, "21.5 °C", 21.5, "celsius", 0.05)
KARMA = Truth(NUMBER, "2,345", 2345, "count")
COIN = Truth(NAME, "Solchain", names=("Solchain", "SOLC"))


@pytest.mark.parametrize("answer", ["$1,234.5", "1234.50", "1234.5 USD", "USD 1,234.50", "$ 1234.5", "1.2345k"])
def test_money_answers_match_whatever_the_formatting(answer):
    assert STOCKS.check(answer, PRICE)


@pytest.mark.parametrize("answer", ["$1,234.60", "€1,234.50", "1234.5 EUR", "about 1234.5", "n/a", ""])
def test_money_answers_that_do_not_match(answer):
    assert not STOCKS.check(answer, PRICE)


@pytest.mark.parametrize("answer, ok", [
    ("21.5 °C", True), ("21.5", True), ("21.5C", True), ("70.7 °F", True), ("70.7F", True),
    ("22 °C", False), ("21.5 K", False),
])
def test_weather_normalises_units(answer, ok):
    assert WEATHER.check(answer, TEMP) is ok


def test_counts_and_names():
    assert NEWS.check("2,345", KARMA) and NEWS.check("2345 karma", KARMA) and not NEWS.check("2346", KARMA)
    assert CRYPTO.check("solchain", COIN) and CRYPTO.check(" SOLC. ", COIN) and not CRYPTO.check("Solex", COIN)
    assert normalize_name("The  Zig caches: a retrospective!") == normalize_name("zig caches a retrospective")
    assert normalize_name("Café & Co") == "cafe and co"
    assert parse_quantity("$1.2B") == (1.2e9, "$")
    assert parse_quantity("-$3.5") == (-3.5, "$")
    assert parse_quantity("nothing") is None


def test_every_site_has_three_kinds_of_templates():
    assert set(PLUGINS) == {"stocks", "crypto", "news", "weather"}
    for site in PLUGINS:
        templates = templates_of(site)
        assert len(templates) >= 3
        kinds = {t.kind for t in templates}
        assert {LOOKUP, COMPARE, AGGREGATE} <= kinds, site


def test_templates_derive_questions_routes_and_truth(demo_cache):
    for template in TEMPLATES.values():
        params = template.params(random.Random(7), demo_cache)
        assert params == template.params(random.Random(7), demo_cache)
        assert template.site.site_name in template.question(params)
        route = template.route(demo_cache, params)
        assert route[0].action == "goto" and route[0].target == template.site.home_url
        assert len(route) > 1
        truth = template.truth(demo_cache, params)
        assert template.site.check(truth.display, truth), template.id


def test_composite_tasks_use_distinct_sites_and_are_deterministic(demo_cache):
    for count in (1, 2, 3, 4):
        for seed in range(30):
            task = build_task(demo_cache, seed, count)
            assert len(task.subtasks) == count
            assert len({s.template.site.key for s in task.subtasks}) == count
            assert task == build_task(demo_cache, seed, count)
            assert task.task_id.startswith("liveweb-")
            assert [t.id for t in choose_templates(seed, count)] == [s.template.id for s in task.subtasks]
    ids = {build_task(demo_cache, seed, 2).task_id for seed in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize("count", [0, 5, "2", True])
def test_subtask_count_is_checked(count):
    with pytest.raises(ValueError):
        check_subtask_count(count)


def test_missing_api_field_names_the_page(cache_copy, edit_page):
    symbol = "ACME"
    page_file = cache_copy / "stockquotes.test" / "quote" / symbol / "page.json"
    edit_page(page_file, lambda data: data["api_data"].pop("price"))
    with pytest.raises(PageError) as info:
        STOCKS.quote(PageCache(cache_copy), symbol, "price")
    assert info.value.path == f"stockquotes.test/quote/{symbol}/page.json"
    assert info.value.reason == "api_data missing field 'price'"
