"""Training-set exports in ms-swift's documented dataset format.

- SFT: ``{"messages": [...], "tools": "<JSON list of OpenAI function schemas>"}``. Assistant tool
  calls become ms-swift ``tool_call`` messages (content ``{"name", "arguments"}`` as JSON), tool
  results become ``tool_response`` messages, as in ms-swift's Agent format.
- DPO: ``{"messages": [... chosen assistant turn], "rejected_response": "..."}``: a passed and a
  failed sample of the same task share the prefix up to the first assistant turn where they differ;
  the chosen turn closes ``messages`` and the failed one's answer is ``rejected_response``.
- GRPO: ``{"messages": <prompt>, "env", "task_id", "task_spec"}``: the prompt plus what a reward
  function needs to verify a completion (ms-swift passes extra columns to reward functions).

Nothing is dropped silently: every row that cannot be exported is counted with its reason.
"""

import glob
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import duckdb
import pyarrow as pa

from orbit import lake
from orbit.filtering import RANKING
from orbit.schema import VERIFIED_SCHEMA, prompt_of

class NotExportable(ValueError):
    """A row that cannot become a training example; ``reason`` is its named reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ExportCounts:
    rows_in: int = 0
    exported: int = 0
    skipped: Counter = field(default_factory=Counter)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def as_metadata(self) -> dict:
        return {"rows_in": self.rows_in, "exported": self.exported,
                "skipped": sum(self.skipped.values()), "skipped_reasons": dict(sorted(self.skipped.items()))}


def swift_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Record messages (OpenAI chat) as ms-swift standard messages."""
    out: list[dict] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "user"):
            out.append({"role": role, "content": m.get("content") or ""})
        elif role == "assistant":
            if m.get("content"):
                out.append({"role": "assistant", "content": m["content"]})
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                try:
                    arguments = json.loads(fn.get("arguments") or "")
                except ValueError:
                    raise NotExportable(f"export.tool_arguments_not_json:{i}") from None
                out.append({"role": "tool_call",
                            "content": json.dumps({"name": fn.get("name"), "arguments": arguments}, ensure_ascii=False)})
            if not m.get("content") and not m.get("tool_calls"):
                raise NotExportable(f"export.empty_assistant_turn:{i}")
        elif role == "tool":
            out.append({"role": "tool_response", "content": m.get("content") or ""})
        else:
            raise NotExportable(f"export.unknown_role:{i}")
    if not out or out[-1]["role"] not in ("assistant", "tool_call"):
        raise NotExportable("export.no_final_assistant_turn")
    return out


def sft_example(record: Mapping[str, Any]) -> dict:
    example: dict[str, Any] = {"messages": swift_messages(record.get("messages") or [])}
    if record.get("tools"):
        example["tools"] = record["tools"]
    return example


def dpo_example(chosen: Mapping[str, Any], rejected: Mapping[str, Any]) -> dict:
    """The preference pair at the first assistant turn where the two trajectories differ."""
    a, b = list(chosen.get("messages") or []), list(rejected.get("messages") or [])
    for i, (ma, mb) in enumerate(zip(a, b)):
        if ma.get("role") != mb.get("role"):
            break
        if ma.get("role") == "assistant" and (ma.get("content"), ma.get("tool_calls")) != (mb.get("content"), mb.get("tool_calls")):
            if ma.get("tool_calls") or mb.get("tool_calls"):
                raise NotExportable("dpo.tool_call_divergence")
            if not mb.get("content"):
                raise NotExportable("dpo.empty_rejected_response")
            example: dict[str, Any] = {"messages": swift_messages(a[: i + 1]), "rejected_response": mb["content"]}
            if chosen.get("tools"):
                example["tools"] = chosen["tools"]
            return example
        if ma != mb:
            break
    raise NotExportable("dpo.no_shared_prefix")


def grpo_example(record: Mapping[str, Any]) -> dict:
    prompt = list(prompt_of(record.get("messages") or []))
    if not prompt or prompt[-1].get("role") != "user":
        raise NotExportable("grpo.no_user_prompt")
    meta = json.loads(record.get("metadata") or "{}")
    example: dict[str, Any] = {
        "messages": [{"role": m["role"], "content": m.get("content") or ""} for m in prompt],
        "env": record["env"],
        "task_id": record["task_id"],
        "task_spec": json.dumps(meta.get("task", {}), sort_keys=True, ensure_ascii=False),
    }
    if record.get("tools"):
        example["tools"] = record["tools"]
    return example


def _jsonl(examples: Iterable[dict]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in examples)


def write_jsonl(examples: list[dict], path: Path) -> Path:
    return lake.write_text(_jsonl(examples), path)


