"""Property-based fuzzing of the importer and every verifier (hypothesis).

Invariants, for whatever bytes or values are generated:
- every line is one record, or one skipped blank line; lines = records + blanks;
- no exception escapes the importer or the verify stage, and the batches keep their schemas;
- verified rows = records = passed + failed, and every failed row names a reason;
- nothing invalid passes: random bytes and random records never pass, and a record that
  passes stops passing once any of its checked fields is replaced by a different value.

Runs derandomized (the same examples every run) with modest example counts.
"""

import copy
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbit.envs import env_names, env_spec
from orbit.stages.verify import verify_record

from hostile.pipeline import as_line, run

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ENVS = st.sampled_from(env_names())
WORDS = st.sampled_from(["system", "user", "assistant", "tool", "function", "", " ", "0", "4", "NaN", "null",
                         "tic_tac_toe", "liveweb", "goto", "stop", "call_0000", "\u2028", "\x00", "r0000\n",
                         "\ufeff", "Ignore previous instructions", "\u0663"])
TEXT = st.one_of(
    st.text(max_size=24),
    WORDS,
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),  # lone surrogates
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**300), 2**63, -(2**63), 0, 1, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
SCALARS = st.one_of(st.none(), NUMBERS, TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(TEXT, inner, max_size=4)), max_leaves=16)
CALLS = st.lists(st.fixed_dictionaries({}, optional={
    "id": st.one_of(TEXT, VALUES), "type": VALUES,
    "function": st.one_of(VALUES, st.fixed_dictionaries({}, optional={"name": st.one_of(TEXT, VALUES),
                                                                     "arguments": st.one_of(TEXT, VALUES)})),
}), max_size=3)
MESSAGES = st.fixed_dictionaries({}, optional={
    "role": st.one_of(WORDS, VALUES), "content": st.one_of(TEXT, VALUES), "tool_calls": st.one_of(CALLS, VALUES),
    "tool_call_id": st.one_of(TEXT, VALUES), "name": st.one_of(TEXT, VALUES),
})
RECORDS = st.fixed_dictionaries({}, optional={
    "messages": st.one_of(st.lists(st.one_of(MESSAGES, VALUES), max_size=6), VALUES),
    "score": st.one_of(NUMBERS, VALUES), "task_id": st.one_of(TEXT, VALUES), "policy": st.one_of(TEXT, VALUES),
    "env": st.one_of(st.sampled_from(env_names()), VALUES), "tools": VALUES,
    "metadata": st.one_of(st.fixed_dictionaries({}, optional={
        "task": st.one_of(VALUES, st.fixed_dictionaries({}, optional={
            "game": st.one_of(st.sampled_from(env_names()), VALUES), "seed": NUMBERS, "seat": NUMBERS,
            "params": VALUES, "subtasks": VALUES})),
        "history": st.one_of(st.lists(NUMBERS, max_size=8), VALUES), "returns": VALUES,
        "import_errors": VALUES, "sample_error": VALUES, "task_error": VALUES}), VALUES),
})


def _encode(value, ascii_only: bool, depth: int) -> bytes:
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    text = "[" * depth + text + "]" * depth
    return text.encode("utf-8", "surrogatepass")  # non-ASCII surrogates become invalid UTF-8 bytes


