"""The LiveWeb page cache, in the liveweb-arena layout.

One page lives at ``<cache>/<host>/<path segments>[__<query>]/page.json`` and holds
``{"url", "html", "api_data", "fetched_at"}``. URLs are normalised first: host
lower-cased, default ports (80, 443) and the fragment dropped, tracking parameters
(``utm_*``, ``fbclid``, ``gclid``, ``ref``, ...) removed, dot segments resolved, a
trailing slash dropped and the query sorted. The scheme is not part of the folder.

Folder names: every path segment is percent-encoded (``_`` included, so no
segment can look like a marker); the root path ``/`` maps to the folder ``_root``;
a query is appended to the last folder as ``__<query>``, lower-cased and sorted
(``/search?q=ACME`` -> ``search__q=acme``). A component longer than
``MAX_COMPONENT`` characters is cut and suffixed with a hash of the whole.

A page is valid when ``page.json`` is a UTF-8 JSON object with those keys (``url``,
``html`` and ``fetched_at`` strings, ``api_data`` an object or null), its URL maps
to the folder it sits in, and its HTML parses. "Parses" with selectolax (lexbor,
which accepts any text) means: non-blank, free of binary control characters, and
yielding at least one element inside ``<body>``; plain text or bytes are not HTML.
Errors name the page by its path relative to the cache root, so they read the same
wherever the cache is mounted.
"""

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Hashable, Mapping, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser

from orbit.io.schema import stable_hash

PAGE_FILE = "page.json"
ROOT_FOLDER = "_root"
QUERY_SEPARATOR = "__"
MAX_COMPONENT = 150
PAGE_KEYS = ("url", "html", "api_data", "fetched_at")
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "yclid", "igshid", "mc_cid", "mc_eid",
     "ref", "ref_src", "ref_url", "_ga", "_gl", "spm"}
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")
_FOLDER_SAFE = "-.~=&+,"
T = TypeVar("T")


class CacheError(Exception):
    """Base class of page-cache errors."""


class CacheNotFoundError(CacheError, FileNotFoundError):
    """The cache folder does not exist."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        super().__init__(f"LiveWeb cache folder does not exist: {self.path}")

    def __reduce__(self):
        return (type(self), (self.path,))


class PageError(CacheError):
    """One bad cached page: ``path`` (relative to the cache root) and ``reason``."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class Page:
    url: str
    html: str
    api_data: Mapping[str, Any] | None
    fetched_at: str
    path: str


@dataclass
class CacheReport:
    """Result of scanning a cache: how many pages are valid and what is wrong with the rest."""

    valid: int = 0
    errors: list[PageError] = field(default_factory=list)

    @property
    def invalid(self) -> int:
        return len(self.errors)


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def _clean_path(path: str) -> str:
    segments: list[str] = []
    for segment in unquote(path).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


@lru_cache(maxsize=1 << 16)
def normalize_url(url: str) -> str:
    """The canonical form of an absolute http(s) URL; ValueError for anything else."""
    parts = urlsplit(str(url).strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"URL has no host: {url!r}")
    port = parts.port
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k))
    path = quote(_clean_path(parts.path), safe="/-._~!$'()*+,;=:@")
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def _folder_component(text: str) -> str:
    encoded = quote(text, safe=_FOLDER_SAFE).replace("_", "%5F")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _shorten(name: str) -> str:
    if len(name) <= MAX_COMPONENT:
        return name
    return f"{name[:MAX_COMPONENT - 17]}~{stable_hash(name, length=16)}"


@lru_cache(maxsize=1 << 16)
def page_folder(url: str) -> PurePosixPath:
    """The folder of ``url``'s page, relative to the cache root."""
    parts = urlsplit(normalize_url(url))
    folders = [_folder_component(s) for s in unquote(parts.path).split("/") if s] or [ROOT_FOLDER]
    if parts.query:
        pairs = sorted((k.lower(), v.lower()) for k, v in parse_qsl(parts.query, keep_blank_values=True))
        folders[-1] = f"{folders[-1]}{QUERY_SEPARATOR}{_folder_component(urlencode(pairs))}"
    return PurePosixPath(_shorten(_folder_component(parts.netloc)), *(_shorten(f) for f in folders))


@lru_cache(maxsize=1 << 16)
def page_file(url: str) -> str:
    """The path of ``url``'s page.json relative to the cache root (``/``-separated)."""
    return f"{page_folder(url)}/{PAGE_FILE}"


