"""A record passes only if every message is what its env would have written for that trajectory.

Three kinds of hostile record used to reach the filtered set: answers only a lenient integer parse
reads as the listed ID, message fields the env never writes (control characters in them), and an empty
assistant turn in the middle of a tool-use trace. Each variant of a real winning record goes through
the verify stage's own batch path (plain rows column-wise, the rest by rule) and must fail with a reason;
the untouched record must still pass, so each failure is the variant's.
"""

import copy
import json

import pyarrow as pa
import pytest

from orbit.envs import env_spec
from orbit.io.schema import RECORD_SCHEMA
from orbit.stages.verify import verify_batch

GAMES = ("tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker")
LENIENT = ["0{}", "+{}", "{}\u00a0", "\u2028{}", "<answer>0{}</answer>", '{{"move": " {} "}}', '{{"move": "0{}"}}',
           '{{"move": {}, "move": {}}}']
DIGITS = {"arabic-indic": "\u0660", "fullwidth": "\uff10", "devanagari": "\u0966"}


def _verify(env, records, verifiers):
    batch = verify_batch(pa.RecordBatch.from_pylist(records, schema=RECORD_SCHEMA), verifiers[env],
                         env_spec(env).pass_threshold)
    return batch.to_pylist()


def _answers(record):
    return [i for i, m in enumerate(record["messages"]) if m["role"] == "assistant"]


@pytest.mark.parametrize("env", GAMES)
def test_answers_a_lenient_integer_parse_reads_fail(env, winners, verifiers):
    record = winners[env]
    variants = []
    for form in LENIENT:
        v = copy.deepcopy(record)
        i = _answers(v)[0]
        v["messages"][i]["content"] = form.format(*[v["messages"][i]["content"]] * form.count("{}"))
        variants.append(v)
    for name, zero in DIGITS.items():  # the same ID in another script's digits
        v = copy.deepcopy(record)
        i = _answers(v)[0]
        v["messages"][i]["content"] = "".join(chr(ord(zero) + int(c)) for c in v["messages"][i]["content"])
        variants.append(v)
    rows = _verify(env, [record] + variants, verifiers)
    assert rows[0]["passed"], rows[0]["reasons"]
    for v, row in zip(variants, rows[1:]):
        assert not row["passed"] and row["reasons"], (v["messages"][_answers(v)[0]]["content"], row["reasons"])


@pytest.mark.parametrize("env", GAMES + ("liveweb",))
def test_message_fields_the_env_never_writes_fail(env, winners, verifiers):
    record = winners[env]
    variants = []
    for i, m in enumerate(record["messages"]):
        if m["role"] in ("system", "user", "assistant"):
            v = copy.deepcopy(record)
            v["messages"][i]["name"] = "\x07bell\x00"
            variants.append(v)
        if m["role"] == "tool":
            v = copy.deepcopy(record)
            v["messages"][i]["name"] = m["name"] + "\x1b[0m"
            variants.append(v)
        if m["role"] in ("user", "tool"):
            v = copy.deepcopy(record)
            v["messages"][i]["tool_calls"] = [{"id": "call_x", "type": "function",
                                               "function": {"name": "stop", "arguments": "{}"}}]
            variants.append(v)
        for call in m.get("tool_calls") or []:
            v = copy.deepcopy(record)
            next(c for c in v["messages"][i]["tool_calls"] if c["id"] == call["id"])["type"] = "function\r"
            variants.append(v)
    rows = _verify(env, [record] + variants, verifiers)
    assert rows[0]["passed"], rows[0]["reasons"]
    assert len(variants) >= 3
    for row in rows[1:]:
        assert not row["passed"] and row["reasons"], row["reasons"]


@pytest.mark.parametrize("content", [None, "", "   ", "\n\t"])
def test_an_empty_assistant_turn_in_a_tool_use_trace_fails(content, winners, verifiers):
    record = winners["liveweb"]
    tools = [i for i, m in enumerate(record["messages"]) if m["role"] == "tool"]
    variants = []
    for i in tools[:-1]:  # after each tool reply but the last: the middle of the trace
        v = copy.deepcopy(record)
        v["messages"].insert(i + 1, {"role": "assistant", "content": content, "tool_calls": None,
                                     "tool_call_id": None, "name": None})
        variants.append(v)
    assert variants
    rows = _verify("liveweb", [record] + variants, verifiers)
    assert rows[0]["passed"], rows[0]["reasons"]
    for row in rows[1:]:
        assert not row["passed"] and any(r.startswith("message.empty_turn") for r in row["reasons"]), row["reasons"]


def test_the_game_records_generated_stay_canonical(winners, verifiers):
    """Nothing the generators write trips the rules: a whole self-play partition still verifies as before."""
    from helpers import generate

    for env in GAMES:
        rows = generate(env, n=20, samples=2)
        verified = _verify(env, rows, verifiers)
        assert all(set(r["reasons"]) <= {"score.below_threshold"} for r in verified), env
        assert [r["score"] for r in verified] == [r["score"] for r in rows]
        assert all(json.loads(r["metadata"]) for r in rows)
