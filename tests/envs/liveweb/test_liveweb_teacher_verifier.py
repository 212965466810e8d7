"""Teacher trajectories pass the trace verifier; tampered ones fail with the right reason."""

import copy
import json

import pytest

from orbit.envs.liveweb.teacher import TEACHER_POLICY, Teacher, teacher_records
from orbit.envs.liveweb.tools import SYSTEM_PROMPT, TOOL_SCHEMAS
from orbit.envs.liveweb.verifier import TraceVerifier
from orbit.io.schema import message, tool_call
from orbit.stages.verify import structural_reasons, verify_record

ROUND = "r0000"


@pytest.fixture(scope="module")
def records(demo_cache):
    """200 teacher records, 50 each of 1, 2, 3 and 4 subtasks."""
    teacher = Teacher(demo_cache)
    rows = []
    for count in (1, 2, 3, 4):
        rows += teacher_records(teacher, range(count * 1000, count * 1000 + 50), count, "liveweb", ROUND, 1)
    return rows


@pytest.fixture(scope="module")
def verifier(demo_cache):
    return TraceVerifier(demo_cache)


def _calls(record):
    return [c["function"] for m in record["messages"] if m["tool_calls"] for c in m["tool_calls"]]


def test_every_teacher_trajectory_passes(records, verifier):
    assert len(records) == 200
    for record in records:
        verdict = verifier.verify(record)
        assert verdict.score == 1.0 and verdict.reasons == (), (record["task_id"], verdict)
        assert verify_record(record, verifier, 1.0) == (1.0, True, [])


def test_teacher_records_have_the_documented_shape(records):
    for record in records:
        assert record["source"] == "teacher" and record["policy"] == TEACHER_POLICY and record["env"] == "liveweb"
        assert json.loads(record["tools"]) == json.loads(json.dumps(TOOL_SCHEMAS, sort_keys=True))
        messages = record["messages"]
        assert messages[0]["role"] == "system" and messages[0]["content"] == SYSTEM_PROMPT
        assert messages[1]["role"] == "user"
        spec = json.loads(record["metadata"])["task"]
        assert spec["seed"] == record["seed"] and 1 <= len(spec["subtasks"]) <= 4
        for number, (call_msg, result) in enumerate(zip(messages[2::2], messages[3::2]), 1):
            assert call_msg["role"] == "assistant" and len(call_msg["tool_calls"]) == 1
            call = call_msg["tool_calls"][0]
            assert call["id"] == f"call_{number:04d}"
            assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
            assert result["name"] == call["function"]["name"]
        assert _calls(record)[-1]["name"] == "stop"
        assert messages[2]["content"].startswith("Question 1: ")


def test_teacher_navigates_by_links_and_search_forms_and_answers_from_what_it_saw(records):
    used = set()
    for record in records:
        names = [c["name"] for c in _calls(record)]
        used.update(names)
        assert "click" in names or "type" in names
        observations = "\n".join(m["content"] for m in record["messages"] if m["role"] == "tool")
        answers = json.loads(_calls(record)[-1]["arguments"])["answers"]
        for answer in answers:
            assert answer in observations
    assert used == {"goto", "click", "type", "scroll", "view_more", "stop"}


def test_teacher_is_deterministic(demo_cache, records):
    again = teacher_records(Teacher(demo_cache), range(2000, 2050), 2, "liveweb", ROUND, 1)
    assert again == records[50:100]


def _tamper(record, edit):
    record = copy.deepcopy(record)
    edit(record["messages"])
    return record


def _reason_ids(verdict):
    return [reason.split(":", 1)[0] for reason in verdict.reasons]


def _first_tool(messages, name=None):
    return next(i for i, m in enumerate(messages) if m["role"] == "tool" and (name is None or m["name"] == name))


def _two_subtask_record(records):
    return next(r for r in records if len(json.loads(r["metadata"])["task"]["subtasks"]) == 2)


def _fabricate(messages):
    i = _first_tool(messages, "goto")
    messages[i]["content"] = messages[i]["content"].replace("[page]", "[page] Totally real:")


def _unknown_tool(messages):
    i = _first_tool(messages) - 1
    messages[i]["tool_calls"][0]["function"]["name"] = "teleport"


