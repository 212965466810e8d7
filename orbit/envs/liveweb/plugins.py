"""Site plugins: what Orbit knows about each LiveWeb site.

A plugin knows its domain and URL scheme, how the site formats values, how to
read facts from a page's ``api_data`` (a missing field is a ``PageError`` naming
the page) and how to check an answer against ground truth: numbers within a
tolerance whatever their formatting ("$1,234.5" == "1234.50", "70.7 °F" ==
"21.5 °C"), names compared after normalisation.
"""

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from orbit.envs.liveweb.cache import PageCache, PageError

NUMBER = "number"
NAME = "name"

UNIT_ALIASES: Mapping[str, frozenset[str]] = {
    "usd": frozenset({"", "$", "usd", "us$", "dollars"}),
    "celsius": frozenset({"", "°c", "° c", "c", "celsius", "degrees celsius", "degrees c"}),
    "count": frozenset({"", "points", "point", "pts", "comments", "comment", "karma"}),
}
FAHRENHEIT = frozenset({"°f", "° f", "f", "fahrenheit", "degrees fahrenheit", "degrees f"})
MAGNITUDES = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9,
              "billion": 1e9, "t": 1e12, "trillion": 1e12}
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_MAGNITUDE_RE = re.compile(r"^(thousand|million|billion|trillion|bn|k|m|b|t)(?![a-z])")


@dataclass(frozen=True)
class Truth:
    """The expected answer of one subtask; ``display`` is how the site shows it."""

    kind: str
    display: str
    value: float = 0.0
    unit: str = ""
    tolerance: float = 0.0
    names: tuple[str, ...] = ()


def parse_quantity(text: str) -> tuple[float, str] | None:
    """``(value, unit words)`` of an answer holding one number, e.g. "$1.2B" -> (1.2e9, "$")."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").strip().lower().rstrip(".")
    match = _NUMBER_RE.search(text)
    if not match:
        return None
    value = float(match.group().replace(",", ""))
    pre, post = text[:match.start()].strip(), text[match.end():].strip()
    if pre.startswith("-") and value >= 0:
        value, pre = -value, pre[1:].strip()
    magnitude = _MAGNITUDE_RE.match(post)
    if magnitude:
        value *= MAGNITUDES[magnitude.group(1)]
        post = post[magnitude.end():].strip()
    return value, " ".join(f"{pre} {post}".split())


def normalize_name(text: str) -> str:
    """Case, accents, punctuation and a leading "the" do not matter in names."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold().replace("&", " and ")
    words = re.sub(r"[^\w\s]|_", " ", text).split()
    if words[:1] == ["the"]:
        words = words[1:]
    return " ".join(words)


def format_usd(value: float) -> str:
    """Money as the sites print it: two decimals, more for sub-dollar amounts."""
    decimals = 2 if abs(value) >= 1 else 4 if abs(value) >= 0.01 else 6
    return f"${value:,.{decimals}f}"


def format_usd_compact(value: float) -> str:
    for suffix, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if abs(value) >= size:
            return f"${value / size:,.2f}{suffix}"
    return format_usd(value)


def format_percent(value: float) -> str:
    return f"{value:+.2f}%"


def format_celsius(value: float) -> str:
    return f"{value:.1f} °C"


def format_count(value: int) -> str:
    return f"{value:,}"


