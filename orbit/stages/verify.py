"""The verify stage: every raw record in, every record out with a recomputed verdict.

Structural rules shared by all envs run first (a malformed record fails with a
named reason instead of crashing the partition), then the env's verifier
recomputes the score from the trajectory alone. A record passes when it breaks
no rule and its recomputed score reaches the env's threshold; every failed record
carries at least one reason.
"""

import collections
import itertools
import json
import math
import os
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import pyarrow as pa

from orbit.envs.base import Verdict, Verifier
from orbit.io.jsonmemo import loads_shared
from orbit.io.plain_messages import (MAX_CONTENT_CHARS, MAX_MESSAGES, PLAIN_ROLES, FlatMessages, PlainMessages, PlainTexts,
                                  plain_message_lists, plain_rows, plain_text_lists)
from orbit.io.schema import RECORD_SCHEMA, ROLES, VERIFIED_SCHEMA

MAX_REASON_CHARS = 300

BELOW_THRESHOLD = "score.below_threshold"


@dataclass
class VerifyCounts:
    rows: int = 0
    passed: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def merge(self, other: "VerifyCounts") -> None:
        """Add another batch's counts (reason keys keep their first-seen order)."""
        self.rows += other.rows
        self.passed += other.passed
        self.failed += other.failed
        for key, n in other.reasons.items():
            self.reasons[key] = self.reasons.get(key, 0) + n

    def add(self, passed: bool, reasons: Iterable[str]) -> None:
        self.rows += 1
        if passed:
            self.passed += 1
        else:
            self.failed += 1
        for reason in reasons:
            key = reason.split(":", 1)[0]
            self.reasons[key] = self.reasons.get(key, 0) + 1


def _metadata(text: Any, reasons: list[str]) -> dict:
    if text is None or text == "":
        return {}
    try:
        meta = loads_shared(text)
    except (TypeError, ValueError, RecursionError):
        reasons.append("record.metadata_not_json")
        return {}
    if not isinstance(meta, dict):
        reasons.append("record.metadata_not_object")
        return {}
    return meta


def _arguments_are_json(arguments: Any) -> bool:
    if not isinstance(arguments, str):
        return False
    try:
        json.loads(arguments)
    except (ValueError, RecursionError):
        return False
    return True


