"""Question templates: a seed becomes a question, a route through the site and its ground truth.

``params`` picks the entities (from the site's index pages) with the given RNG,
``question`` words it, ``route`` is the navigation the teacher follows (steps it
turns into tool calls: open the home page, search, follow links, read on) and
``truth`` recomputes the expected answer from the cache's ``api_data``. Each site
has a look-up, a comparison of two entities and an aggregate or ranking across
rows or pages.
"""

import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from orbit.envs.liveweb.cache import PageCache
from orbit.envs.liveweb.plugins import (
    CRYPTO, NAME, NEWS, NUMBER, STOCKS, WEATHER, SitePlugin, Truth, format_celsius, format_count,
    format_usd,
)

LOOKUP, COMPARE, AGGREGATE = "lookup", "compare", "aggregate"
USD_TOLERANCE = 0.005
CELSIUS_TOLERANCE = 0.05


@dataclass(frozen=True)
class NavStep:
    """One step of a route.

    ``action`` is "goto" or "click" (``target`` a URL), "search" (type ``target``
    into the search form of ``form``, a URL path, and submit) or "read_all" (page
    down to the end of the current page).
    """

    action: str
    target: str = ""
    form: str = ""


def goto(url: str) -> NavStep:
    return NavStep("goto", url)


def click(url: str) -> NavStep:
    return NavStep("click", url)


def search(site: SitePlugin, text: str) -> NavStep:
    return NavStep("search", text, site.search_path)


READ_ALL = NavStep("read_all")


def best(rows: Iterable[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float],
         names: Callable[[Mapping[str, Any]], Sequence[str]], largest: bool = True) -> tuple[str, ...]:
    """Accepted names of the row(s) with the largest (or smallest) value; ties accept every winner."""
    rows = list(rows)
    top = (max if largest else min)(value(r) for r in rows)
    return tuple(name for r in rows if value(r) == top for name in names(r))


def name_truth(names: tuple[str, ...]) -> Truth:
    return Truth(NAME, names[0], names=names)


