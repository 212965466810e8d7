"""The demo cache: four synthetic sites written in the page-cache layout.

Everything derives from one seed, so the same seed gives byte-identical files:
a stock-quote site (quote pages, history tables, sector pages), a crypto listing
(paginated, with detail pages), a news aggregator (front pages, item/comment
pages, user pages) and a city-weather site (regions, cities, 7-day forecasts).
Every page carries real HTML (nav links, tables, a GET search form whose result
pages are cached, pagination) and ``api_data`` holding the facts it shows.
"""

import html
import os
import random
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import quote_plus

from orbit.envs.liveweb.cache import write_page
from orbit.envs.liveweb.plugins import (
    CRYPTO, NEWS, STOCKS, WEATHER, SitePlugin, format_celsius, format_count, format_percent,
    format_usd, format_usd_compact,
)

DEMO_FETCHED_AT = "2025-03-14T21:00:00Z"
LAST_SESSION = date(2025, 3, 14)
HISTORY_SESSIONS = 30
COINS_PER_PAGE = 20
ITEMS_PER_PAGE = 20

STOCK_SECTORS = {
    "Technology": ("Systems", "Software", "Labs", "Digital", "Networks"),
    "Energy": ("Energy", "Power", "Petroleum", "Renewables", "Utilities"),
    "Health Care": ("Health", "Therapeutics", "Biotech", "Medical", "Pharma"),
    "Financials": ("Capital", "Bancorp", "Financial", "Holdings", "Trust"),
    "Industrials": ("Industries", "Aerospace", "Machinery", "Logistics", "Manufacturing"),
    "Consumer": ("Foods", "Brands", "Retail", "Apparel", "Goods"),
}
COMPANY_WORDS = (
    "Acme", "Apex", "Aurora", "Beacon", "Birch", "Cascade", "Cobalt", "Crescent", "Summit", "Ember",
    "Falcon", "Granite", "Harbor", "Horizon", "Ironwood", "Juniper", "Keystone", "Lumen", "Meridian",
    "Northwind", "Oakridge", "Pinnacle", "Quarry", "Redwood", "Sable", "Tidewater", "Unity", "Vertex",
    "Willow", "Zenith",
)
COIN_PREFIXES = ("Aeth", "Bit", "Cor", "Dra", "Eth", "Flu", "Gal", "Hel", "Ion", "Jol",
                 "Kry", "Lum", "Mon", "Neb", "Orb", "Pol", "Qua", "Rad", "Sol", "Tor")
COIN_SUFFIXES = {"ium": "I", "ex": "X", "ora": "R", "chain": "C", "coin": "N", "net": "T"}
NEWS_USERS = (
    "ada_k", "blueowl", "cedar", "dmitri", "echo9", "fernweh", "gizmo", "hopper", "isobar", "jules_v",
    "kestrel", "lambda", "mira", "nullptr", "orca", "pixel", "quill", "rustacean", "sigma", "tundra",
    "umbra", "vortex", "wren", "xeno", "yuki",
)
TITLE_PATTERNS = (
    "Show NA: {a} {b} written in {lang}", "Why {a} {b} still matter", "{lang} {b}: a retrospective",
    "Ask NA: How do you test {a} {b}?", "The hidden cost of {a} {b}", "Tiny {a} {b} in 500 lines of {lang}",
    "Lessons from scaling {a} {b}", "{a} {b} considered harmful",
)
TITLE_WORDS = {
    "a": ("distributed", "incremental", "lazy", "reactive", "embedded", "typed", "immutable", "portable"),
    "b": ("caches", "parsers", "schedulers", "databases", "compilers", "queues", "renderers", "shells"),
    "lang": ("Rust", "Go", "Zig", "OCaml", "Python", "C", "Haskell", "Elixir"),
}
NEWS_SITES = ("blog.example", "lwn.example", "arxiv.example", "github.example", "acm.example")
COMMENT_PHRASES = (
    "This matches what we saw in production.", "Has anyone benchmarked this against the baseline?",
    "The second section is the interesting part.", "I wrote something similar years ago.",
    "Great write-up, thanks for sharing.", "The trade-offs here are underrated.",
    "Not convinced the numbers generalise.", "We switched last year and never looked back.",
)
WEATHER_REGIONS = {
    "Northern Coast": 6.0, "Central Valley": 15.0, "Eastern Highlands": 2.0,
    "Southern Plains": 22.0, "Western Isles": 11.0,
}
CITY_NAMES = (
    "Ashford", "Brightwater", "Cinderford", "Dunmere", "Eastwick", "Fairhaven", "Glenholm", "Highbridge",
    "Ivybridge", "Juniper Bay", "Kingsreach", "Larkspur", "Millbrook", "Northam", "Oakhurst", "Port Avalon",
    "Queensferry", "Ravenscar", "Stonehaven", "Thornbury", "Upton Vale", "Violet Hill", "Westmere",
    "Yarrow", "Zephyr Point", "Alderney", "Bramblecombe", "Coldharbour", "Dovercourt", "Elmstead", "Foxley",
    "Greystone", "Hollowmead", "Ironbridge", "Kestrel Cove", "Lindenfall", "Marshgate", "Newhaven",
    "Oldcastle", "Pebblestone",
)
CONDITIONS = ("Sunny", "Partly cloudy", "Cloudy", "Light rain", "Showers", "Windy", "Fog", "Snow")
FORECAST_START = date(2025, 3, 15)