def _round_query(lake_root: Path, asset: str, round_key: str, *queries: str) -> list[list[dict]] | None:
    """Run queries over every env's partition of a round (``{src}`` names them); None when there are none."""
    files = str(lake.partition_dir(lake_root, asset, round_key) / "env=*" / lake.PART_NAME)
    if not glob.glob(files):
        return None
    con = duckdb.connect()
    try:
        src = f"read_parquet({lake.sql_literal(files)})"
        return [con.sql(q.format(src=src)).to_arrow_table().to_pylist() for q in queries]
    finally:
        con.close()


def _convert(rows: Iterable, to_example, counts: ExportCounts) -> list[dict]:
    examples = []
    for row in rows:
        counts.rows_in += 1
        try:
            examples.append(to_example(*row) if isinstance(row, tuple) else to_example(row))
        except NotExportable as exc:
            counts.skip(exc.reason.split(":")[0])
    return examples


def _finish(examples: list[dict], counts: ExportCounts, out: Path) -> ExportCounts:
    counts.exported = len(examples)
    write_jsonl(examples, out)
    return counts


def export_sft(lake_root: Path, round_key: str, out: Path) -> ExportCounts:
    """Every filtered row of the round (all envs) as an ms-swift SFT example."""
    counts = ExportCounts()
    result = _round_query(lake_root, "filtered_dataset", round_key, "SELECT * FROM {src} ORDER BY env, task_id")
    return _finish(_convert(result[0] if result else [], sft_example, counts), counts, out)


def export_dpo(lake_root: Path, round_key: str, out: Path) -> ExportCounts:
    """One pair per task that has both a passed and a failed sample: best pass vs best-ranked failure."""
    counts, examples = ExportCounts(), []
    best = "SELECT * FROM {src} WHERE %s QUALIFY row_number() OVER (PARTITION BY env, task_id ORDER BY %s) = 1"
    result = _round_query(
        lake_root, "verified_samples", round_key,
        best % ("passed", RANKING) + " ORDER BY env, task_id",
        best % ("NOT passed", RANKING),
        "SELECT env, task_id FROM {src} GROUP BY ALL HAVING NOT bool_or(passed)",
    )
    if result:
        chosen, failed, unsolved = result
        counts.rows_in = len(unsolved)
        counts.skip("dpo.no_chosen", len(unsolved))
        rejected = {(r["env"], r["task_id"]): r for r in failed}
        pairs = []
        for row in chosen:
            other = rejected.get((row["env"], row["task_id"]))
            if other is None:
                counts.rows_in += 1
                counts.skip("dpo.no_rejected")
            else:
                pairs.append((row, other))
        examples = _convert(pairs, dpo_example, counts)
    return _finish(examples, counts, out)


def export_grpo(lake_root: Path, round_key: str, out: Path) -> ExportCounts:
    """One prompt per task of the round, solved or not, with the task spec for the reward function."""
    counts = ExportCounts()
    result = _round_query(lake_root, "verified_samples", round_key,
                          "SELECT * FROM {src} QUALIFY row_number() OVER (PARTITION BY env, task_id "
                          "ORDER BY record_id) = 1 ORDER BY env, task_id")
    return _finish(_convert(result[0] if result else [], grpo_example, counts), counts, out)


def cumulative_training_set(lake_root: Path, round_key: str) -> lake.ArrowStream:
    """Filtered rows of every round <= round_key, deduplicated by (env, task_id) keeping the best."""
    files = str(Path(lake_root) / "filtered_dataset" / "round=*" / "env=*" / lake.PART_NAME)
    summary: dict[str, int] = {}

    def batches():
        if not glob.glob(files):
            return
        con = duckdb.connect(config={"threads": 2})
        try:
            src = (f"(SELECT * FROM read_parquet({lake.sql_literal(files)}, hive_partitioning = false) "
                   f"WHERE round <= {lake.sql_literal(round_key)})")
            summary["rows_in"], summary["rounds"] = con.execute(
                f"SELECT count(*), count(DISTINCT round) FROM {src}").fetchall()[0]
            kept = 0
            sql = (f"SELECT * FROM {src} QUALIFY row_number() OVER (PARTITION BY env, task_id ORDER BY {RANKING}) = 1 "
                   "ORDER BY env, task_id")
            for batch in con.sql(sql).to_arrow_reader(8192):
                kept += batch.num_rows
                yield pa.Table.from_batches([batch]).cast(VERIFIED_SCHEMA).to_batches()[0]
            summary["kept"] = kept
            summary["superseded"] = summary["rows_in"] - kept
        finally:
            con.close()

    return lake.ArrowStream(VERIFIED_SCHEMA, batches(), summary=lambda: dict(summary))