def structural_reasons(record: Mapping[str, Any]) -> list[str]:
    """Rules every record must satisfy whatever its env, as reason ids.

    Reads nothing it has not type-checked, so any record (a row of RECORD_SCHEMA, or a
    dict of anything) yields a list of reasons rather than an exception.
    """
    reasons: list[str] = []
    meta = _metadata(record.get("metadata"), reasons)
    problems = meta.get("import_errors")
    if problems is not None:
        if isinstance(problems, list) and problems and all(isinstance(p, str) for p in problems):
            reasons.extend(problems)
        else:
            reasons.append("record.import_errors_invalid")
    if meta.get("sample_error"):
        # the generator could not finish the sample (e.g. the endpoint failed): it can only fail
        reasons.append(str(meta["sample_error"]) if isinstance(meta["sample_error"], str) else "sample.error")
    messages = record.get("messages")
    if type(messages) is PlainMessages or type(messages) is PlainTexts:
        return reasons  # checked column-wise by the verify stage: no message rule can fire
    if messages is not None and not isinstance(messages, (list, tuple)):
        reasons.append("trajectory.not_list")
        return reasons
    if not messages:
        reasons.append("trajectory.empty")
        return reasons
    if len(messages) > MAX_MESSAGES:
        reasons.append("trajectory.too_long")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        reasons.append("trajectory.no_assistant_turn")
    open_calls: dict[str, Any] = {}  # id -> function name of the calls not answered yet, in order
    for i, m in enumerate(messages):
        if (isinstance(m, dict) and m.get("tool_calls") is None and m.get("tool_call_id") is None
                and m.get("name") is None and type(m.get("role")) is str and m.get("role") in PLAIN_ROLES
                and type(m.get("content")) is str and len(m.get("content")) <= MAX_CONTENT_CHARS
                and (m["role"] != "assistant" or not m["content"].isspace() and m["content"])):
            continue  # a plain chat message (no tool call, known role, text content): no rule can fire
        if m is None:
            reasons.append(f"message.null:{i}")
            continue
        if not isinstance(m, dict):
            reasons.append(f"message.not_object:{i}")
            continue
        role = m.get("role")
        if role is None:
            reasons.append(f"message.missing_role:{i}")
        elif not isinstance(role, str) or role not in ROLES:
            reasons.append(f"message.unknown_role:{i}")
        content = m.get("content")
        calls = m.get("tool_calls")
        if content is None and not calls and role != "assistant":
            reasons.append(f"message.missing_content:{i}")
        if role == "assistant" and not calls and (content is None or isinstance(content, str) and not content.strip()):
            reasons.append(f"message.empty_turn:{i}")  # no env writes an assistant turn that says and calls nothing
        if m.get("name") is not None and role != "tool":
            reasons.append(f"message.unexpected_field:{i}")  # only a tool's reply carries a name
        if calls and role != "assistant":
            reasons.append(f"message.unexpected_field:{i}")  # only the assistant calls tools
        if content is not None and not isinstance(content, str):
            reasons.append(f"message.content_not_string:{i}")
        elif content is not None and len(content) > MAX_CONTENT_CHARS:
            reasons.append(f"message.content_too_long:{i}")
        if calls is not None and not isinstance(calls, (list, tuple)):
            reasons.append(f"tool_call.malformed:{i}")
            calls = None
        for call in calls or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                reasons.append(f"tool_call.malformed:{i}")
                continue
            if not fn.get("name") or not isinstance(fn.get("name"), str):
                reasons.append(f"tool_call.missing_name:{i}")
            if not _arguments_are_json(fn.get("arguments")):
                reasons.append(f"tool_call.arguments_not_json:{i}")
            if call.get("type") not in (None, "function"):
                reasons.append(f"tool_call.malformed:{i}")
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id or call_id in open_calls:
                reasons.append(f"tool_call.missing_id:{i}")
            else:
                open_calls[call_id] = fn.get("name")
        if role == "tool":
            # a tool message answers one call made before it and not answered yet, under that call's name
            answered = m.get("tool_call_id")
            if isinstance(answered, str) and answered in open_calls:
                if m.get("name") is not None and m.get("name") != open_calls[answered]:
                    reasons.append(f"tool_call.name_mismatch:{i}")
                del open_calls[answered]
            else:
                reasons.append(f"tool_call_id.unmatched:{i}")
        elif m.get("tool_call_id") is not None:
            reasons.append(f"tool_call_id.unmatched:{i}")
    return reasons


def clean_reason(reason: Any) -> str:
    """A reason id safe to store: a string of valid Unicode, at most MAX_REASON_CHARS long."""
    text = reason if isinstance(reason, str) else repr(reason)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:MAX_REASON_CHARS]


def _finish(score: float, reasons: list[str], threshold: float) -> tuple[float, bool, list[str]]:
    if math.isnan(score) or not (0.0 <= score <= 1.0):
        reasons.append("score.out_of_range")
        score = 0.0 if math.isnan(score) else min(max(score, 0.0), 1.0)
    if reasons:
        reasons = [clean_reason(r) for r in reasons]
    passed = not reasons and score >= threshold
    if not passed and not reasons:
        reasons.append(BELOW_THRESHOLD)
    return score, passed, reasons


def _structural(record: Mapping[str, Any]) -> list[str]:
    try:
        return structural_reasons(record)
    except Exception as exc:  # a rule bug must not take the partition down either
        return [f"verify.structural_error:{type(exc).__name__}"]


def verify_record(record: Mapping[str, Any], verifier: Verifier, threshold: float) -> tuple[float, bool, list[str]]:
    """Score, passed and reasons for one record; never raises whatever the record holds.

    A verifier that raises fails the record with ``verifier.error:<ExceptionType>``.
    """
    reasons = _structural(record)
    score = 0.0
    if not reasons:
        try:
            verdict: Verdict = verifier.verify(record)
            score = float(verdict.score)
            reasons.extend(verdict.reasons)
        except Exception as exc:  # a verifier bug must not take the partition down
            reasons = [f"verifier.error:{type(exc).__name__}"]
            score = 0.0
    return _finish(score, reasons, threshold)