class SitePlugin:
    """Base of the site plugins: URLs, api_data readers and answer checking."""

    key = ""
    domain = ""
    site_name = ""
    search_path = "/search"
    search_param = "q"

    @property
    def home_url(self) -> str:
        return self.url("/")

    def url(self, path: str) -> str:
        return f"https://{self.domain}{path}"

    def api(self, cache: PageCache, path: str, fields: Sequence[str],
            numbers: Sequence[str] = ()) -> Mapping[str, Any]:
        """The api_data of one page, which must carry ``fields`` (``numbers`` among them numeric)."""
        page = cache.page(self.url(path))
        return require_fields(page.path, page.api_data, fields, "api_data", numbers)

    def rows(self, cache: PageCache, path: str, key: str, fields: Sequence[str],
             numbers: Sequence[str] = ()) -> list[Mapping[str, Any]]:
        """A list of objects under ``api_data[key]``, each carrying ``fields`` (memoised per cache)."""
        return cache.derive(("rows", self.url(path), key, tuple(fields), tuple(numbers)),
                            lambda: self._rows(cache, path, key, fields, numbers))

    def _rows(self, cache: PageCache, path: str, key: str, fields: Sequence[str],
              numbers: Sequence[str]) -> list[Mapping[str, Any]]:
        page = cache.page(self.url(path))
        rows = require_fields(page.path, page.api_data, [key], "api_data")[key]
        if not isinstance(rows, list):
            raise PageError(page.path, f"api_data[{key!r}] is not a list")
        return [require_fields(page.path, row, fields, f"api_data[{key!r}][{i}]", numbers)
                for i, row in enumerate(rows)]

    def count(self, cache: PageCache, path: str, key: str) -> int:
        """A positive integer under ``api_data[key]`` (a number of pages)."""
        page = cache.page(self.url(path))
        value = require_fields(page.path, page.api_data, [key], "api_data")[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PageError(page.path, f"api_data[{key!r}] is not a positive integer")
        return value

    def canonical_number(self, value: float, unit_words: str, unit: str) -> float | None:
        """The answer's value in ``unit``, or None when its unit words do not fit."""
        return value if unit_words in UNIT_ALIASES.get(unit, frozenset({""})) else None

    def check(self, answer: str, truth: Truth) -> bool:
        if truth.kind == NAME:
            wanted = {normalize_name(str(name)) for name in truth.names}
            return normalize_name(answer) in wanted
        quantity = parse_quantity(answer)
        if quantity is None:
            return False
        value = self.canonical_number(quantity[0], quantity[1], truth.unit)
        return value is not None and math.isclose(value, truth.value, rel_tol=0.0, abs_tol=truth.tolerance + 1e-9)


def require_fields(path: str, data: Any, fields: Sequence[str], where: str,
                   numbers: Sequence[str] = ()) -> Mapping[str, Any]:
    """``data`` checked to be an object holding ``fields``; PageError naming the page otherwise."""
    if not isinstance(data, dict):
        raise PageError(path, f"{where} is not an object")
    for name in fields:
        if name not in data or data[name] is None:
            raise PageError(path, f"{where} missing field {name!r}")
    for name in numbers:
        if isinstance(data[name], bool) or not isinstance(data[name], (int, float)):
            raise PageError(path, f"{where} field {name!r} is not a number")
    return data


class StocksSite(SitePlugin):
    key = "stocks"
    domain = "stockquotes.test"
    site_name = "StockQuotes"

    @staticmethod
    def quote_path(symbol: str) -> str:
        return f"/quote/{symbol}"

    @staticmethod
    def history_path(symbol: str) -> str:
        return f"/quote/{symbol}/history"

    @staticmethod
    def sector_path(slug: str) -> str:
        return f"/sector/{slug}"

    def companies(self, cache: PageCache) -> list[Mapping[str, Any]]:
        return self.rows(cache, "/", "companies", ["symbol", "name"])

    def sectors(self, cache: PageCache) -> list[Mapping[str, Any]]:
        return self.rows(cache, "/", "sectors", ["name", "slug"])

    def quote(self, cache: PageCache, symbol: str, field: str) -> float:
        return self.api(cache, self.quote_path(symbol), [field], [field])[field]

    def history(self, cache: PageCache, symbol: str) -> list[Mapping[str, Any]]:
        return self.rows(cache, self.history_path(symbol), "history", ["date", "close"], ["close"])

    def sector(self, cache: PageCache, slug: str) -> list[Mapping[str, Any]]:
        return self.rows(cache, self.sector_path(slug), "companies", ["symbol", "name", "market_cap"],
                         ["market_cap"])


class CryptoSite(SitePlugin):
    key = "crypto"
    domain = "coinlist.test"
    site_name = "CoinList"

    @staticmethod
    def listing_path(page: int) -> str:
        return f"/coins?page={page}"

    @staticmethod
    def coin_path(slug: str) -> str:
        return f"/coin/{slug}"

    def directory(self, cache: PageCache) -> list[Mapping[str, Any]]:
        return self.rows(cache, "/", "coins", ["name", "symbol", "slug"])

    def listing_pages(self, cache: PageCache) -> int:
        return self.count(cache, "/", "listing_pages")

    def listing(self, cache: PageCache, page: int) -> list[Mapping[str, Any]]:
        return self.rows(cache, self.listing_path(page), "coins", ["name", "symbol", "change_24h"], ["change_24h"])

    def coin(self, cache: PageCache, slug: str, field: str) -> float:
        return self.api(cache, self.coin_path(slug), [field], [field])[field]


class NewsSite(SitePlugin):
    key = "news"
    domain = "newsagg.test"
    site_name = "NewsAgg"
    search_path = "/user"
    search_param = "id"

    @staticmethod
    def front_path(page: int) -> str:
        return "/" if page == 1 else f"/news?p={page}"

    @staticmethod
    def item_path(item_id: int) -> str:
        return f"/item?id={item_id}"

    @staticmethod
    def user_path(name: str) -> str:
        return f"/user?id={name}"

    def front_pages(self, cache: PageCache) -> int:
        return self.count(cache, "/", "pages")

    def front(self, cache: PageCache, page: int, numbers: Sequence[str] = ()) -> list[Mapping[str, Any]]:
        """The items of one front page (``numbers``: numeric fields the caller needs)."""
        return self.rows(cache, self.front_path(page), "items", ["id", "title", "author", *numbers],
                         ["id", *numbers])

    def all_items(self, cache: PageCache, numbers: Sequence[str] = ()) -> list[tuple[int, Mapping[str, Any]]]:
        """Every front-page item with the number of the page it is on (memoised per cache)."""
        return cache.derive(("all_items", self.domain, tuple(numbers)), lambda: [
            (page, item) for page in range(1, self.front_pages(cache) + 1)
            for item in self.front(cache, page, numbers)])

    def points(self, cache: PageCache, item_id: int) -> float:
        return self.api(cache, self.item_path(item_id), ["points"], ["points"])["points"]

    def comments(self, cache: PageCache, item_id: int) -> list[Mapping[str, Any]]:
        return self.rows(cache, self.item_path(item_id), "comments", ["author"])

    def first_commenter(self, cache: PageCache, item_id: int) -> str:
        comments = self.comments(cache, item_id)
        if not comments:
            raise PageError(cache.page(self.url(self.item_path(item_id))).path, "api_data['comments'] is empty")
        return str(comments[0]["author"])

    def karma(self, cache: PageCache, name: str) -> float:
        return self.api(cache, self.user_path(name), ["karma"], ["karma"])["karma"]


class WeatherSite(SitePlugin):
    key = "weather"
    domain = "cityweather.test"
    site_name = "CityWeather"

    @staticmethod
    def region_path(slug: str) -> str:
        return f"/region/{slug}"

    @staticmethod
    def city_path(slug: str) -> str:
        return f"/city/{slug}"

    def regions(self, cache: PageCache) -> list[Mapping[str, Any]]:
        return self.rows(cache, "/", "regions", ["name", "slug"])

    def cities(self, cache: PageCache) -> list[Mapping[str, Any]]:
        """Every city listed on the home page, across regions (memoised per cache)."""
        return cache.derive(("cities", self.domain), lambda: self._cities(cache))

    def _cities(self, cache: PageCache) -> list[Mapping[str, Any]]:
        page = cache.page(self.home_url)
        found: list[Mapping[str, Any]] = []
        for r, region in enumerate(self.rows(cache, "/", "regions", ["cities"])):
            where = f"api_data['regions'][{r}]['cities']"
            if not isinstance(region["cities"], list):
                raise PageError(page.path, f"{where} is not a list")
            found += [require_fields(page.path, city, ["name", "slug"], f"{where}[{c}]")
                      for c, city in enumerate(region["cities"])]
        return found

    def region(self, cache: PageCache, slug: str) -> list[Mapping[str, Any]]:
        return self.rows(cache, self.region_path(slug), "cities", ["name", "temp_c"], ["temp_c"])

    def temperature(self, cache: PageCache, slug: str) -> float:
        return self.api(cache, self.city_path(slug), ["temp_c"], ["temp_c"])["temp_c"]

    def forecast(self, cache: PageCache, slug: str) -> list[Mapping[str, Any]]:
        return self.rows(cache, self.city_path(slug), "forecast", ["day", "high_c"], ["high_c"])

    def canonical_number(self, value: float, unit_words: str, unit: str) -> float | None:
        if unit == "celsius" and unit_words in FAHRENHEIT:
            return (value - 32.0) * 5.0 / 9.0
        return super().canonical_number(value, unit_words, unit)


STOCKS = StocksSite()
CRYPTO = CryptoSite()
NEWS = NewsSite()
WEATHER = WeatherSite()
PLUGINS: Mapping[str, SitePlugin] = {p.key: p for p in (STOCKS, CRYPTO, NEWS, WEATHER)}