def _bad_json(messages):
    messages[2]["tool_calls"][0]["function"]["arguments"] = '{"url": "https://stockquotes.test/"'


def _drop_stop(messages):
    del messages[-2:]


def _unmatched_id(messages):
    messages[_first_tool(messages)]["tool_call_id"] = "call_9999"


def _goto_outside(messages):
    call = tool_call("call_0999", "goto", {"url": "https://www.example.com/"})
    result = ("Error (navigation.outside_cache): https://www.example.com/ is not in the page cache")
    messages[-2:-2] = [message("assistant", None, tool_calls=[call]),
                       message("tool", result, tool_call_id="call_0999", name="goto")]


@pytest.mark.parametrize("edit, reason", [
    (_fabricate, "observation.fabricated"),
    (_unknown_tool, "tool.unknown"),
    (_bad_json, "tool.arguments_not_json"),
    (_drop_stop, "trajectory.missing_stop"),
    (_unmatched_id, "tool_call_id.unmatched"),
    (_goto_outside, "navigation.outside_cache"),
])
def test_tampered_trajectories_fail_with_the_named_reason(records, verifier, edit, reason):
    record = _tamper(records[60], edit)
    verdict = verifier.verify(record)
    assert verdict.score == 0.0
    assert reason in _reason_ids(verdict), verdict
    score, passed, reasons = verify_record(record, verifier, 1.0)
    assert not passed and score == 0.0 and reasons


def test_unparsable_arguments_fail_the_structural_check_too(records, verifier):
    record = _tamper(records[60], _bad_json)
    assert structural_reasons(record) == ["tool_call.arguments_not_json:2"]
    assert verify_record(record, verifier, 1.0) == (0.0, False, ["tool_call.arguments_not_json:2"])


def test_wrong_answer_scores_the_other_questions(records, verifier):
    record = _two_subtask_record(records)

    def wrong_first(messages):
        function = messages[-2]["tool_calls"][0]["function"]
        answers = json.loads(function["arguments"])["answers"]
        function["arguments"] = json.dumps({"answers": ["definitely wrong", answers[1]]})

    verdict = verifier.verify(_tamper(record, wrong_first))
    assert verdict.score == 0.5 and verdict.reasons == ("answer.wrong:1",)
    assert verify_record(_tamper(record, wrong_first), verifier, 1.0) == (0.5, False, ["answer.wrong:1"])


def test_answers_may_be_an_object_keyed_by_question_number(records, verifier):
    record = _two_subtask_record(records)

    def as_object(messages):
        function = messages[-2]["tool_calls"][0]["function"]
        answers = json.loads(function["arguments"])["answers"]
        function["arguments"] = json.dumps({"answers": {"2": answers[1]}})
        messages[-1]["content"] = "Episode finished with 1 answer(s)."

    verdict = verifier.verify(_tamper(record, as_object))
    assert verdict.score == 0.5 and verdict.reasons == ("answer.missing:1",)


def test_spec_and_prompt_must_match_the_seed(records, verifier):
    record = copy.deepcopy(records[60])
    metadata = json.loads(record["metadata"])
    metadata["task"]["subtasks"][0]["params"] = {"symbol": "FAKE"}
    record["metadata"] = json.dumps(metadata)
    assert verifier.verify(record).reasons == ("task.spec_invalid",)

    def other_question(messages):
        messages[1]["content"] = messages[1]["content"].replace("1.", "1. Ignore this:", 1)

    assert verifier.verify(_tamper(records[60], other_question)).reasons == ("task.prompt_mismatch",)
    record = copy.deepcopy(records[60])
    record["metadata"] = json.dumps({"task": {"seed": "x"}})
    assert verifier.verify(record).reasons == ("task.spec_invalid",)


def test_a_recoverable_mistake_does_not_fail_the_trace(records, verifier):
    def misclick(messages):
        call = tool_call("call_0998", "click", {"selector": "L9999"})
        messages[4:4] = [message("assistant", None, tool_calls=[call]),
                         message("tool", "Error (action.invalid): no element L9999 on this page that accepts "
                                         "this action", tool_call_id="call_0998", name="click")]

    assert verifier.verify(_tamper(records[60], misclick)).score == 1.0
