"""The round registry: which policy each round samples from, and where it came from.

A small Parquet table in the lake (``<lake>/rounds/part-0.parquet``) with one row
per round: round, policy URI, parent round, checkpoint name, created at, note.
Writes take a file lock and replace the table atomically, so two writers never
register the same round twice.
"""

import fcntl
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from orbit import lake
from orbit.keys import round_index, round_key, validate_round

ROUNDS_ASSET = "rounds"
ROUNDS_SCHEMA = pa.schema(
    [
        ("round", pa.string()),
        ("policy", pa.string()),
        ("parent_round", pa.string()),
        ("checkpoint", pa.string()),
        ("created_at", pa.string()),
        ("note", pa.string()),
    ]
)


@dataclass(frozen=True)
class RoundEntry:
    round: str
    policy: str
    parent_round: str | None = None
    checkpoint: str | None = None
    created_at: str = ""
    note: str = ""


class RoundRegistry:
    def __init__(self, lake_root: Path | str):
        self.lake_root = Path(lake_root)
        self.path = lake.partition_file(self.lake_root, ROUNDS_ASSET)

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def entries(self) -> list[RoundEntry]:
        if not self.path.exists():
            return []
        return [RoundEntry(**row) for row in lake.read_table(self.path).to_pylist()]

    def get(self, key: str) -> RoundEntry | None:
        validate_round(key)
        return next((e for e in self.entries() if e.round == key), None)

    def by_checkpoint(self, checkpoint: str) -> RoundEntry | None:
        return next((e for e in self.entries() if e.checkpoint == checkpoint), None)

    def add(self, policy: str, *, key: str | None = None, parent_round: str | None = None,
            checkpoint: str | None = None, note: str = "") -> RoundEntry:
        """Register a round (the next free one unless ``key`` is given).

        Registering the same checkpoint twice returns the existing round instead of adding one.
        """
        with self._locked():
            entries = self.entries()
            if checkpoint is not None:
                existing = next((e for e in entries if e.checkpoint == checkpoint), None)
                if existing is not None:
                    return existing
            if key is None:
                key = round_key(max((round_index(e.round) for e in entries), default=-1) + 1)
            validate_round(key)
            if any(e.round == key for e in entries):
                raise ValueError(f"round {key} is already registered")
            if parent_round is None and round_index(key) > 0:
                parent_round = round_key(round_index(key) - 1)
            entry = RoundEntry(round=key, policy=policy, parent_round=parent_round, checkpoint=checkpoint,
                               created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), note=note)
            rows = [asdict(e) for e in entries] + [asdict(entry)]
            rows.sort(key=lambda r: r["round"])
            lake.write_table(pa.Table.from_pylist(rows, schema=ROUNDS_SCHEMA), self.path)
            return entry
