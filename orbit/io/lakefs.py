"""Where the lake lives: a local folder, or a prefix of an object store (``s3://bucket/prefix``).

One abstraction for both, so the lake's readers and writers do not test for s3 themselves:

* ``lake_path(location)`` is a ``pathlib.Path`` for a folder and an ``S3Path`` for ``s3://``. An ``S3Path``
  *is* a ``PosixPath`` (joins with ``/``, ``.parent``, ``.name``; Dagster's ``Path`` inputs accept it) whose
  ``str()`` is the ``s3://`` URL and whose file methods (``exists``, ``is_file``, ``stat``, ``open``,
  ``read_text``, ``glob``, ``unlink``) go to the object store through one s3fs file system. ``mkdir`` does
  nothing (an object store has no folders). A location that went through ``Path()`` once (``s3:/bucket/x``,
  pathlib folds the double slash) is still recognised.
* ``s3()`` is that file system: credentials from the standard AWS chain (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ...), the endpoint from
  ``ORBIT_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL`` (unset: AWS). Listings are never cached: another process
  (a run worker) writes partitions this one must see. Nothing here logs or stores a credential; the URL
  of a path never carries one.

Writing (a temporary local file uploaded in one put) and reading (pyarrow on a file handle) live in
``orbit.io.lake``, which calls ``is_remote`` on every path it is given.
"""

import hashlib
import os
import re
import stat as stat_module
import tempfile
from pathlib import Path, PosixPath