DemoPage = tuple[str, str, Mapping[str, Any]]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _slug(text: str) -> str:
    return "-".join(text.lower().split())


def _link(path: str, text: str) -> str:
    return f'<a href="{_e(path)}">{_e(text)}</a>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """A table; ``rows`` hold ready-made cell HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fields(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column key/value table; values are ready-made HTML."""
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _layout(site: SitePlugin, title: str, nav: Sequence[tuple[str, str]], body: str,
            search_label: str, search_placeholder: str) -> str:
    links = " ".join(_link(path, label) for label, path in nav)
    form = (
        f'<form action="{site.search_path}" method="get" role="search"><label>{_e(search_label)} '
        f'<input type="search" name="{site.search_param}" placeholder="{_e(search_placeholder)}"></label> '
        f'<button type="submit">Go</button></form>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)} | {_e(site.site_name)}</title></head><body>"
        f'<header><nav><a href="/" class="brand">{_e(site.site_name)}</a> {links}</nav>{form}</header>'
        f"<main>{body}</main>"
        f"<footer><p>{_e(site.site_name)} demo data, generated by Orbit. All figures are synthetic.</p></footer>"
        "</body></html>"
    )


def _distinct(used: set, draw) -> Any:
    """A value from ``draw`` not yet in ``used`` (keeps compared values apart)."""
    value = draw()
    while value in used:
        value = draw()
    used.add(value)
    return value


def _search_pages(site: SitePlugin, terms: Mapping[str, str], entities: Sequence[Mapping[str, Any]],
                  keys: Sequence[str], path_of, page) -> Iterator[DemoPage]:
    """One cached result page per search term (one per case-folded term)."""
    for lowered, term in sorted(terms.items()):
        hits = [e for e in entities if any(lowered in str(e[k]).lower() for k in keys)]
        items = "".join(f"<li>{_link(path_of(e), ' - '.join(str(e[k]) for k in keys))}</li>" for e in hits)
        body = f"<h1>Results for &quot;{_e(term)}&quot;</h1>" + (
            f"<ul>{items}</ul>" if hits else "<p>No results.</p>")
        url = site.url(f"{site.search_path}?{site.search_param}={quote_plus(term)}")
        yield url, page(f"Search: {term}", body), {
            "query": term, "results": [{k: e[k] for k in keys} for e in hits]}


