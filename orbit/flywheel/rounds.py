"""The round registry: which policy each round samples from, where it came from, and its size.

A small Parquet table in the lake (``<lake>/rounds/part-0.parquet``) with one row
per round: round, policy URI, parent round, checkpoint name, created at, note,
and the round's size (JSON: ``num_tasks``, ``samples_per_task``, ``best_of``,
``budget``; unset keys take the env's defaults). Writes take a file lock and
replace the table atomically, so two writers never register the same round
twice. The Dagster side keeps the rounds' dynamic partitions in step with this
table (the code location's rounds module).
"""

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from orbit.io import lake
from orbit.io.locks import locked
from orbit.io.keys import round_index, round_key, validate_round

ROUNDS_ASSET = "rounds"
ROUNDS_SCHEMA = pa.schema(
    [
        ("round", pa.string()),
        ("policy", pa.string()),
        ("parent_round", pa.string()),
        ("checkpoint", pa.string()),
        ("created_at", pa.string()),
        ("note", pa.string()),
        ("sizes", pa.string()),
    ]
)
class RoundError(ValueError):
    """A round that cannot be registered as asked (taken key, bad size)."""


SIZE_KEYS = ("num_tasks", "samples_per_task", "best_of", "budget")


def sizes_json(sizes: "dict | None") -> str:
    """The canonical JSON of a round's size: known keys only, positive whole numbers, None dropped."""
    clean = {}
    for key, value in dict(sizes or {}).items():
        if key not in SIZE_KEYS:
            raise RoundError(f"unknown round size {key!r}; expected one of {', '.join(SIZE_KEYS)}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10_000_000:
            raise RoundError(f"round size {key}={value!r}: expected a whole number from 1 to 10000000")
        clean[key] = value
    return json.dumps(clean, sort_keys=True)


@dataclass(frozen=True)
class RoundEntry:
    round: str
    policy: str
    parent_round: str | None = None
    checkpoint: str | None = None
    created_at: str = ""
    note: str = ""
    sizes: str = "{}"

    def size(self) -> dict:
        return json.loads(self.sizes or "{}")


class RoundRegistry:
    def __init__(self, lake_root: Path | str):
        self.lake_root = lake.lake_path(lake_root)  # a folder or an object-store prefix
        self.path = lake.partition_file(self.lake_root, ROUNDS_ASSET)

    @contextmanager
    def _locked(self):
        with locked(self.path.parent / ".lock"):
            yield

    def entries(self) -> list[RoundEntry]:
        if not self.path.exists():
            return []
        table = lake.read_table(self.path)
        if "sizes" not in table.column_names:  # registries written before round sizes existed
            table = table.append_column("sizes", pa.array(["{}"] * table.num_rows, pa.string()))
        return [RoundEntry(**row) for row in table.select(ROUNDS_SCHEMA.names).to_pylist()]

    def get(self, key: str) -> RoundEntry | None:
        validate_round(key)
        return next((e for e in self.entries() if e.round == key), None)

    def by_checkpoint(self, checkpoint: str) -> RoundEntry | None:
        return next((e for e in self.entries() if e.checkpoint == checkpoint), None)

    def add(self, policy: str, *, key: str | None = None, parent_round: str | None = None,
            checkpoint: str | None = None, note: str = "", sizes: "dict | None" = None,
            taken: "list[str] | tuple[str, ...]" = (), exist_ok: bool = False) -> RoundEntry:
        """Register a round: ``key``, or the next index free in the registry and in ``taken`` (rounds
        that exist elsewhere, e.g. the instance's partitions).

        Registering the same checkpoint twice returns the existing round instead of adding one; with
        ``exist_ok`` an already registered ``key`` is returned as it is.
        """
        size = sizes_json(sizes)
        with self._locked():
            entries = self.entries()
            if checkpoint is not None:
                existing = next((e for e in entries if e.checkpoint == checkpoint), None)
                if existing is not None:
                    return existing
            if key is None:
                used = [round_index(e.round) for e in entries] + [round_index(validate_round(t)) for t in taken]
                key = round_key(max(used, default=-1) + 1)
            validate_round(key)
            existing = next((e for e in entries if e.round == key), None)
            if existing is not None:
                if exist_ok:
                    return existing
                raise RoundError(f"round {key} is already registered")
            if parent_round is None and round_index(key) > 0:
                parent_round = round_key(round_index(key) - 1)
            entry = RoundEntry(round=key, policy=policy, parent_round=parent_round, checkpoint=checkpoint,
                               created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), note=note,
                               sizes=size)
            rows = [asdict(e) for e in entries] + [asdict(entry)]
            rows.sort(key=lambda r: r["round"])
            lake.write_table(pa.Table.from_pylist(rows, schema=ROUNDS_SCHEMA), self.path)
            return entry