class Template:
    id = ""
    kind = ""
    site: SitePlugin

    def params(self, rng: random.Random, cache: PageCache) -> dict:
        raise NotImplementedError

    def question(self, params: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def plan(self, params: Mapping[str, Any]) -> str:
        """The teacher's one-line plan for this question."""
        raise NotImplementedError

    def route(self, cache: PageCache, params: Mapping[str, Any]) -> list[NavStep]:
        raise NotImplementedError

    def truth(self, cache: PageCache, params: Mapping[str, Any]) -> Truth:
        raise NotImplementedError

    def on_site(self, text: str) -> str:
        return f"On {self.site.site_name} ({self.site.home_url}), {text}"


# Stock quotes


class StockPrice(Template):
    id, kind, site = "stocks.price", LOOKUP, STOCKS

    def params(self, rng, cache):
        company = rng.choice(STOCKS.companies(cache))
        return {"symbol": company["symbol"], "name": company["name"]}

    def question(self, p):
        return self.on_site(f"what is the last price of {p['name']} ({p['symbol']}) in USD?")

    def plan(self, p):
        return f"search StockQuotes for {p['symbol']} and read the price on its quote page."

    def route(self, cache, p):
        return [goto(STOCKS.home_url), search(STOCKS, p["symbol"]), click(STOCKS.url(STOCKS.quote_path(p["symbol"])))]

    def truth(self, cache, p):
        price = STOCKS.quote(cache, p["symbol"], "price")
        return Truth(NUMBER, format_usd(price), price, "usd", USD_TOLERANCE)


class StockChangeComparison(Template):
    id, kind, site = "stocks.compare_change", COMPARE, STOCKS

    def params(self, rng, cache):
        first, second = rng.sample(STOCKS.companies(cache), 2)
        return {"symbols": [first["symbol"], second["symbol"]], "names": [first["name"], second["name"]]}

    def question(self, p):
        (a, b), (na, nb) = p["symbols"], p["names"]
        return self.on_site(f"which had the larger percentage change today: {na} ({a}) or {nb} ({b})? "
                            "Answer with the ticker symbol.")

    def plan(self, p):
        return f"look up {' and '.join(p['symbols'])} and compare their changes."

    def route(self, cache, p):
        steps = [goto(STOCKS.home_url)]
        for symbol in p["symbols"]:
            steps += [search(STOCKS, symbol), click(STOCKS.url(STOCKS.quote_path(symbol)))]
        return steps

    def truth(self, cache, p):
        rows = [{"symbol": s, "name": n, "change": STOCKS.quote(cache, s, "change_pct")}
                for s, n in zip(p["symbols"], p["names"])]
        return name_truth(best(rows, lambda r: r["change"], lambda r: (r["symbol"], r["name"])))


class StockHistoryHigh(Template):
    id, kind, site = "stocks.history_high", AGGREGATE, STOCKS

    def params(self, rng, cache):
        company = rng.choice(STOCKS.companies(cache))
        return {"symbol": company["symbol"], "name": company["name"]}

    def question(self, p):
        return self.on_site(f"what was the highest closing price of {p['symbol']} over the sessions listed on "
                            "its price history page, in USD?")

    def plan(self, p):
        return f"open the price history of {p['symbol']} and scan every close."

    def route(self, cache, p):
        return [goto(STOCKS.home_url), search(STOCKS, p["symbol"]),
                click(STOCKS.url(STOCKS.quote_path(p["symbol"]))),
                click(STOCKS.url(STOCKS.history_path(p["symbol"]))), READ_ALL]

    def truth(self, cache, p):
        high = max(row["close"] for row in STOCKS.history(cache, p["symbol"]))
        return Truth(NUMBER, format_usd(high), high, "usd", USD_TOLERANCE)


class StockSectorLeader(Template):
    id, kind, site = "stocks.sector_leader", AGGREGATE, STOCKS

    def params(self, rng, cache):
        sector = rng.choice(STOCKS.sectors(cache))
        return {"sector": sector["name"], "slug": sector["slug"]}

    def question(self, p):
        return self.on_site(f"which company in the {p['sector']} sector has the largest market cap? "
                            "Answer with the company name.")

    def plan(self, p):
        return f"open the {p['sector']} sector page and compare market caps."

    def route(self, cache, p):
        return [goto(STOCKS.home_url), click(STOCKS.url(STOCKS.sector_path(p["slug"]))), READ_ALL]

    def truth(self, cache, p):
        rows = STOCKS.sector(cache, p["slug"])
        return name_truth(best(rows, lambda r: r["market_cap"], lambda r: (r["name"], r["symbol"])))


# Crypto listing


class CoinPrice(Template):
    id, kind, site = "crypto.price", LOOKUP, CRYPTO

    def params(self, rng, cache):
        coin = rng.choice(CRYPTO.directory(cache))
        return {"name": coin["name"], "symbol": coin["symbol"], "slug": coin["slug"]}

    def question(self, p):
        return self.on_site(f"what is the current price of {p['name']} ({p['symbol']}) in USD?")

    def plan(self, p):
        return f"search CoinList for {p['name']} and open its page."

    def route(self, cache, p):
        return [goto(CRYPTO.home_url), search(CRYPTO, p["name"]), click(CRYPTO.url(CRYPTO.coin_path(p["slug"])))]

    def truth(self, cache, p):
        price = CRYPTO.coin(cache, p["slug"], "price")
        return Truth(NUMBER, format_usd(price), price, "usd", abs(price) * 1e-3)


class CoinMarketCapComparison(Template):
    id, kind, site = "crypto.compare_market_cap", COMPARE, CRYPTO

    def params(self, rng, cache):
        coins = rng.sample(CRYPTO.directory(cache), 2)
        return {"names": [c["name"] for c in coins], "symbols": [c["symbol"] for c in coins],
                "slugs": [c["slug"] for c in coins]}

    def question(self, p):
        return self.on_site(f"which coin has the larger market cap, {p['names'][0]} or {p['names'][1]}? "
                            "Answer with the coin name.")

    def plan(self, p):
        return f"look up {' and '.join(p['names'])} and compare market caps."

    def route(self, cache, p):
        steps = [goto(CRYPTO.home_url)]
        for name, slug in zip(p["names"], p["slugs"]):
            steps += [search(CRYPTO, name), click(CRYPTO.url(CRYPTO.coin_path(slug)))]
        return steps

    def truth(self, cache, p):
        rows = [{"name": n, "symbol": s, "cap": CRYPTO.coin(cache, slug, "market_cap")}
                for n, s, slug in zip(p["names"], p["symbols"], p["slugs"])]
        return name_truth(best(rows, lambda r: r["cap"], lambda r: (r["name"], r["symbol"])))


class CoinTopMover(Template):
    id, kind, site = "crypto.top_mover", AGGREGATE, CRYPTO

    def params(self, rng, cache):
        return {"direction": rng.choice(["gain", "loss"]), "pages": CRYPTO.listing_pages(cache)}

    def question(self, p):
        move = "largest 24h gain" if p["direction"] == "gain" else "largest 24h loss"
        return self.on_site(f"across all {p['pages']} pages of the coin listing, which coin had the {move}? "
                            "Answer with the coin name.")

    def plan(self, p):
        return "page through the whole coin listing and track the 24h column."

    def route(self, cache, p):
        steps = [goto(CRYPTO.home_url)]
        for page in range(1, p["pages"] + 1):
            steps += [click(CRYPTO.url(CRYPTO.listing_path(page))), READ_ALL]
        return steps

    def truth(self, cache, p):
        rows = [row for page in range(1, p["pages"] + 1) for row in CRYPTO.listing(cache, page)]
        return name_truth(best(rows, lambda r: r["change_24h"], lambda r: (r["name"], r["symbol"]),
                               largest=p["direction"] == "gain"))


# News aggregator


def front_route(page: int, item_id: int) -> list[NavStep]:
    """From the front page through "More" to ``page``, then into the item's comment page."""
    steps = [goto(NEWS.home_url)]
    steps += [click(NEWS.url(NEWS.front_path(n))) for n in range(2, page + 1)]
    return steps + [click(NEWS.url(NEWS.item_path(item_id)))]


def pick_item(rng: random.Random, cache: PageCache, numbers: Sequence[str] = ()) -> dict:
    page, item = rng.choice(NEWS.all_items(cache, numbers))
    return {"id": item["id"], "title": item["title"], "page": page}


class StoryPoints(Template):
    id, kind, site = "news.points", LOOKUP, NEWS

    def params(self, rng, cache):
        return pick_item(rng, cache)

    def question(self, p):
        return self.on_site(f'how many points does the story "{p["title"]}" have?')

    def plan(self, p):
        return "find the story on the front pages and open its comment page."

    def route(self, cache, p):
        return front_route(p["page"], p["id"])

    def truth(self, cache, p):
        points = NEWS.points(cache, p["id"])
        return Truth(NUMBER, format_count(points), points, "count")


class FirstCommenter(Template):
    id, kind, site = "news.first_commenter", LOOKUP, NEWS

    def params(self, rng, cache):
        rows = [(page, item) for page, item in NEWS.all_items(cache, ["comment_count"]) if item["comment_count"]]
        page, item = rng.choice(rows)
        return {"id": item["id"], "title": item["title"], "page": page}

    def question(self, p):
        return self.on_site(f'who wrote the first comment on the story "{p["title"]}"? Answer with the username.')

    def plan(self, p):
        return "open the story's comment page and read the first comment."

    def route(self, cache, p):
        return front_route(p["page"], p["id"])

    def truth(self, cache, p):
        return name_truth((NEWS.first_commenter(cache, p["id"]),))


class CommentCountComparison(Template):
    id, kind, site = "news.compare_comments", COMPARE, NEWS

    def params(self, rng, cache):
        items = NEWS.all_items(cache, ["comment_count"])
        page_a, first = rng.choice(items)
        # prefer a story with a different count, so the answer is unambiguous
        others = [(page, item) for page, item in items if item["comment_count"] != first["comment_count"]]
        page_b, second = rng.choice(others or [(page, item) for page, item in items if item is not first])
        return {"ids": [first["id"], second["id"]], "titles": [first["title"], second["title"]],
                "pages": [page_a, page_b]}

    def question(self, p):
        a, b = p["titles"]
        return self.on_site(f'which story has more comments: "{a}" or "{b}"? Answer with the story title.')

    def plan(self, p):
        return "open both stories' comment pages and count the comments."

    def route(self, cache, p):
        return [step for page, item_id in zip(p["pages"], p["ids"]) for step in front_route(page, item_id)]

    def truth(self, cache, p):
        rows = [{"title": t, "count": len(NEWS.comments(cache, i))} for t, i in zip(p["titles"], p["ids"])]
        return name_truth(best(rows, lambda r: r["count"], lambda r: (r["title"],)))


class UserKarma(Template):
    id, kind, site = "news.user_karma", LOOKUP, NEWS

    def params(self, rng, cache):
        authors = sorted({item["author"] for _, item in NEWS.all_items(cache)})
        return {"user": rng.choice(authors)}

    def question(self, p):
        return self.on_site(f"what is the karma of the user {p['user']}?")

    def plan(self, p):
        return f"look up {p['user']} with the user search."

    def route(self, cache, p):
        return [goto(NEWS.home_url), search(NEWS, p["user"])]

    def truth(self, cache, p):
        karma = NEWS.karma(cache, p["user"])
        return Truth(NUMBER, format_count(karma), karma, "count")


class TopStory(Template):
    id, kind, site = "news.top_story", AGGREGATE, NEWS

    def params(self, rng, cache):
        return {"page": rng.randint(1, NEWS.front_pages(cache))}

    def question(self, p):
        return self.on_site(f"which story on page {p['page']} of the front page has the most points? "
                            "Answer with the story title.")

    def plan(self, p):
        return f"go to front page {p['page']} and compare the points of every story."

    def route(self, cache, p):
        return [goto(NEWS.home_url)] + [click(NEWS.url(NEWS.front_path(n))) for n in range(2, p["page"] + 1)] \
            + [READ_ALL]

    def truth(self, cache, p):
        rows = NEWS.front(cache, p["page"], ["points"])
        return name_truth(best(rows, lambda r: r["points"], lambda r: (r["title"],)))


# City weather


class CityTemperature(Template):
    id, kind, site = "weather.temperature", LOOKUP, WEATHER

    def params(self, rng, cache):
        city = rng.choice(WEATHER.cities(cache))
        return {"city": city["name"], "slug": city["slug"]}

    def question(self, p):
        return self.on_site(f"what is the current temperature in {p['city']}, in °C?")

    def plan(self, p):
        return f"search CityWeather for {p['city']} and read the current conditions."

    def route(self, cache, p):
        return [goto(WEATHER.home_url), search(WEATHER, p["city"]), click(WEATHER.url(WEATHER.city_path(p["slug"])))]

    def truth(self, cache, p):
        temp = WEATHER.temperature(cache, p["slug"])
        return Truth(NUMBER, format_celsius(temp), temp, "celsius", CELSIUS_TOLERANCE)


class WarmerCity(Template):
    id, kind, site = "weather.warmer_city", COMPARE, WEATHER

    def params(self, rng, cache):
        cities = rng.sample(WEATHER.cities(cache), 2)
        return {"cities": [c["name"] for c in cities], "slugs": [c["slug"] for c in cities]}

    def question(self, p):
        a, b = p["cities"]
        return self.on_site(f"which city is warmer right now, {a} or {b}?")

    def plan(self, p):
        return f"look up {' and '.join(p['cities'])} and compare their temperatures."

    def route(self, cache, p):
        steps = [goto(WEATHER.home_url)]
        for name, slug in zip(p["cities"], p["slugs"]):
            steps += [search(WEATHER, name), click(WEATHER.url(WEATHER.city_path(slug)))]
        return steps

    def truth(self, cache, p):
        rows = [{"name": n, "temp": WEATHER.temperature(cache, s)} for n, s in zip(p["cities"], p["slugs"])]
        return name_truth(best(rows, lambda r: r["temp"], lambda r: (r["name"],)))


class ForecastHigh(Template):
    id, kind, site = "weather.forecast_high", AGGREGATE, WEATHER

    def params(self, rng, cache):
        city = rng.choice(WEATHER.cities(cache))
        return {"city": city["name"], "slug": city["slug"]}

    def question(self, p):
        return self.on_site(f"what is the highest daily high in the 7-day forecast for {p['city']}, in °C?")

    def plan(self, p):
        return f"open {p['city']} and read the whole forecast table."

    def route(self, cache, p):
        return [goto(WEATHER.home_url), search(WEATHER, p["city"]),
                click(WEATHER.url(WEATHER.city_path(p["slug"]))), READ_ALL]

    def truth(self, cache, p):
        high = max(row["high_c"] for row in WEATHER.forecast(cache, p["slug"]))
        return Truth(NUMBER, format_celsius(high), high, "celsius", CELSIUS_TOLERANCE)


class ColdestInRegion(Template):
    id, kind, site = "weather.region_coldest", AGGREGATE, WEATHER

    def params(self, rng, cache):
        region = rng.choice(WEATHER.regions(cache))
        return {"region": region["name"], "slug": region["slug"]}

    def question(self, p):
        return self.on_site(f"which city in the {p['region']} region is the coldest right now?")

    def plan(self, p):
        return f"open the {p['region']} region page and compare the current temperatures."

    def route(self, cache, p):
        return [goto(WEATHER.home_url), click(WEATHER.url(WEATHER.region_path(p["slug"]))), READ_ALL]

    def truth(self, cache, p):
        rows = WEATHER.region(cache, p["slug"])
        return name_truth(best(rows, lambda r: r["temp_c"], lambda r: (r["name"],), largest=False))


TEMPLATES: Mapping[str, Template] = {t.id: t for t in (
    StockPrice(), StockChangeComparison(), StockHistoryHigh(), StockSectorLeader(),
    CoinPrice(), CoinMarketCapComparison(), CoinTopMover(),
    StoryPoints(), FirstCommenter(), CommentCountComparison(), UserKarma(), TopStory(),
    CityTemperature(), WarmerCity(), ForecastHigh(), ColdestInRegion(),
)}


def templates_of(site_key: str) -> list[Template]:
    return [t for t in TEMPLATES.values() if t.site.key == site_key]