def html_problem(html: str) -> str | None:
    """Why ``html`` does not parse as an HTML page, or None when it does."""
    if not html.strip():
        return "html is empty"
    if _CONTROL_CHARS.search(html):
        return "html contains binary control characters"
    try:
        tree = LexborHTMLParser(html)
    except Exception as exc:  # lexbor rejects very little; report what it does reject
        return f"html does not parse: {exc}"
    if tree.css_first("body *") is None:
        return "html has no elements in <body> (not an HTML page)"
    return None


def parse_page(path: str, blob: bytes) -> Page:
    """Validate one ``page.json`` (its bytes and its relative path); PageError when it is bad."""
    try:
        data = json.loads(blob.decode("utf-8"))
    except UnicodeDecodeError:
        raise PageError(path, "page.json is not UTF-8") from None
    except ValueError as exc:
        raise PageError(path, f"page.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PageError(path, "page.json is not a JSON object")
    for key in PAGE_KEYS:
        if key not in data:
            raise PageError(path, f"page.json is missing key {key!r}")
    for key in ("url", "html", "fetched_at"):
        if not isinstance(data[key], str):
            raise PageError(path, f"page.json key {key!r} is not a string")
    if data["api_data"] is not None and not isinstance(data["api_data"], dict):
        raise PageError(path, "page.json key 'api_data' is not an object or null")
    try:
        expected = page_file(data["url"])
    except ValueError as exc:
        raise PageError(path, f"page.json url is invalid: {exc}") from None
    if expected != path:
        raise PageError(path, f"page.json url {data['url']!r} belongs in {expected}")
    problem = html_problem(data["html"])
    if problem:
        raise PageError(path, problem)
    return Page(url=data["url"], html=data["html"], api_data=data["api_data"],
                fetched_at=data["fetched_at"], path=path)


class PageCache:
    """Read-only view of a cache folder; pages are validated once and memoised."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        if not self.root.is_dir():
            raise CacheNotFoundError(self.root)
        self._pages: dict[str, Page | PageError | None] = {}
        self._derived: dict[Hashable, Any] = {}

    def lookup(self, url: str) -> Page | None:
        """The cached page of ``url``, None when it is not cached; PageError when it is bad."""
        try:
            rel = page_file(url)
        except ValueError:
            return None
        if rel not in self._pages:
            self._pages[rel] = self._load(rel)
        found = self._pages[rel]
        if isinstance(found, PageError):
            raise found
        return found

    def page(self, url: str) -> Page:
        """Like ``lookup`` but a missing page is a PageError too."""
        found = self.lookup(url)
        if found is None:
            raise PageError(page_file(url), f"page not in cache: {url}")
        return found

    def derive(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Memoise a value computed from cached pages (it must not be mutated by callers)."""
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    def _load(self, rel: str) -> Page | PageError | None:
        try:
            blob = (self.root / rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return PageError(rel, f"page.json cannot be read: {exc.strerror or exc}")
        try:
            return parse_page(rel, blob)
        except PageError as exc:
            return exc

    def scan(self) -> CacheReport:
        """Validate every page.json under the root; bad pages are reported, never raised."""
        report = CacheReport()
        for file in sorted(self.root.rglob(PAGE_FILE)):
            rel = file.relative_to(self.root).as_posix()
            if rel not in self._pages:
                self._pages[rel] = self._load(rel)
            found = self._pages[rel]
            if isinstance(found, PageError):
                report.errors.append(found)
            elif found is not None:
                report.valid += 1
        return report


def page_json(url: str, html: str, api_data: Mapping[str, Any] | None, fetched_at: str) -> bytes:
    """The canonical bytes of one page.json (stable key order, so equal pages are equal files)."""
    record = {"url": url, "html": html, "api_data": api_data, "fetched_at": fetched_at}
    return json.dumps(record, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")


def write_page(root: Path | str, url: str, html: str, api_data: Mapping[str, Any] | None,
               fetched_at: str) -> Path:
    """Write one page into the cache atomically (temp file, then rename)."""
    final = Path(root) / page_file(url)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{PAGE_FILE}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_bytes(page_json(url, html, api_data, fetched_at))
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def resolve_url(base: str, href: str) -> str:
    """``href`` resolved against ``base`` and normalised; ValueError when it is not a web URL."""
    return normalize_url(urljoin(base, href))
