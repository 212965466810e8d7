"""The hostile corpus through the real importer and verify stage: every line one record, each failing with its
named reason, counts adding up, and the same edits caught when the verifier is called on the record directly."""

import copy
import json
import math

import pytest

from orbit.io.importer import MAX_LINE_BYTES, import_stream
from orbit.stages.verify import verify_record

from hostile.corpus import BENIGN, CROSS_ENV, GAME_MUTATIONS, LIVEWEB_MUTATIONS, RAW
from hostile.pipeline import as_line, dumps, reason_ids, run

GAMES = ("tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker")


def test_raw_corpus_one_failed_record_per_line_with_its_reason(verifiers):
    data = b"\n".join(line for _, line, _ in RAW) + b"\n"
    counts, verify_counts, rows = run(data, "tic_tac_toe", verifiers["tic_tac_toe"])
    assert counts.records == len(RAW) and counts.skipped_blank == 0
    assert verify_counts.passed == 0 and verify_counts.failed == len(RAW)
    for (name, _, reason), row in zip(RAW, rows):
        assert reason in reason_ids(row), (name, row["reasons"])


@pytest.mark.parametrize("env", ["tic_tac_toe", "liveweb"])
def test_raw_corpus_never_passes_in_any_env(verifiers, env):
    _, verify_counts, _ = run(b"\n".join(line for _, line, _ in RAW), env, verifiers[env])
    assert verify_counts.rows == len(RAW) and verify_counts.passed == 0


def _mutations():
    for env in GAMES:
        for name, edit, reason in GAME_MUTATIONS:
            yield pytest.param(env, edit, reason, id=f"{env}-{name}")
    for name, edit, reason in LIVEWEB_MUTATIONS:
        yield pytest.param("liveweb", edit, reason, id=f"liveweb-{name}")


@pytest.mark.parametrize("env, edit, reason", list(_mutations()))
def test_each_edit_of_a_passing_record_fails_with_its_reason(winners, verifiers, env, edit, reason):
    edited = edit(as_line(winners[env]))
    data = edited if isinstance(edited, bytes) else dumps(edited)
    _, verify_counts, rows = run(data + b"\n", env, verifiers[env])
    assert verify_counts.rows == 1 and verify_counts.passed == 0
    assert reason in reason_ids(rows[0]), rows[0]["reasons"]


@pytest.mark.parametrize("env", GAMES + ("liveweb",))
@pytest.mark.parametrize("name, edit", BENIGN, ids=[b[0] for b in BENIGN])
def test_benign_edits_still_pass(winners, verifiers, env, name, edit):
    line = edit(as_line(winners[env]))
    if name == "env_field_same":
        line["env"] = env
    counts, verify_counts, rows = run(b"\xef\xbb\xbf" + dumps(line) + b"\r\n\r\n  \n", env, verifiers[env])
    assert counts.skipped_blank == 2 and verify_counts.passed == 1, rows[0]["reasons"]


@pytest.mark.parametrize("name, source, target, reason", CROSS_ENV, ids=[c[0] for c in CROSS_ENV])
def test_a_record_of_another_env_fails(winners, verifiers, name, source, target, reason):
    _, verify_counts, rows = run(dumps(as_line(winners[source])), target, verifiers[target])
    assert verify_counts.passed == 0 and reason in reason_ids(rows[0]), rows[0]["reasons"]
    # the record's own env column (set by the pipeline) is checked as well: never relabelled silently
    record = dict(winners[source], env=target)
    assert not verifiers[target].verify(record).score


HOSTILE_VALUES = [None, True, False, 0, -1, 2**64, 10**400, 1.5, math.nan, math.inf, -math.inf, "", "x" * 10_000,
                  "\ud800", [], [None], {}, {"a": {"b": []}}, b"bytes", 3 + 4j, object()]