def _stock_pages(rng: random.Random) -> Iterator[DemoPage]:
    words = list(COMPANY_WORDS)
    rng.shuffle(words)
    sectors = [{"name": name, "slug": _slug(name)} for name in STOCK_SECTORS]
    nav = [("Markets", "/")] + [(s["name"], STOCKS.sector_path(s["slug"])) for s in sectors]

    def page(title: str, body: str) -> str:
        return _layout(STOCKS, title, nav, body, "Quote lookup", "Symbol or company")

    companies, used_changes = [], set()
    for i, word in enumerate(words):
        sector = sectors[i % len(sectors)]
        price = round(rng.uniform(8, 950), 2)
        shares = rng.randint(50, 5000) * 1_000_000
        companies.append({
            "symbol": word[:4].upper(), "name": f"{word} {rng.choice(STOCK_SECTORS[sector['name']])}",
            "sector": sector["name"], "sector_slug": sector["slug"], "price": price,
            "change_pct": _distinct(used_changes, lambda: round(rng.uniform(-6, 6), 2) or 0.01),
            "volume": rng.randint(100_000, 40_000_000), "market_cap": int(round(price * shares)),
        })
    rows = [[_link(STOCKS.quote_path(c["symbol"]), c["symbol"]), _e(c["name"]), format_usd(c["price"]),
             format_percent(c["change_pct"])] for c in companies]
    body = ("<h1>Market overview</h1>" + _table(["Symbol", "Company", "Last", "Change"], rows)
            + "<h2>Sectors</h2><ul>"
            + "".join(f"<li>{_link(STOCKS.sector_path(s['slug']), s['name'])}</li>" for s in sectors) + "</ul>")
    yield STOCKS.home_url, page("Market overview", body), {
        "companies": [{k: c[k] for k in ("symbol", "name", "sector")} for c in companies], "sectors": sectors}

    sessions = []
    day = LAST_SESSION
    while len(sessions) < HISTORY_SESSIONS:
        if day.weekday() < 5:
            sessions.append(day.isoformat())
        day -= timedelta(days=1)
    for c in companies:
        sym = c["symbol"]
        body = (f"<h1>{_e(c['name'])} ({_e(sym)})</h1>"
                f"<p>Last price <strong>{format_usd(c['price'])}</strong> "
                f"<span>{format_percent(c['change_pct'])} today</span></p>"
                + _fields([("Sector", _link(STOCKS.sector_path(c["sector_slug"]), c["sector"])),
                           ("Market cap", format_usd_compact(c["market_cap"])),
                           ("Volume", format_count(c["volume"])),
                           ("Change", format_percent(c["change_pct"]))])
                + f"<p>{_link(STOCKS.history_path(sym), 'Price history')}</p>")
        yield STOCKS.url(STOCKS.quote_path(sym)), page(f"{c['name']} ({sym})", body), dict(c)

        closes = [c["price"]]
        for _ in range(HISTORY_SESSIONS - 1):
            closes.append(round(closes[-1] * (1 + rng.gauss(0, 0.015)), 2))
        history = [{"date": d, "close": close, "volume": rng.randint(100_000, 40_000_000)}
                   for d, close in zip(sessions, closes)]
        rows = [[h["date"], format_usd(h["close"]), format_count(h["volume"])] for h in history]
        body = (f"<h1>{_e(sym)} price history</h1>"
                f"<p>{_link(STOCKS.quote_path(sym), 'Back to ' + c['name'])}</p>"
                + _table(["Date", "Close", "Volume"], rows, f"Last {HISTORY_SESSIONS} sessions"))
        yield STOCKS.url(STOCKS.history_path(sym)), page(f"{sym} history", body), {
            "symbol": sym, "history": history}

    for s in sectors:
        members = sorted((c for c in companies if c["sector"] == s["name"]), key=lambda c: c["symbol"])
        rows = [[_link(STOCKS.quote_path(c["symbol"]), c["symbol"]), _e(c["name"]),
                 format_usd_compact(c["market_cap"])] for c in members]
        body = f"<h1>{_e(s['name'])} sector</h1>" + _table(["Symbol", "Company", "Market cap"], rows)
        yield STOCKS.url(STOCKS.sector_path(s["slug"])), page(f"{s['name']} sector", body), {
            "sector": s["name"],
            "companies": [{k: c[k] for k in ("symbol", "name", "market_cap")} for c in members]}

    terms = {t.lower(): t for c in companies for t in (c["symbol"], c["name"])}
    yield from _search_pages(STOCKS, terms, companies, ("symbol", "name"),
                             lambda c: STOCKS.quote_path(c["symbol"]), page)


