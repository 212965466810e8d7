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
"""

import json
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


def train_embedded(records: "pa.Table | Iterable[Mapping[str, Any]]", folder: Path | str, name: str, *, parent_round: str,
                   alpha: float = 0.1, temperature: float = 0.5) -> tuple[Checkpoint, TablePolicy]:
    """Train the table policy on passed trajectories and write it as a ready checkpoint."""
    path = Path(folder) / name
    policy = TablePolicy.train(records, name=name, alpha=alpha, temperature=temperature)
    policy_file = policy.save(path / POLICY_FILE)
    write_manifest(path, f"embedded:{lake.home_relative(policy_file)}", parent_round,
                   note=f"table policy trained on {policy.trained_on_rows} trajectories of rounds <= {parent_round}",
                   extra={"states": len(policy.counts), "trained_on_rows": policy.trained_on_rows})
    return read_checkpoint(path), policy
