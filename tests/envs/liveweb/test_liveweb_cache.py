"""Page-cache layout, URL normalisation, page validation and the demo cache."""

import json
from pathlib import Path

import pytest

from orbit.envs.liveweb.cache import (
    CacheNotFoundError, PageCache, PageError, html_problem, normalize_url, page_file, parse_page, write_page,
)
from orbit.envs.liveweb.demo_sites import demo_pages, ensure_demo_cache

HTML = "<!DOCTYPE html><html><head><title>T</title></head><body><h1>Hello</h1></body></html>"


@pytest.mark.parametrize("url, expected", [
    ("HTTPS://Shop.Example:443/Items/?b=2&a=1#top", "https://shop.example/Items?a=1&b=2"),
    ("http://shop.example:80/", "http://shop.example/"),
    ("https://shop.example:8443/x", "https://shop.example:8443/x"),
    ("https://shop.example/a/./b/../c?utm_source=x&utm_medium=y&fbclid=1&gclid=2&ref=hn&q=1",
     "https://shop.example/a/c?q=1"),
    ("https://shop.example", "https://shop.example/"),
    ("https://shop.example/search?q=Acme+Corp", "https://shop.example/search?q=Acme+Corp"),
])
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected
    assert normalize_url(expected) == expected


@pytest.mark.parametrize("url", ["ftp://shop.example/x", "not a url", "/relative/path", "https:///nohost"])
def test_normalize_url_rejects_non_web_urls(url):
    with pytest.raises(ValueError):
        normalize_url(url)


@pytest.mark.parametrize("url, expected", [
    ("https://shop.example/", "shop.example/_root/page.json"),
    ("https://shop.example/?page=2", "shop.example/_root__page=2/page.json"),
    ("https://shop.example/quote/ACME/history", "shop.example/quote/ACME/history/page.json"),
    ("https://shop.example/search?Q=Acme+Corp&b=1", "shop.example/search__b=1&q=acme+corp/page.json"),
    ("https://shop.example/user?id=ada_k", "shop.example/user__id=ada%5Fk/page.json"),
    ("https://shop.example/_root", "shop.example/%5Froot/page.json"),
    ("https://shop.example:8080/x", "shop.example%3A8080/x/page.json"),
])
def test_page_file_layout(url, expected):
    assert page_file(url) == expected


def test_long_components_are_shortened_with_a_hash():
    long_a, long_b = "https://s.example/search?q=" + "a" * 400, "https://s.example/search?q=" + "a" * 399 + "b"
    for url in (long_a, long_b):
        assert all(len(part) <= 150 for part in page_file(url).split("/"))
    assert page_file(long_a) != page_file(long_b)


def test_write_then_read_round_trip_through_url_variants(tmp_path):
    written = write_page(tmp_path, "https://Shop.Example/search?q=Acme&b=2", HTML, {"n": 1}, "2025-01-01T00:00:00Z")
    assert written == tmp_path / "shop.example" / "search__b=2&q=acme" / "page.json"
    cache = PageCache(tmp_path)
    for variant in ("https://shop.example/search?b=2&q=ACME",
                    "http://shop.example:80/search/?q=acme&b=2&utm_campaign=x#frag"):
        page = cache.lookup(variant)
        assert page is not None and page.api_data == {"n": 1} and page.html == HTML
        assert page.path == "shop.example/search__b=2&q=acme/page.json"
    assert cache.lookup("https://shop.example/other") is None
    assert not list(tmp_path.rglob("*.tmp"))


def _page_bytes(**overrides):
    data = {"url": "https://shop.example/x", "html": HTML, "api_data": {}, "fetched_at": "2025-01-01T00:00:00Z"}
    data.update(overrides)
    return json.dumps(data).encode()


@pytest.mark.parametrize("blob, reason", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"url": "https://shop.example/x", "html": HTML}).encode(), "missing key 'api_data'"),
    (_page_bytes(html=5), "'html' is not a string"),
    (_page_bytes(api_data=[1]), "'api_data' is not an object"),
    (_page_bytes(url="https://shop.example/elsewhere"), "belongs in shop.example/elsewhere/page.json"),
    (_page_bytes(html=""), "html is empty"),
    (_page_bytes(html="\x00\x01\x02PNG\x03"), "binary control characters"),
    (_page_bytes(html="just some words, no markup"), "no elements"),
])
def test_parse_page_reports_path_and_reason(blob, reason):
    with pytest.raises(PageError) as info:
        parse_page("shop.example/x/page.json", blob)
    assert info.value.path == "shop.example/x/page.json"
    assert reason in info.value.reason
    assert str(info.value).startswith("shop.example/x/page.json: ")


def test_html_problem_accepts_real_html():
    assert html_problem(HTML) is None
    assert html_problem("<p>fragment without html or body tags</p>") is None


def test_missing_cache_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no" / "such" / "cache"
    with pytest.raises(CacheNotFoundError) as info:
        PageCache(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_scan_counts_bad_pages_without_raising(cache_copy):
    total = len(list(cache_copy.rglob("page.json")))
    (cache_copy / "stockquotes.test" / "_root" / "page.json").write_text("{broken")
    city = next((cache_copy / "cityweather.test" / "city").iterdir()) / "page.json"
    data = json.loads(city.read_text())
    data["html"] = "\x00\x00\x00"
    city.write_text(json.dumps(data))
    report = PageCache(cache_copy).scan()
    assert report.valid == total - 2 and report.invalid == 2
    assert sorted(e.path for e in report.errors) == sorted(
        ["stockquotes.test/_root/page.json", city.relative_to(cache_copy).as_posix()])


def test_demo_cache_is_valid_and_several_hundred_pages(demo_cache_dir, demo_cache):
    report = demo_cache.scan()
    assert report.errors == []
    assert report.valid >= 400
    assert sorted(p.name for p in demo_cache_dir.iterdir()) == [
        "cityweather.test", "coinlist.test", "newsagg.test", "stockquotes.test"]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_demo_cache_is_byte_identical_for_a_seed(demo_cache_dir, tmp_path):
    again = ensure_demo_cache(tmp_path / "again", seed=0)
    assert _files(again) == _files(demo_cache_dir)
    other = ensure_demo_cache(tmp_path / "other", seed=1)
    assert _files(other) != _files(demo_cache_dir)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ensure_demo_cache_leaves_an_existing_cache_alone(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    (root / "mine.txt").write_text("keep")
    assert ensure_demo_cache(root) == root
    assert [p.name for p in root.iterdir()] == ["mine.txt"]


def test_demo_pages_carry_search_forms_tables_and_pagination():
    pages = {url: (html, api) for url, html, api in demo_pages(0)}
    home_html, _ = pages["https://stockquotes.test/"]
    assert '<form action="/search" method="get"' in home_html and "<table>" in home_html
    listing_html, listing_api = pages["https://coinlist.test/coins?page=2"]
    assert "/coins?page=3" in listing_html and "/coins?page=1" in listing_html
    assert listing_api["page"] == 2 and len(listing_api["coins"]) == 20
    assert any(url.startswith("https://cityweather.test/search?q=") for url in pages)
    assert any(url.startswith("https://newsagg.test/user?id=") for url in pages)