def _crypto_pages(rng: random.Random) -> Iterator[DemoPage]:
    combos = [(p, s) for p in COIN_PREFIXES for s in COIN_SUFFIXES]
    nav = [("Top coins", "/"), ("All coins", CRYPTO.listing_path(1))]

    def page(title: str, body: str) -> str:
        return _layout(CRYPTO, title, nav, body, "Find a coin", "Name or symbol")

    coins, used_changes = [], set()
    for prefix, suffix in rng.sample(combos, 60):
        name = prefix + suffix
        decimals = rng.choice((2, 2, 2, 4, 6))
        price = round(10 ** rng.uniform(0, 4.5) if decimals == 2 else
                      10 ** rng.uniform(-2, -0.05) if decimals == 4 else 10 ** rng.uniform(-4, -2.05), decimals)
        supply = rng.randint(1_000, 900_000) * 10_000
        coins.append({
            "name": name, "symbol": (prefix[:3] + COIN_SUFFIXES[suffix]).upper(), "slug": name.lower(),
            "price": price, "supply": supply, "market_cap": int(round(price * supply)),
            "volume_24h": rng.randint(10_000, 90_000_000),
            "change_24h": _distinct(used_changes, lambda: round(rng.uniform(-15, 15), 2) or 0.01),
        })
    coins.sort(key=lambda c: (-c["market_cap"], c["name"]))
    pages = (len(coins) + COINS_PER_PAGE - 1) // COINS_PER_PAGE
    for rank, coin in enumerate(coins, 1):
        coin["rank"] = rank
        coin["listing_page"] = (rank - 1) // COINS_PER_PAGE + 1

    def row(c: Mapping[str, Any]) -> list[str]:
        return [str(c["rank"]), _link(CRYPTO.coin_path(c["slug"]), c["name"]), _e(c["symbol"]),
                format_usd(c["price"]), format_percent(c["change_24h"]), format_usd_compact(c["market_cap"])]

    headers = ["#", "Coin", "Symbol", "Price", "24h", "Market cap"]
    body = ("<h1>Top coins by market cap</h1>" + _table(headers, [row(c) for c in coins[:10]])
            + f"<p>{_link(CRYPTO.listing_path(1), 'See all coins')}</p>")
    yield CRYPTO.home_url, page("Top coins", body), {
        "coins": [{k: c[k] for k in ("name", "symbol", "slug")} for c in coins], "listing_pages": pages}

    for number in range(1, pages + 1):
        chunk = coins[(number - 1) * COINS_PER_PAGE:number * COINS_PER_PAGE]
        pager = []
        if number > 1:
            pager.append(_link(CRYPTO.listing_path(number - 1), "‹ Prev"))
        pager.append(f"<span>Page {number} of {pages}</span>")
        if number < pages:
            pager.append(_link(CRYPTO.listing_path(number + 1), "Next ›"))
        body = ("<h1>All coins</h1>" + _table(headers, [row(c) for c in chunk])
                + f'<nav class="pager">{" ".join(pager)}</nav>')
        yield CRYPTO.url(CRYPTO.listing_path(number)), page(f"All coins, page {number}", body), {
            "page": number, "pages": pages,
            "coins": [{k: c[k] for k in ("rank", "name", "symbol", "slug", "price", "change_24h", "market_cap")}
                      for c in chunk]}

    for c in coins:
        body = (f"<h1>{_e(c['name'])} ({_e(c['symbol'])})</h1>"
                f"<p>Price <strong>{format_usd(c['price'])}</strong> "
                f"<span>{format_percent(c['change_24h'])} (24h)</span></p>"
                + _fields([("Rank", f"#{c['rank']}"), ("Market cap", format_usd_compact(c["market_cap"])),
                           ("Volume (24h)", format_usd_compact(c["volume_24h"])),
                           ("Circulating supply", f"{format_count(c['supply'])} {_e(c['symbol'])}")])
                + f"<p>{_link(CRYPTO.listing_path(c['listing_page']), 'Back to the listing')}</p>")
        yield CRYPTO.url(CRYPTO.coin_path(c["slug"])), page(f"{c['name']} price", body), dict(c)

    terms = {t.lower(): t for c in coins for t in (c["name"], c["symbol"])}
    yield from _search_pages(CRYPTO, terms, coins, ("name", "symbol"),
                             lambda c: CRYPTO.coin_path(c["slug"]), page)


