"""Importing records from JSONL (``source=import``) without losing or crashing on any line.

Every line becomes exactly one record, whatever bytes it holds; a blank (whitespace
only) line is counted as skipped. A line that cannot be read as a valid record
(invalid UTF-8, not JSON, nested deeper than ``MAX_DEPTH``, longer than
``MAX_LINE_BYTES``, a field of the wrong type, a score that is not a finite number
in [0, 1], lone surrogates, an ``env`` other than the partition's...) still becomes
a record, carrying the problems as ``metadata.import_errors`` so the verify stage
fails it with those named reasons and the counts add up. Nothing a line holds
reaches Arrow unchecked: every string is valid Unicode, every integer fits int64.
A UTF-8 byte order mark at the start of the file is ignored.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import pyarrow as pa

from orbit.io.schema import MESSAGE_KEYS, make_record, records_to_batch

MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64  # nesting of arrays and objects in one line
MAX_ID_CHARS = 256  # task_id, policy, tool call ids
MAX_INT = 2**63 - 1
BATCH_ROWS = 2048
BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_INNERMOST = re.compile(r"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")  # a container holding no container
UNREAD = object()  # a line with no JSON value to read
RESERVED_METADATA = ("import_errors", "origin", "sampling")  # written by Orbit itself


@dataclass
class ImportCounts:
    """Lines read = records emitted + blank lines skipped."""

    lines: int = 0
    records: int = 0
    skipped_blank: int = 0


def _valid_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from \\ud800-style escapes
        return False
    return True


def _clean(value: Any, problems: set[str], depth: int = 0) -> Any:
    """A copy of a parsed JSON value that Arrow and json.dumps accept; what was changed is named in ``problems``.

    Called only on values whose depth is already known to be at most MAX_DEPTH.
    """
    if isinstance(value, str):
        if _valid_text(value):
            return value
        problems.add("import.invalid_unicode")
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if -MAX_INT <= value <= MAX_INT:
            return value
        problems.add("import.number_out_of_range")
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        problems.add("import.number_not_finite")
        return None
    if isinstance(value, list):
        return [_clean(v, problems, depth + 1) for v in value]
    if isinstance(value, dict):
        return {_clean(k, problems, depth + 1): _clean(v, problems, depth + 1) for k, v in value.items()}
    problems.add("import.unexpected_value")
    return None


def _too_deep(text: str) -> bool:
    """Whether the JSON text (already parsed) nests arrays and objects deeper than MAX_DEPTH."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    text = _STRING.sub("", text)  # brackets inside strings do not nest
    for _ in range(MAX_DEPTH):  # each pass removes the innermost level of every container
        text, removed = _INNERMOST.subn("", text)
        if not removed:
            return False
    return "[" in text or "{" in text


