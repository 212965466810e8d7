"""Checkpoints a round samples from: the folder the checkpoint sensor watches.

Each checkpoint is a directory under the checkpoints folder. An external
trainer (ms-swift, ...) writes its output there and, once the model is served,
a small manifest ``orbit_checkpoint.json`` naming the policy URI
(``{"policy": "openai:http://127.0.0.1:8000/v1#my-model"}``; optional
``parent_round`` and ``note``). An embedded checkpoint's path is stored relative to
ORBIT_HOME (``embedded:checkpoints/embedded-r0001/policy.parquet``) when it lies inside it,
so a moved or copied home keeps working. The embedded trainer writes a table-policy
checkpoint and its manifest the same way. The manifest is written last and
atomically, so a checkpoint without a readable manifest -- or whose embedded
policy file is missing -- is half-written and not picked up.

A checkpoint folder with a manifest is never written again: a round may have
sampled from it. Training again for the same round (a re-materialization, a
second backfill) compares what it made with the newest version: the same bytes
keep that version (nothing is written); other bytes go to the next version,
``<name>.v2``, ``<name>.v3``, ... The round registry records the version each
round sampled from, and ``stale_rounds`` lists the rounds whose checkpoint now
has a newer version (with every later round), instead of mixing them silently.
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa

from orbit.io import lake
from orbit.io.keys import is_round_key
from orbit.policies.table_policy import TablePolicy
from orbit.policies.uri import InvalidPolicyURI, parse_policy_uri

MANIFEST = "orbit_checkpoint.json"
POLICY_FILE = "policy.parquet"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^(?P<base>.+?)(?:\.v(?P<n>[2-9]|[1-9][0-9]{1,5}))?$")


@dataclass(frozen=True)
class Checkpoint:
    name: str
    path: Path
    policy: str
    parent_round: str | None
    note: str


class ManifestMissing(ValueError):
    """The folder has no manifest yet: a checkpoint still being written (look again later)."""


MAX_MANIFEST_BYTES = 1 << 20


def read_checkpoint(path: Path) -> Checkpoint:
    """A ready checkpoint; ``ManifestMissing`` when its manifest is not there yet, ValueError saying what is
    wrong with one that is (whatever the file holds: bytes, depth, types)."""
    if not NAME_RE.match(path.name):
        raise ValueError(f"{path}: checkpoint folder names use letters, digits, '.', '_' and '-'")
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise ManifestMissing(f"{path}: no {MANIFEST} yet")
    try:
        with open(manifest, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"{manifest}: unreadable manifest ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("policy"), str):
        raise ValueError(f"{manifest}: the manifest must be an object with a 'policy' URI")
    parent_round, note = data.get("parent_round"), data.get("note", "")
    if parent_round is not None and not is_round_key(parent_round):
        raise ValueError(f"{manifest}: 'parent_round' must be a round key like r0003 or null")
    if not isinstance(note, str):
        raise ValueError(f"{manifest}: 'note' must be a string")
    try:
        uri = parse_policy_uri(data["policy"])
    except InvalidPolicyURI as exc:
        raise ValueError(f"{manifest}: {exc}") from exc
    if uri.scheme == "embedded" and uri.checkpoint is not None and not uri.checkpoint.is_file():
        raise ValueError(f"{manifest}: policy file {uri.checkpoint} is missing")
    return Checkpoint(name=path.name, path=path, policy=data["policy"], parent_round=parent_round, note=note[:2000])


def scan_checkpoints(folder: Path | str) -> tuple[list[Checkpoint], list[str], list[tuple[Path, str]]]:
    """Ready checkpoints (in name order), why the folders without a manifest are not ready yet, and the
    folders whose manifest is malformed (path, reason)."""
    folder = Path(folder)
    ready, waiting, malformed = [], [], []
    if not folder.is_dir():
        return ready, waiting, malformed
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            ready.append(read_checkpoint(path))
        except ManifestMissing as exc:
            waiting.append(str(exc))
        except ValueError as exc:
            malformed.append((path, str(exc)))
    return ready, waiting, malformed


def write_manifest(path: Path, policy: str, parent_round: str | None = None, note: str = "",
                   extra: Mapping[str, Any] | None = None) -> Path:
    parse_policy_uri(policy)
    body = {"policy": policy, "parent_round": parent_round, "note": note, **dict(extra or {})}
    return lake.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", path / MANIFEST)


def split_version(name: str) -> tuple[str, int]:
    """(base name, version): ``embedded-r0003`` is version 1 of itself, ``embedded-r0003.v2`` version 2."""
    m = VERSION_RE.match(name)
    return (m["base"], int(m["n"])) if m and m["n"] else (name, 1)


def version_name(base: str, version: int) -> str:
    return base if version == 1 else f"{base}.v{version}"


def versions(folder: Path | str, base: str) -> list[Path]:
    """The existing folders of ``base``'s versions, oldest first (a folder counts once it exists at all)."""
    folder = Path(folder)
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            b, n = split_version(path.name)
            if b == base and path.is_dir() and version_name(b, n) == path.name:
                found.append((n, path))
    return [p for _, p in sorted(found)]


