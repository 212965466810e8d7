"""Importing records from JSONL (``source=import``) without losing or crashing on any line.

Each line becomes exactly one record. A line that cannot be read as a record
(invalid UTF-8, not JSON, non-string content, unreadable tool calls...) still
becomes a record, carrying the problems as ``metadata.import_errors`` so the
verify stage fails it with those named reasons and the counts add up.
"""

import json
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from orbit.schema import MESSAGE_KEYS, make_record, records_to_batch

MAX_LINE_BYTES = 8 * 1024 * 1024
BATCH_ROWS = 2048


def _normalise_message(raw: Any, i: int, errors: list[str]) -> dict:
    if not isinstance(raw, dict):
        errors.append(f"message.not_object:{i}")
        return {k: None for k in MESSAGE_KEYS}
    msg = {k: raw.get(k) for k in MESSAGE_KEYS}
    if msg["role"] is not None and not isinstance(msg["role"], str):
        errors.append(f"message.role_not_string:{i}")
        msg["role"] = None
    if msg["content"] is not None and not isinstance(msg["content"], str):
        errors.append(f"message.content_not_string:{i}")
        msg["content"] = json.dumps(msg["content"], ensure_ascii=False, default=str)
    for key in ("tool_call_id", "name"):
        if msg[key] is not None and not isinstance(msg[key], str):
            errors.append(f"message.{key}_not_string:{i}")
            msg[key] = str(msg[key])
    calls = msg["tool_calls"]
    if calls is not None:
        good = []
        for call in calls if isinstance(calls, list) else [calls]:
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                errors.append(f"tool_call.malformed:{i}")
                continue
            args = fn.get("arguments")
            if not isinstance(args, str):
                args = json.dumps(args, ensure_ascii=False, default=str)
            good.append({"id": str(call.get("id") or ""), "type": str(call.get("type") or "function"),
                         "function": {"name": str(fn.get("name") or ""), "arguments": args}})
        msg["tool_calls"] = good or None
    return msg


def record_from_line(line: bytes, line_no: int, env: str, round_key: str, origin: str) -> dict:
    errors: list[str] = []
    data: Any = None
    if len(line) > MAX_LINE_BYTES:
        errors.append("import.line_too_long")
    else:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            errors.append("import.invalid_utf8")
            text = line.decode("utf-8", errors="replace")
        try:
            data = json.loads(text)
        except ValueError:
            errors.append("import.not_json")
    if not isinstance(data, dict):
        if data is not None:
            errors.append("import.not_object")
        data = {}
    raw_messages = data.get("messages")
    if raw_messages is not None and not isinstance(raw_messages, list):
        errors.append("import.messages_not_list")
        raw_messages = None
    messages = [_normalise_message(m, i, errors) for i, m in enumerate(raw_messages or [])]
    score = data.get("score")
    if score is not None and not isinstance(score, (int, float)):
        errors.append("import.score_not_number")
        score = None
    task_id = data.get("task_id")
    task_id = str(task_id) if task_id not in (None, "") else None
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    meta = {**meta, "origin": f"{origin}:{line_no}"}
    if errors:
        meta["import_errors"] = errors
    tools = data.get("tools")
    return make_record(
        env=env, task_id=task_id, round_key=round_key, sample_idx=line_no, source="import",
        policy=str(data.get("policy") or "import"), seed=None, messages=messages, score=score,
        metadata=meta, tools=None if tools is None else (tools if isinstance(tools, str) else json.dumps(tools)),
    )


def import_jsonl(path: Path | str, env: str, round_key: str) -> Iterator[pa.RecordBatch]:
    """One record per non-blank line of a JSONL file, in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"import file {path} does not exist")
    rows = []
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh):
            if not line.strip():
                continue
            rows.append(record_from_line(line.rstrip(b"\r\n"), line_no, env, round_key, path.name))
            if len(rows) >= BATCH_ROWS:
                yield records_to_batch(rows)
                rows = []
    if rows:
        yield records_to_batch(rows)