class _Parser:
    """json.loads that notes whether the value may hold something _clean must fix (an integer beyond
    int64, a non-finite float, a lone surrogate escape); values without any skip the walk."""

    def __init__(self):
        self.suspect = False

    def _int(self, text: str) -> int:
        if len(text) > 18:
            self.suspect = True
        return int(text)

    def _float(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            self.suspect = True
        return value

    def _constant(self, text: str) -> float:
        self.suspect = True
        return float(text)

    def loads(self, text: str) -> Any:
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            self.suspect = True
        return json.loads(text, parse_int=self._int, parse_float=self._float, parse_constant=self._constant)


def _parse(line: bytes, errors: list[str], parser: _Parser) -> tuple[Any, str]:
    """The JSON value of a line (or UNREAD, with the reason in ``errors``) and its text."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        errors.append("import.invalid_utf8")
        text = line.decode("utf-8", errors="replace")
    try:
        return parser.loads(text), text
    except RecursionError:
        errors.append("import.too_deep")
    except ValueError:  # includes integers longer than Python's digit limit
        errors.append("import.not_json")
    return UNREAD, text


def _score(raw: Any, errors: list[str]) -> float | None:
    """The claimed score: absent, or a finite number (not a bool) in [0, 1]."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        errors.append("import.score_not_number")
        return None
    if isinstance(raw, float) and not math.isfinite(raw):
        errors.append("import.score_not_finite")
        return None
    if not 0 <= raw <= 1:  # compared before any float(): a 400-digit integer never overflows
        errors.append("import.score_out_of_range")
        return None
    return float(raw)


def _identifier(raw: Any, field: str, errors: list[str]) -> str | None:
    """A short single-line string id, or None (absent or invalid, the latter named in ``errors``)."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        errors.append(f"import.{field}_not_string")
        return None
    if len(raw) > MAX_ID_CHARS:
        errors.append(f"import.{field}_too_long")
        return None
    if not raw.isprintable():
        errors.append(f"import.{field}_invalid")
        return None
    return raw


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
        msg["content"] = json.dumps(msg["content"], ensure_ascii=False)
    for key in ("tool_call_id", "name"):
        if msg[key] is not None and not isinstance(msg[key], str):
            errors.append(f"message.{key}_not_string:{i}")
            msg[key] = json.dumps(msg[key], ensure_ascii=False)
    calls = msg["tool_calls"]
    if calls is not None:
        if not isinstance(calls, list):
            errors.append(f"message.tool_calls_not_list:{i}")
            calls = [calls]
        good = []
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                errors.append(f"tool_call.malformed:{i}")
                continue
            call_id, name, args = call.get("id"), fn.get("name"), fn.get("arguments")
            if call_id is not None and not isinstance(call_id, str):
                errors.append(f"tool_call.id_not_string:{i}")
                call_id = None
            if isinstance(call_id, str) and len(call_id) > MAX_ID_CHARS:
                errors.append(f"tool_call.id_too_long:{i}")
            if name is not None and not isinstance(name, str):
                errors.append(f"tool_call.name_not_string:{i}")
                name = None
            if not isinstance(args, str):
                args = json.dumps(args, ensure_ascii=False)
            call_type = call.get("type")
            good.append({"id": call_id or "", "type": call_type if isinstance(call_type, str) else "function",
                         "function": {"name": name or "", "arguments": args}})
        msg["tool_calls"] = good or None
    return msg


def _record(line: bytes | None, line_no: int, env: str, round_key: str, origin: str) -> dict:
    errors: list[str] = []
    data: Any = UNREAD
    text = ""
    parser = _Parser()
    if line is None or len(line) > MAX_LINE_BYTES:
        errors.append("import.line_too_long")
    else:
        data, text = _parse(line, errors, parser)
    if data is not UNREAD and _too_deep(text):
        errors.append("import.too_deep")
        data = UNREAD
    if not isinstance(data, dict):
        if data is not UNREAD:
            errors.append("import.not_object")
        data = {}
    score = _score(data.get("score"), errors)  # before cleaning, so a bad score is named as such
    if parser.suspect:
        problems: set[str] = set()
        data = _clean(data, problems)
        errors.extend(sorted(problems))
    if "env" in data and data["env"] != env:
        errors.append("import.env_mismatch")  # never relabelled into the partition's env
    raw_messages = data.get("messages")
    if raw_messages is not None and not isinstance(raw_messages, list):
        errors.append("import.messages_not_list")
        raw_messages = None
    messages = [_normalise_message(m, i, errors) for i, m in enumerate(raw_messages or [])]
    task_id = _identifier(data.get("task_id"), "task_id", errors)
    policy = _identifier(data.get("policy"), "policy", errors) or "import"
    meta = data.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        errors.append("import.metadata_not_object")
    meta = {k: v for k, v in (meta if isinstance(meta, dict) else {}).items() if k not in RESERVED_METADATA}
    meta["origin"] = f"{origin}:{line_no}"
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, (list, str)):
        errors.append("import.tools_invalid")
        tools = None
    if errors:
        meta["import_errors"] = errors
    return make_record(
        env=env, task_id=task_id, round_key=round_key, sample_idx=line_no, source="import",
        policy=policy, seed=None, messages=messages, score=score,
        metadata=meta, tools=None if tools is None else (tools if isinstance(tools, str) else json.dumps(tools)),
    )


def _unreadable(line_no: int, env: str, round_key: str, origin: str, reason: str) -> dict:
    """The record of a line the importer itself failed on: it fails verification with ``reason``."""
    return make_record(env=env, task_id=None, round_key=round_key, sample_idx=line_no, source="import",
                       policy="import", seed=None, messages=[], score=None,
                       metadata={"origin": f"{origin}:{line_no}", "import_errors": [reason]})


def record_from_line(line: bytes | None, line_no: int, env: str, round_key: str, origin: str) -> dict:
    """The one record of a line (``None``: a line longer than MAX_LINE_BYTES); never raises."""
    try:
        return _record(line, line_no, env, round_key, origin)
    except Exception as exc:  # a case no check above foresaw: still one record, failed with a reason
        return _unreadable(line_no, env, round_key, origin, f"import.internal_error:{type(exc).__name__}")


def _to_batch(rows: list[dict], env: str, round_key: str, origin: str) -> pa.RecordBatch:
    try:
        return records_to_batch(rows)
    except Exception:  # find the rows Arrow refuses and replace each with its failed record
        safe = []
        for row in rows:
            try:
                records_to_batch([row])
                safe.append(row)
            except Exception as exc:
                safe.append(_unreadable(row["sample_idx"], env, round_key, origin,
                                        f"import.internal_error:{type(exc).__name__}"))
        return records_to_batch(safe)


def read_lines(fh: BinaryIO) -> Iterator[bytes | None]:
    """The lines of a binary file without their line ending; ``None`` for a line longer than MAX_LINE_BYTES
    (read through in chunks, never held in memory). A leading UTF-8 BOM is dropped."""
    first = True
    while True:
        line = fh.readline(MAX_LINE_BYTES + 2)
        if not line:
            return
        if first and line.startswith(BOM):
            line = line[len(BOM):]
        first = False
        if len(line) == MAX_LINE_BYTES + 2 and not line.endswith(b"\n"):
            while True:  # drain the rest of the over-long line
                rest = fh.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
            continue
        yield line.rstrip(b"\r\n")


def import_stream(fh: BinaryIO, env: str, round_key: str, origin: str,
                  counts: ImportCounts | None = None) -> Iterator[pa.RecordBatch]:
    """One record per non-blank line of an open binary stream, in order."""
    counts = counts if counts is not None else ImportCounts()
    rows = []
    for line_no, line in enumerate(read_lines(fh)):
        counts.lines += 1
        if line is not None and not line.strip():
            counts.skipped_blank += 1
            continue
        rows.append(record_from_line(line, line_no, env, round_key, origin))
        counts.records += 1
        if len(rows) >= BATCH_ROWS:
            yield _to_batch(rows, env, round_key, origin)
            rows = []
    if rows:
        yield _to_batch(rows, env, round_key, origin)


def import_jsonl(path: Path | str, env: str, round_key: str,
                 counts: ImportCounts | None = None) -> Iterator[pa.RecordBatch]:
    """One record per non-blank line of a JSONL file, in order; ``counts`` tallies lines, records and blanks.
    ``path`` may be an object (``s3://bucket/key``, read through the lake's file system, streamed)."""
    from orbit.io.lakefs import lake_path

    path = lake_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"import file {path} does not exist")
    with path.open("rb") as fh:
        yield from import_stream(fh, env, round_key, path.name, counts)