def latest_version(folder: Path | str, base: str) -> Path | None:
    """The newest version's folder of ``base`` (None when there is none)."""
    found = versions(folder, base)
    return found[-1] if found else None


def next_version(folder: Path | str, base: str) -> Path:
    """The folder the next version of ``base`` is written to: ``base`` itself when none exists yet."""
    latest = latest_version(folder, base)
    n = 1 if latest is None else split_version(latest.name)[1] + 1
    return Path(folder) / version_name(base, n)


@dataclass(frozen=True)
class CheckpointWrite:
    checkpoint: Checkpoint
    created: bool
    """False: the training gave the newest version's bytes, which are kept as they are."""
    superseded: str | None
    """The version this one follows (None for the first)."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def train_embedded(records: "pa.Table | Iterable[Mapping[str, Any]]", folder: Path | str, name: str, *, parent_round: str,
                   alpha: float = 0.1, temperature: float = 0.5) -> tuple[CheckpointWrite, TablePolicy]:
    """Train the table policy on passed trajectories and write it as a ready checkpoint: a new folder, or the
    newest version of ``name`` kept untouched when the training gives its bytes again."""
    folder = Path(folder)
    latest = latest_version(folder, name)
    if latest is not None and (latest / MANIFEST).is_file():
        policy = TablePolicy.train(records, name=latest.name, alpha=alpha, temperature=temperature)
        staging = folder / f".staging-{latest.name}-{os.getpid()}" / POLICY_FILE
        try:
            policy.save(staging)
            if _same_file(staging, latest / POLICY_FILE):
                return CheckpointWrite(read_checkpoint(latest), created=False, superseded=None), policy
        finally:
            staging.unlink(missing_ok=True)
            if staging.parent.is_dir():
                staging.parent.rmdir()
    path = next_version(folder, name)
    while (path / MANIFEST).exists() or path.exists() and any(path.iterdir()):
        # a folder of this name left by a crashed writer (no manifest) is never reused either
        path = Path(folder) / version_name(name, split_version(path.name)[1] + 1)
    policy = TablePolicy.train(records, name=path.name, alpha=alpha, temperature=temperature)
    policy_file = policy.save(path / POLICY_FILE)
    superseded = latest.name if latest is not None else None
    write_manifest(path, f"embedded:{lake.home_relative(policy_file)}", parent_round,
                   note=f"table policy trained on {policy.trained_on_rows} trajectories of rounds <= {parent_round}"
                   + (f"; a new version after {superseded}" if superseded else ""),
                   extra={"states": len(policy.counts), "trained_on_rows": policy.trained_on_rows,
                          "supersedes": superseded})
    return CheckpointWrite(read_checkpoint(path), created=True, superseded=superseded), policy


def stale_rounds(entries: "Iterable[Any]", folder: Path | str) -> dict[str, str]:
    """Rounds whose lineage no longer matches the newest checkpoints: a round that sampled from a version that
    now has a newer one, and every later round. ``entries`` are the round registry's (round order);
    returns {round: why}."""
    entries = sorted(entries, key=lambda e: e.round)
    stale, first = {}, None
    for e in entries:
        if first is None and e.checkpoint:
            base, _ = split_version(e.checkpoint)
            newest = latest_version(folder, base)
            if newest is not None and newest.name != e.checkpoint:
                first = e.round
                stale[e.round] = f"sampled from {e.checkpoint}; its round's training now gives {newest.name}"
                continue
        if first is not None:
            stale[e.round] = f"after {first}, whose checkpoint has a newer version"
    return stale