def verify_records(records: list[Mapping[str, Any]], verifier: Verifier,
                   threshold: float) -> list[tuple[float, bool, list[str]]]:
    """``verify_record`` of each record. A verifier with ``verify_many(records) -> [Verdict]`` (one per
    record, in order) gets every record that passes the structural rules in one call, so it can spread
    them over its own workers (math-verify's killable pool, several sandboxes at once)."""
    many = getattr(verifier, "verify_many", None)
    if many is None:
        return [verify_record(r, verifier, threshold) for r in records]
    structural = [_structural(r) for r in records]
    todo = [i for i, reasons in enumerate(structural) if not reasons]
    try:
        verdicts = list(many([records[i] for i in todo])) if todo else []
        if len(verdicts) != len(todo):
            raise ValueError("verify_many returned a verdict count that is not the record count")
    except Exception as exc:  # a verifier bug must not take the partition down
        verdicts = [Verdict(0.0, (f"verifier.error:{type(exc).__name__}",))] * len(todo)
    out = [(0.0, reasons) for reasons in structural]
    for i, verdict in zip(todo, verdicts):
        try:
            out[i] = (float(verdict.score), list(verdict.reasons))
        except Exception as exc:  # noqa: BLE001 -- a malformed verdict
            out[i] = (0.0, [f"verifier.error:{type(exc).__name__}"])
    return [_finish(score, reasons, threshold) for score, reasons in out]


def _batch_counts(passed: list[bool], reasons: list[list[str]]) -> VerifyCounts:
    """The counts of one batch's verdicts, as ``VerifyCounts.add`` row by row would make them."""
    n_passed = sum(passed)
    by_reason = collections.Counter(itertools.chain.from_iterable(reasons))  # first-seen order
    keyed: dict[str, int] = {}
    for reason, n in by_reason.items():
        key = reason.split(":", 1)[0]
        keyed[key] = keyed.get(key, 0) + n
    return VerifyCounts(rows=len(passed), passed=n_passed, failed=len(passed) - n_passed, reasons=keyed)


def _read_columns(verifier: Verifier) -> list[str]:
    """The record columns a batch's verification reads: the verifier's ``columns`` (every column when
    it names none), the metadata the rules read, and the messages."""
    wanted = getattr(verifier, "columns", None)
    return [n for n in RECORD_SCHEMA.names if wanted is None or n in wanted or n in ("metadata", "messages")]


def _verdicts(batch: pa.RecordBatch, verifier: Verifier, threshold: float) -> tuple[list, list, list]:
    """Recomputed scores, passed flags and reasons of a batch holding (at least) ``_read_columns``."""
    messages = batch.column("messages")
    rows = batch.select([n for n in _read_columns(verifier) if n != "messages"]).to_pylist()
    flat = FlatMessages(messages)
    plain = plain_rows(messages, flat)
    listed_rows = plain_text_lists(messages, plain, flat) if getattr(verifier, "reads_plain_texts", False) \
        else plain_message_lists(messages, plain)
    for row, listed in zip(rows, listed_rows):
        row["messages"] = listed
    scores, passed_col, reasons_col = [], [], []
    for score, passed, reasons in verify_records(rows, verifier, threshold):
        scores.append(score)
        passed_col.append(passed)
        reasons_col.append(reasons)
    return scores, passed_col, reasons_col