SCHEME = "s3"
_REMOTE_RE = re.compile(r"^s3:/+(?P<key>.*)$")
ENDPOINT_ENV = ("ORBIT_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


class RemoteLakeUnavailable(RuntimeError):
    """An ``s3://`` lake without s3fs installed."""


def _key_of(location) -> str | None:
    """``bucket/key`` of an s3 location (a URL, an ``S3Path`` or a Path that folded its ``//``), else None."""
    if isinstance(location, S3Path):
        return location.key
    if isinstance(location, (str, os.PathLike)):
        match = _REMOTE_RE.match(os.fspath(location))
        if match:
            return match.group("key").strip("/")
    return None


def is_remote(location) -> bool:
    """True when ``location`` names an object-store lake path (``s3://...``)."""
    return _key_of(location) is not None


def endpoint() -> str | None:
    for name in ENDPOINT_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def s3():
    """The s3fs file system of the lake (cached by fsspec per endpoint): AWS credentials chain, no listing cache."""
    try:
        import s3fs
    except ImportError:  # pragma: no cover - s3fs is in the project's `scale` group
        raise RemoteLakeUnavailable("an s3:// lake needs s3fs: `uv sync --group scale` (s3fs==2026.9.0)") from None
    kwargs = {"use_listings_cache": False}
    if endpoint():
        kwargs["endpoint_url"] = endpoint()
    return s3fs.S3FileSystem(**kwargs)


def arrow_fs():
    """The same file system as a pyarrow ``FileSystem`` (for pyarrow datasets)."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(s3()))


def lake_path(location) -> Path:
    """``location`` as a path: an ``S3Path`` for ``s3://`` (or its folded form), else a plain ``Path``."""
    if isinstance(location, S3Path):
        return location
    key = _key_of(location)
    if key is not None:
        return S3Path(f"s3://{key}")
    return Path(location)


def local_lock_path(path) -> Path:
    """Where the lock file guarding ``path`` lives: beside it for a folder; for an object-store path (no
    locks there) a local file named by the URL's hash, so writers on this host are still serialised."""
    if not is_remote(path):
        return Path(path)
    digest = hashlib.sha256(str(lake_path(path)).encode()).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / "orbit-s3-locks" / f"{digest}.lock"


class _Stat:
    """The part of ``os.stat_result`` an object has: size, modification time, and the ETag's hash as ``st_ino``
    (it changes whenever the object's bytes do)."""

    def __init__(self, info: dict):
        self.st_size = int(info.get("size") or 0)
        modified = info.get("LastModified")
        self.st_mtime = modified.timestamp() if modified is not None else 0.0
        self.st_mtime_ns = int(self.st_mtime * 1e9)
        etag = str(info.get("ETag") or "").strip('"')
        self.st_ino = int(hashlib.sha256(etag.encode()).hexdigest()[:15], 16) if etag else 0
        self.st_mode = stat_module.S_IFDIR if info.get("type") == "directory" else stat_module.S_IFREG


def stat_of(info: dict) -> _Stat:
    return _Stat(info)


class S3Path(PosixPath):
    """A lake path on an object store. ``str()``/``os.fspath()`` give the ``s3://bucket/key`` URL."""

    @property
    def key(self) -> str:
        """``bucket/key``, as s3fs names the object."""
        return "/".join(self.parts[1:])

    def __str__(self) -> str:
        if not self.parts or self.parts[0] != "s3:":  # a relative remainder: a plain posix path
            return PosixPath.__str__(self)
        return f"s3://{self.key}"

    def relative_to(self, *other) -> Path:
        """The part below ``other`` (an ``S3Path`` or URL) as a plain relative ``Path``."""
        return Path(*PosixPath.relative_to(self, *(lake_path(o) for o in other)).parts)

    def __fspath__(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"S3Path({str(self)!r})"

    def as_posix(self) -> str:
        return str(self)

    def as_uri(self) -> str:
        return str(self)

    def is_absolute(self) -> bool:
        return True

    def resolve(self, strict: bool = False) -> "S3Path":
        return self

    def absolute(self) -> "S3Path":
        return self

    def expanduser(self) -> "S3Path":
        return self

    def exists(self, *, follow_symlinks: bool = True) -> bool:
        return s3().exists(self.key)

    def is_file(self) -> bool:
        return s3().isfile(self.key)

    def is_dir(self) -> bool:
        return s3().isdir(self.key)

    def is_symlink(self) -> bool:
        return False

    def stat(self, *, follow_symlinks: bool = True) -> _Stat:
        try:
            return _Stat(s3().info(self.key))
        except FileNotFoundError:
            raise FileNotFoundError(f"no object {self}") from None

    def open(self, mode: str = "r", buffering: int = -1, encoding: str | None = None, errors: str | None = None,
             newline: str | None = None):
        if any(m in mode for m in "wax+"):
            raise PermissionError(f"{self}: lake objects are written whole (orbit.io.lake.write_*), not opened for writing")
        if "b" in mode:
            return s3().open(self.key, "rb")
        return s3().open(self.key, "rt", encoding=encoding or "utf-8", errors=errors, newline=newline)

    def read_bytes(self) -> bytes:
        return s3().cat_file(self.key)

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        return self.read_bytes().decode(encoding or "utf-8", errors or "strict")

    def write_bytes(self, data) -> int:
        from orbit.io.lake import write_bytes

        write_bytes(bytes(data), self)
        return len(data)

    def write_text(self, data: str, encoding: str | None = None, errors: str | None = None, newline=None) -> int:
        return self.write_bytes(data.encode(encoding or "utf-8", errors or "strict"))

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to make: an object store has no folders (a key's prefix exists once an object is under it)."""

    def touch(self, mode: int = 0o666, exist_ok: bool = True) -> None:
        if not self.exists():
            self.write_bytes(b"")

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            s3().rm_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def iterdir(self):
        for key in s3().ls(self.key, detail=False):
            if key.strip("/") != self.key:
                yield S3Path(f"s3://{key.strip('/')}")

    def glob(self, pattern: str, *, case_sensitive=None):
        for key in sorted(s3().glob(f"{self.key}/{pattern}")):
            yield S3Path(f"s3://{key}")

    def rglob(self, pattern: str, *, case_sensitive=None):
        yield from self.glob(f"**/{pattern}")

    def samefile(self, other) -> bool:
        return str(self) == str(lake_path(other))


def lake_root() -> Path:
    """The lake of this deployment (``orbit.io.home.lake_root``: ``ORBIT_LAKE`` as an ``S3Path`` when it names an
    object store, else the resolved folder, default ``ORBIT_HOME/lake``)."""
    from orbit.io.home import lake_root as configured

    return configured()