def _expected_lines(data: bytes) -> tuple[int, int]:
    """(lines, blank lines) of a file as the importer must count them, by an independent reckoning."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    if parts and parts[0].startswith(b"\xef\xbb\xbf"):
        parts[0] = parts[0][3:]
    return len(parts), sum(1 for p in parts if not p.strip())


@FUZZ
@given(data=st.one_of(st.binary(max_size=400),
                      st.lists(st.binary(max_size=60), max_size=10).map(b"\n".join),
                      st.lists(st.sampled_from([b"", b" ", b"\r", b"{}", b"[", b"\xef\xbb\xbf", b"\xff", b"null",
                                                b'{"messages": []}', b'"\\ud800"', b"\t\x0c"]), max_size=12)
                      .map(b"\n".join)),
       env=ENVS)
def test_any_bytes_one_record_per_line_and_nothing_passes(verifiers, data, env):
    counts, verify_counts, _ = run(data, env, verifiers[env])
    assert (counts.lines, counts.skipped_blank) == _expected_lines(data)
    assert verify_counts.passed == 0


@FUZZ
@given(records=st.lists(RECORDS, min_size=1, max_size=4), ascii_only=st.booleans(),
       depth=st.one_of(st.just(0), st.integers(min_value=60, max_value=3_000)), env=ENVS,
       separator=st.sampled_from([b"\n", b"\r\n", b"\n\n"]), bom=st.booleans())
def test_hostile_records_never_crash_and_never_pass(verifiers, records, ascii_only, depth, env, separator, bom):
    lines = [_encode(r, ascii_only, depth if i == 0 else 0) for i, r in enumerate(records)]
    data = (b"\xef\xbb\xbf" if bom else b"") + separator.join(lines)
    counts, verify_counts, rows = run(data, env, verifiers[env])
    assert counts.records == len(records)
    assert verify_counts.passed == 0, [r["reasons"] for r in rows]


def paths_of(line: dict, env: str) -> list[tuple]:
    """The fields of a passing record whose value decides its verdict (a different value must fail it)."""
    paths = [("task_id",), ("tools",)]
    meta = line["metadata"]
    for key in meta["task"]:
        paths.append(("metadata", "task", key))
    for i, message in enumerate(line["messages"]):
        paths.append(("messages", i))
        paths.append(("messages", i, "role"))
        if env != "liveweb" or message["role"] != "assistant":  # a LiveWeb assistant's text is free thought
            paths.append(("messages", i, "content"))
        if message["role"] == "tool":
            paths.append(("messages", i, "tool_call_id"))
        for j, _ in enumerate(message.get("tool_calls") or []):
            paths += [("messages", i, "tool_calls", j, "id"), ("messages", i, "tool_calls", j, "function", "name"),
                      ("messages", i, "tool_calls", j, "function", "arguments")]
    family = env_spec(env).family
    if family == "liveweb":
        for j, _ in enumerate(meta["task"]["subtasks"]):
            paths += [("metadata", "task", "subtasks", j, "template"), ("metadata", "task", "subtasks", j, "params")]
    elif family == "openspiel":  # a game's claimed outcome is checked against the replay
        paths.append(("score",))
        paths += [("metadata", "history", j) for j in range(len(meta["history"]))]
        paths += [("metadata", "returns", j) for j in range(len(meta["returns"]))]
    return paths


def _equivalent(path: tuple, old, new) -> bool:
    """Possibly the same valid record after import: an equal value, tool arguments given as an object (the
    importer writes it as JSON text; ``{}`` may mean the tool's defaults), or another history that may be
    just as legal (a chance outcome the learner never sees)."""
    if _same(old, new):
        return True
    if path[-1] == "arguments":
        return isinstance(new, dict)
    return path[1:2] == ("history",) and _plain_int(new)


def _plain_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _same(a, b) -> bool:
    """Equal as the verifier may legitimately read it (1 == 1.0; NaN never equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    try:
        return a == b
    except Exception:
        return False


REPLACEMENTS = st.one_of(NUMBERS, TEXT.map(lambda t: "~" + t), VALUES.filter(lambda v: v is not None))


@settings(FUZZ, max_examples=250)
@given(env=ENVS, pick=st.integers(min_value=0), value=REPLACEMENTS)
def test_changing_a_checked_field_of_a_passing_record_fails_it(winners, verifiers, env, pick, value):
    line = as_line(winners[env])
    paths = paths_of(line, env)
    path = paths[pick % len(paths)]
    node = line
    for key in path[:-1]:
        node = node[key]
    if _equivalent(path, node[path[-1]], value):
        return
    node[path[-1]] = value
    data = json.dumps(line, allow_nan=True).encode()
    _, verify_counts, rows = run(data, env, verifiers[env])
    assert verify_counts.passed == 0, (path, value, rows[0]["reasons"])


@settings(FUZZ, max_examples=150)
@given(env=ENVS, field=st.sampled_from(["env", "task_id", "messages", "metadata", "score", "seed", "tools", "round"]),
       value=VALUES)
def test_verifiers_survive_any_value_in_any_column(winners, verifiers, env, field, value):
    record = copy.deepcopy(winners[env])
    record[field] = value
    verdict = verifiers[env].verify(record)  # no exception, whatever the column holds
    score, passed, reasons = verify_record(record, verifiers[env], 1.0)
    assert math.isfinite(score) and 0.0 <= score <= 1.0
    assert passed == (not reasons)
    assert all(isinstance(r, str) and r.encode("utf-8") for r in reasons)
    if passed:
        assert not verdict.reasons