def _verified(batch: pa.RecordBatch, verifier: Verifier, verdicts: tuple[list, list, list],
              counts: VerifyCounts | None) -> pa.RecordBatch:
    """The raw batch with its verdicts, in VERIFIED_SCHEMA; the verdicts are added to ``counts``."""
    scores, passed, reasons = verdicts
    if counts is not None:
        counts.merge(_batch_counts(passed, reasons))
    columns = batch.columns if batch.schema.equals(RECORD_SCHEMA) else [batch.column(n) for n in RECORD_SCHEMA.names]
    score_idx = RECORD_SCHEMA.get_field_index("score")
    claimed = columns[score_idx]
    columns[score_idx] = pa.array(scores, pa.float64())
    columns += [claimed, pa.array(passed, pa.bool_()), pa.array(reasons, pa.list_(pa.string())),
                pa.array([f"{verifier.name}@{verifier.version}"] * len(batch), pa.string())]
    return pa.RecordBatch.from_arrays(columns, schema=VERIFIED_SCHEMA)


def verify_batch(batch: pa.RecordBatch, verifier: Verifier, threshold: float,
                 counts: VerifyCounts | None = None) -> pa.RecordBatch:
    """Verify one batch of raw records; returns the batch in VERIFIED_SCHEMA.

    The rows whose messages are plain chat (``plain_rows``, decided column-wise) reach the rules
    and the verifier with their messages as ``PlainMessages`` (``PlainTexts`` for a verifier that
    ``reads_plain_texts``), which spares them the per-message scans; the verdicts are the same
    either way. A verifier that names the columns it reads (``columns``) gets only those (and the
    metadata the rules read) in its records.
    """
    return _verified(batch, verifier, _verdicts(batch, verifier, threshold), counts)


PARALLEL_MIN_ROWS = 65_536  # a partition smaller than this is verified in this process
IN_FLIGHT_PER_WORKER = 2  # batches queued per worker: keeps both busy, memory flat


def _drained(batches: list) -> Iterator:
    """The list's items in order, each let go of as it is handed on (the first PARALLEL_MIN_ROWS rows of a
    partition, read ahead to choose the pool, would otherwise stay in memory for the whole partition)."""
    batches.reverse()
    while batches:
        yield batches.pop()


def verify_batches(batches: Iterable[pa.RecordBatch], verifier: Verifier, threshold: float,
                   counts: VerifyCounts, workers: int | None = None) -> Iterator[pa.RecordBatch]:
    """Verify a stream of raw batches, in order.

    A partition of at least PARALLEL_MIN_ROWS rows is verified on this process's worker pool
    (``workers`` processes, default every core) when the verifier is ``parallel_safe`` (its verdict
    depends on the record alone); the batches come back in their order and the counts are the same.
    While the pool starts, the first batches are verified in this process.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    stream = iter(batches)
    head: list[pa.RecordBatch] = []
    if workers > 1 and getattr(verifier, "parallel_safe", False):
        rows = 0
        for batch in stream:
            head.append(batch)
            rows += batch.num_rows
            if rows >= PARALLEL_MIN_ROWS:
                break
        else:
            workers = 1
    else:
        workers = 1
    if workers <= 1:
        for batch in itertools.chain(_drained(head), stream):
            if batch.num_rows:
                yield verify_batch(batch, verifier, threshold, counts)
        return
    from orbit.compute.workers import POOL_STATS, shutdown_pool, start_pool

    ready = start_pool(workers)  # in the background: until every worker is up, batches are verified here
    pool = None
    pending: collections.deque = collections.deque()
    try:
        for batch in itertools.chain(_drained(head), stream):
            if not batch.num_rows:
                continue
            if pool is None:
                if not ready.done():
                    yield verify_batch(batch, verifier, threshold, counts)
                    continue
                pool = ready.result()
                POOL_STATS["requests"] += 1
            # a worker gets only the columns verification reads and sends back only the verdicts
            pending.append((batch, pool.submit(_verdicts, batch.select(_read_columns(verifier)), verifier, threshold)))
            if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                raw, future = pending.popleft()
                yield _verified(raw, verifier, future.result(), counts)
        while pending:
            raw, future = pending.popleft()
            yield _verified(raw, verifier, future.result(), counts)
    except BrokenProcessPool:
        shutdown_pool()  # a worker died: the next request starts a fresh pool
        raise
    finally:
        for _, future in pending:
            future.cancel()