def _news_pages(rng: random.Random) -> Iterator[DemoPage]:
    nav = [("Front page", "/"), ("More", NEWS.front_path(2))]

    def page(title: str, body: str) -> str:
        return _layout(NEWS, title, nav, body, "Find user", "username")

    titles: list[str] = []
    while len(titles) < 80:
        words = {k: rng.choice(v) for k, v in TITLE_WORDS.items()}
        title = rng.choice(TITLE_PATTERNS).format(**words)
        title = title[0].upper() + title[1:]
        if title not in titles:
            titles.append(title)
    items = []
    for i, (title, points) in enumerate(zip(titles, rng.sample(range(5, 1000), len(titles)))):
        comments = [{"author": rng.choice(NEWS_USERS), "text": rng.choice(COMMENT_PHRASES)}
                    for _ in range(rng.randint(0, 12))]
        items.append({"id": 1001 + i, "title": title, "points": points, "author": rng.choice(NEWS_USERS),
                      "site": rng.choice(NEWS_SITES), "hours_ago": rng.randint(1, 23), "comments": comments})
    pages = (len(items) + ITEMS_PER_PAGE - 1) // ITEMS_PER_PAGE

    for number in range(1, pages + 1):
        chunk = items[(number - 1) * ITEMS_PER_PAGE:number * ITEMS_PER_PAGE]
        rows = []
        for rank, item in enumerate(chunk, (number - 1) * ITEMS_PER_PAGE + 1):
            item_path = NEWS.item_path(item["id"])
            rows.append([f"{rank}.", f"{_link(item_path, item['title'])} <span>({_e(item['site'])})</span>"])
            rows.append(["", f"{item['points']} points by {_link(NEWS.user_path(item['author']), item['author'])}"
                             f" {item['hours_ago']} hours ago | "
                             f"{_link(item_path, str(len(item['comments'])) + ' comments')}"])
        more = f"<p>{_link(NEWS.front_path(number + 1), 'More ›')}</p>" if number < pages else ""
        body = f"<h1>Top stories, page {number}</h1>" + _table(["#", "Story"], rows) + more
        yield NEWS.url(NEWS.front_path(number)), page(f"Top stories, page {number}", body), {
            "page": number, "pages": pages,
            "items": [{"id": it["id"], "title": it["title"], "points": it["points"], "author": it["author"],
                       "comment_count": len(it["comments"])} for it in chunk]}

    for item in items:
        comments = "".join(f"<li>{_link(NEWS.user_path(c['author']), c['author'])}: {_e(c['text'])}</li>"
                           for c in item["comments"])
        body = (f"<h1>{_e(item['title'])}</h1>"
                f"<p>{item['points']} points by {_link(NEWS.user_path(item['author']), item['author'])}"
                f" {item['hours_ago']} hours ago ({_e(item['site'])})</p>"
                f"<h2>{len(item['comments'])} comments</h2>"
                + (f'<ul class="comments">{comments}</ul>' if comments else "<p>No comments yet.</p>"))
        yield NEWS.url(NEWS.item_path(item["id"])), page(item["title"], body), dict(item)

    for name in NEWS_USERS:
        submitted = [it for it in items if it["author"] == name]
        karma = sum(it["points"] for it in submitted) + 7 * sum(
            1 for it in items for c in it["comments"] if c["author"] == name)
        created = (date(2015, 1, 1) + timedelta(days=rng.randint(0, 3000))).isoformat()
        listing = "".join(f"<li>{_link(NEWS.item_path(it['id']), it['title'])}</li>" for it in submitted)
        body = (f"<h1>User {_e(name)}</h1>"
                + _fields([("Karma", format_count(karma)), ("Created", created),
                           ("Submissions", str(len(submitted)))])
                + (f"<h2>Submissions</h2><ul>{listing}</ul>" if listing else ""))
        yield NEWS.url(NEWS.user_path(name)), page(f"User {name}", body), {
            "id": name, "karma": karma, "created": created, "submissions": [it["id"] for it in submitted]}


