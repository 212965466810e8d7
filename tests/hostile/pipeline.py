"""The engine path the hostile tests drive: JSONL bytes -> importer -> verify stage, with every count."""

import copy
import io
import json

import pyarrow as pa

from orbit.envs import env_spec
from orbit.io.importer import ImportCounts, import_stream
from orbit.io.schema import RECORD_SCHEMA, VERIFIED_SCHEMA
from orbit.stages.verify import VerifyCounts, verify_batches

ROUND = "r0000"


def as_line(record: dict) -> dict:
    """A generated record as an import line would carry it (metadata as an object)."""
    line = {k: copy.deepcopy(record[k]) for k in ("messages", "score", "task_id", "tools")}
    line["metadata"] = json.loads(record["metadata"])
    return line


def dumps(line: dict) -> bytes:
    return json.dumps(line).encode()  # ASCII: lone surrogates become \\udXXX escapes


def run(data: bytes, env: str, verifier) -> tuple[ImportCounts, VerifyCounts, list[dict]]:
    """Import ``data`` into ``env``'s partition and verify it; asserts the schemas and that counts add up."""
    counts = ImportCounts()
    raw = list(import_stream(io.BytesIO(data), env, ROUND, "hostile.jsonl", counts))
    for batch in raw:
        assert batch.schema.equals(RECORD_SCHEMA)
    verify_counts = VerifyCounts()
    verified = list(verify_batches(raw, verifier, env_spec(env).pass_threshold, verify_counts))
    rows = pa.Table.from_batches(verified, schema=VERIFIED_SCHEMA).to_pylist()
    assert counts.lines == counts.records + counts.skipped_blank
    assert len(rows) == counts.records == verify_counts.rows
    assert verify_counts.passed + verify_counts.failed == verify_counts.rows
    assert sum(r["passed"] for r in rows) == verify_counts.passed
    assert all(r["reasons"] for r in rows if not r["passed"])
    assert [r["sample_idx"] for r in rows] == sorted(r["sample_idx"] for r in rows)
    assert all(r["env"] == env and r["source"] == "import" for r in rows)
    return counts, verify_counts, rows


def reason_ids(row: dict) -> set[str]:
    return {r.split(":", 1)[0] for r in row["reasons"]}