@pytest.mark.parametrize("env", GAMES + ("liveweb",))
def test_verifiers_never_raise_on_hostile_python_values(winners, verifiers, env):
    """Called directly (no importer in front), each verifier survives any value in any field."""
    verifier = verifiers[env]
    base = winners[env]
    assert verifier.verify(base).score == 1.0
    for key in ("env", "task_id", "messages", "metadata", "score", "seed", "tools"):
        for value in HOSTILE_VALUES:
            record = dict(base, **{key: value})
            verdict = verifier.verify(record)
            assert verdict.reasons or verdict.score == 1.0
            score, passed, reasons = verify_record(record, verifier, 1.0)
            assert passed == (not reasons)
    for i in range(len(base["messages"])):
        for field in ("role", "content", "tool_calls", "tool_call_id", "name"):
            for value in HOSTILE_VALUES:
                record = copy.deepcopy(base)
                record["messages"][i][field] = value
                verifier.verify(record)
                verify_record(record, verifier, 1.0)
        record = copy.deepcopy(base)
        record["messages"][i] = None
        assert not verify_record(record, verifier, 1.0)[1]
    meta = json.loads(base["metadata"])
    for key in list(meta) + list(meta.get("task", {})):
        for value in HOSTILE_VALUES:
            edited = copy.deepcopy(meta)
            (edited if key in meta else edited["task"])[key] = value
            record = dict(base, metadata=json.dumps(edited, default=repr))
            verifier.verify(record)
            verify_record(record, verifier, 1.0)


@pytest.mark.parametrize("claim", [math.nan, math.inf, -math.inf, True, 2.0, -1.0, "1.0", 10**400])
@pytest.mark.parametrize("env", ["tic_tac_toe", "liveweb"])
def test_an_invalid_claimed_score_never_passes(winners, verifiers, env, claim):
    verdict = verifiers[env].verify(dict(winners[env], score=claim))
    assert verdict.reasons and verdict.score == 0.0


def test_a_verifier_that_raises_fails_only_that_record(winners):
    class Fragile:
        name, version = "fragile", "1"

        def verify(self, record):
            if record["sample_idx"] == 1:
                raise KeyError("boom \ud800")
            from orbit.envs.base import Verdict
            return Verdict(1.0)

    line = dumps(as_line(winners["tic_tac_toe"]))
    _, verify_counts, rows = run(line + b"\n" + line + b"\n" + line, "tic_tac_toe", Fragile())
    assert verify_counts.rows == 3 and verify_counts.passed == 2
    assert rows[1]["reasons"] == ["verifier.error:KeyError"]


def test_over_long_lines_are_one_failed_record_each(verifiers, monkeypatch):
    import orbit.io.importer as importer

    big = b'{"messages": [' + b" " * MAX_LINE_BYTES + b"]}"
    _, _, rows = run(big + b"\n" + big, "tic_tac_toe", verifiers["tic_tac_toe"])  # the last one without a newline
    assert ["import.line_too_long" in reason_ids(r) for r in rows] == [True, True]
    monkeypatch.setattr(importer, "MAX_LINE_BYTES", 16)
    lines = [b"x" * 15, b"y" * 16, b"z" * 17, b"w" * 40, b"{}"]
    counts, _, rows = run(b"\n".join(lines), "tic_tac_toe", verifiers["tic_tac_toe"])
    assert counts.records == 5
    assert ["import.line_too_long" in reason_ids(r) for r in rows] == [False, False, True, True, False]


def test_blank_lines_are_counted_and_line_numbers_kept(verifiers):
    import io

    from orbit.io.importer import ImportCounts

    counts = ImportCounts()
    data = b"\xef\xbb\xbf\n{}\n\n \t\r\n{}\r\n\x0c\n"
    rows = [r for b in import_stream(io.BytesIO(data), "tic_tac_toe", "r0000", "x", counts) for r in b.to_pylist()]
    assert (counts.lines, counts.records, counts.skipped_blank) == (6, 2, 4)
    assert [r["sample_idx"] for r in rows] == [1, 4]
    assert [json.loads(r["metadata"])["origin"] for r in rows] == ["x:1", "x:4"]


CHANGES = ["~", "", 0, -1, 1.5, True, 2**64, [], {}, [0], "\ud800", math.nan]


@pytest.mark.parametrize("env", GAMES + ("liveweb",))
def test_every_checked_field_changed_fails(winners, verifiers, env):
    """Each field that decides the verdict, set to each of a few other values, fails the record (one file)."""
    from hostile.test_fuzz import _equivalent, paths_of

    base = as_line(winners[env])
    lines, cases = [], []
    for path in paths_of(base, env):
        for value in CHANGES:
            line = copy.deepcopy(base)
            node = line
            for key in path[:-1]:
                node = node[key]
            old = node[path[-1]]
            if _equivalent(path, old, value):
                continue
            node[path[-1]] = value
            lines.append(json.dumps(line, allow_nan=True).encode())
            cases.append((path, value))
    _, verify_counts, rows = run(b"\n".join(lines), env, verifiers[env])
    assert verify_counts.rows == len(cases)
    assert [c for c, r in zip(cases, rows) if r["passed"]] == []