def _weather_pages(rng: random.Random) -> Iterator[DemoPage]:
    regions = [{"name": name, "slug": _slug(name)} for name in WEATHER_REGIONS]
    nav = [("Regions", "/")] + [(r["name"], WEATHER.region_path(r["slug"])) for r in regions]

    def page(title: str, body: str) -> str:
        return _layout(WEATHER, title, nav, body, "City search", "City name")

    names = list(CITY_NAMES)
    rng.shuffle(names)
    cities = []
    per_region = len(names) // len(regions)
    for r_index, region in enumerate(regions):
        used_temps: set = set()
        base = WEATHER_REGIONS[region["name"]]
        region["cities"] = []
        for name in names[r_index * per_region:(r_index + 1) * per_region]:
            temp = _distinct(used_temps, lambda b=base: round(b + rng.uniform(-6, 6), 1))
            forecast = []
            for d in range(7):
                high = round(temp + rng.uniform(-4, 6), 1)
                forecast.append({"day": (FORECAST_START + timedelta(days=d)).strftime("%a %d %b"),
                                 "high_c": high, "low_c": round(high - rng.uniform(4, 10), 1),
                                 "condition": rng.choice(CONDITIONS)})
            city = {"name": name, "slug": _slug(name), "region": region["name"], "region_slug": region["slug"],
                    "temp_c": temp, "feels_like_c": round(temp + rng.uniform(-3, 1), 1),
                    "humidity": rng.randint(30, 98), "wind_kmh": rng.randint(0, 60),
                    "condition": rng.choice(CONDITIONS), "forecast": forecast}
            cities.append(city)
            region["cities"].append({"name": name, "slug": city["slug"]})

    body = ("<h1>Weather by region</h1><ul>"
            + "".join(f"<li>{_link(WEATHER.region_path(r['slug']), r['name'])} ({len(r['cities'])} cities)</li>"
                      for r in regions) + "</ul>")
    yield WEATHER.home_url, page("Weather by region", body), {"regions": regions}

    for region in regions:
        members = [c for c in cities if c["region"] == region["name"]]
        rows = [[_link(WEATHER.city_path(c["slug"]), c["name"]), format_celsius(c["temp_c"]), _e(c["condition"]),
                 f"{c['humidity']}%"] for c in members]
        body = f"<h1>{_e(region['name'])}</h1>" + _table(["City", "Now", "Conditions", "Humidity"], rows)
        yield WEATHER.url(WEATHER.region_path(region["slug"])), page(region["name"], body), {
            "region": region["name"],
            "cities": [{k: c[k] for k in ("name", "slug", "temp_c", "condition", "humidity")} for c in members]}

    for c in cities:
        rows = [[_e(f["day"]), format_celsius(f["high_c"]), format_celsius(f["low_c"]), _e(f["condition"])]
                for f in c["forecast"]]
        body = (f"<h1>Weather in {_e(c['name'])}</h1>"
                f"<p>{_link(WEATHER.region_path(c['region_slug']), c['region'])} region</p>"
                "<h2>Current conditions</h2>"
                + _fields([("Temperature", format_celsius(c["temp_c"])),
                           ("Feels like", format_celsius(c["feels_like_c"])),
                           ("Humidity", f"{c['humidity']}%"), ("Wind", f"{c['wind_kmh']} km/h"),
                           ("Conditions", _e(c["condition"]))])
                + "<h2>7-day forecast</h2>" + _table(["Day", "High", "Low", "Conditions"], rows))
        yield WEATHER.url(WEATHER.city_path(c["slug"])), page(f"Weather in {c['name']}", body), dict(c)

    terms = {c["name"].lower(): c["name"] for c in cities}
    yield from _search_pages(WEATHER, terms, cities, ("name",),
                             lambda c: WEATHER.city_path(c["slug"]), page)


def demo_pages(seed: int = 0) -> Iterator[DemoPage]:
    """Every demo page as ``(url, html, api_data)``; a pure function of the seed."""
    for offset, site_pages in enumerate((_stock_pages, _crypto_pages, _news_pages, _weather_pages)):
        yield from site_pages(random.Random(seed * 7919 + offset))


def ensure_demo_cache(root: Path | str, seed: int = 0) -> Path:
    """Write the demo cache at ``root`` unless it exists; built in a temp folder, then renamed."""
    root = Path(root)
    if root.exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex}"
    try:
        for url, page_html, api_data in demo_pages(seed):
            write_page(tmp, url, page_html, api_data, DEMO_FETCHED_AT)
        try:
            os.rename(tmp, root)
        except OSError:
            if not root.is_dir():  # lost a race only if someone else's cache is now in place
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root
