"""verify never raises (hypothesis): any reply text, any metadata text, any value in any column."""

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbit.stages.verify import verify_record

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TAGS = st.sampled_from(["<answer>", "</answer>", "<answer>64</answer>", "６４", "٦٤", " ", "\n", "64", "x"])
REPLIES = st.one_of(st.text(max_size=300), st.lists(st.one_of(TAGS, st.text(max_size=8)), max_size=12).map("".join))
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=4), max_leaves=12)


def _check(verifier, record):
    verdict = verifier.verify(record)
    assert isinstance(verdict.score, float) and all(isinstance(r, str) for r in verdict.reasons)
    score, passed, reasons = verify_record(record, verifier, 1.0)
    assert 0.0 <= score <= 1.0 and (passed or reasons)


@SETTINGS
@given(reply=REPLIES)
def test_any_reply(records, verifier, reply):
    record = copy.deepcopy(records[0])
    record["messages"][-1]["content"] = reply
    _check(verifier, record)


@SETTINGS
@given(text=st.one_of(st.text(max_size=200), JSON_VALUES.map(json.dumps), st.binary(max_size=50)))
def test_any_metadata_text(records, verifier, text):
    _check(verifier, {**records[0], "metadata": text})


@SETTINGS
@given(task=st.dictionaries(st.sampled_from(["task", "config", "seed", "size", "index", "level", "x"]), JSON_VALUES,
                            max_size=7))
def test_any_task_spec(records, verifier, task):
    base = json.loads(records[0]["metadata"])["task"]
    _check(verifier, {**records[0], "metadata": json.dumps({"task": {**base, **task}})})


@SETTINGS
@given(column=st.sampled_from(["env", "task_id", "messages", "tools", "metadata", "score"]),
       value=st.one_of(JSON_VALUES, st.binary(max_size=20), st.lists(JSON_VALUES, max_size=4)))
def test_any_value_in_any_column(records, verifier, column, value):
    _check(verifier, {**records[0], column: value})


def test_huge_and_hostile_replies(records, verifier):
    for reply in ("<answer>" + "7" * 150_000 + "</answer>", "<answer>" * 100_000, "x" * 1_000_000 + "<answer>1",
                  "<answer>\ud800</answer>", "<answer>1\x00</answer>"):
        record = copy.deepcopy(records[0])
        record["messages"][-1]["content"] = reply
        _check(verifier, record)
    record = copy.deepcopy(records[0])
    record["messages"][-1]["content"] = "<answer>" + "7" * 150_000 + "</answer>"
    assert verifier.verify(record).reasons == ("answer.too_long",)
    for hostile in (None, [], "record", 3):
        assert verifier.verify(hostile).reasons == ("record.not_object",)


def _reference_answer(text):
    """The answer rules spelled out plainly (what ``extract_answer``'s fast path must agree with)."""
    from orbit.envs.reasoning_gym import answers as a

    start = text.find(a.OPEN)
    if start < 0:
        return None, a.MISSING
    inner = start + len(a.OPEN)
    second, end = text.find(a.OPEN, inner), text.find(a.CLOSE, inner)
    if second >= 0:
        return None, a.NESTED if end < 0 or second < end else a.MULTIPLE
    if end < 0:
        return None, a.UNCLOSED
    if text.count(a.CLOSE) != 1:
        return None, a.MULTIPLE
    if text[end + len(a.CLOSE):].strip(a.ASCII_SPACE):
        return None, a.NOT_FINAL
    answer = text[inner:end].strip(a.ASCII_SPACE)
    return (answer, None) if len(answer) <= a.MAX_ANSWER_CHARS else (None, a.TOO_LONG)


@SETTINGS
@given(reply=REPLIES)
def test_the_answer_reader_follows_its_rules(reply):
    from orbit.envs.reasoning_gym.answers import extract_answer

    assert extract_answer(reply) == _reference_answer(reply)
    assert extract_answer(reply + "</answer>") == _reference_answer(reply + "</answer>")
