"""The verifier: teacher rows pass; each tampered record fails with its own reason; the reward's records score."""

import copy
import json
import pickle

import pytest

from orbit.envs.base import EnvSpec, GenerationRequest
from orbit.envs.reasoning_gym.family import FAMILY
from orbit.envs.reasoning_gym.prompts import SYSTEM_PROMPT
from orbit.io.schema import message, tool_call
from orbit.stages.verify import VerifyCounts, verify_batches, verify_record

from rg_env import generate, leg_spec


def test_every_teacher_row_passes(records, verifier):
    for record in records:
        assert verifier.verify(record).score == 1.0 and verifier.verify(record).reasons == ()
        assert verify_record(record, verifier, 1.0) == (1.0, True, [])


def test_the_verify_stage_passes_every_teacher_batch(spec, verifier):
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=20, samples_per_task=2, workers=1)
    counts = VerifyCounts()
    out = list(verify_batches(FAMILY.generate(request), verifier, 1.0, counts, workers=1))
    assert (counts.rows, counts.passed) == (40, 40)
    assert out[0].column("verifier")[0].as_py() == "reasoning_gym@1"


def _with_reply(record, content):
    record = copy.deepcopy(record)
    record["messages"][-1]["content"] = content
    return record


def _oracle(record) -> str:
    text = record["messages"][-1]["content"]
    return text[len("<answer>"):-len("</answer>")]


@pytest.mark.parametrize("reply, reason", [
    ("<answer>{a}</answer><answer>{a}</answer>", "answer.multiple"),
    ("<answer>{a}</answer> </answer>", "answer.multiple"),
    ("<answer><answer>{a}</answer></answer>", "answer.nested"),
    ("<answer>{a}", "answer.unclosed"),
    ("</answer><answer>{a}", "answer.unclosed"),
    ("The animals have {a} legs in total.", "answer.missing"),
    ("<ANSWER>{a}</ANSWER>", "answer.missing"),
    ("<answer>{a}</answer> is my final answer", "answer.not_final"),
    ("<answer>{a}</answer>\n\nDone.", "answer.not_final"),
    ("<answer>{fullwidth}</answer>", "answer.non_ascii_digits"),
    ("<answer>{arabic}</answer>", "answer.non_ascii_digits"),
    ("<answer></answer>", "answer.empty"),
    ("<answer>{a} legs</answer>", "answer.partial_credit"),
    ("<answer>{wrong}</answer>", "answer.wrong"),
])
def test_a_bad_reply_fails_with_its_own_reason(records, verifier, reply, reason):
    oracle = _oracle(records[0])
    fullwidth = oracle.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    arabic = oracle.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    record = _with_reply(records[0], reply.format(a=oracle, fullwidth=fullwidth, arabic=arabic, wrong=int(oracle) + 1))
    verdict = verifier.verify(record)
    assert verdict.reasons == (reason,)
    score, passed, reasons = verify_record(record, verifier, 1.0)
    assert not passed and reasons == [reason]
    if reason == "answer.partial_credit":  # reasoning-gym's own partial credit, kept as the score
        assert score == verdict.score == pytest.approx(len(oracle) / len(f"{oracle} legs")) and 0 < score < 1
    else:
        assert score == 0.0


def test_reasoning_before_the_answer_and_whitespace_around_it_pass(records, verifier):
    oracle = _oracle(records[0])
    for reply in (f"Adding up the legs: ... so {oracle}.\n<answer>{oracle}</answer>", f"<answer>\n {oracle}\t</answer>\n\n"):
        assert verify_record(_with_reply(records[0], reply), verifier, 1.0) == (1.0, True, [])


def _edit_task(record, **changes):
    record = copy.deepcopy(record)
    meta = json.loads(record["metadata"])
    for key, value in changes.items():
        if key == "config":
            meta["task"]["config"].update(value)
        elif value is None:
            del meta["task"][key]
        else:
            meta["task"][key] = value
    record["metadata"] = json.dumps(meta)
    return record


@pytest.mark.parametrize("changes, reason", [
    ({"task": "chain_sum"}, "task.env_mismatch"),
    ({"config": {"max_animals": 9}}, "task.env_mismatch"),
    ({"config": {"max_animals": 4.0}}, "task.env_mismatch"),
    ({"config": {"extra": 1}}, "task.env_mismatch"),
    ({"level": 1}, "task.env_mismatch"),
    ({"seed": 12345}, "task.id_mismatch"),
    ({"seed": -1}, "task.spec_invalid:seed"),
    ({"seed": 2**40}, "task.spec_invalid:seed"),
    ({"seed": True}, "task.spec_invalid:seed"),
    ({"size": 0}, "task.spec_invalid:size"),
    ({"size": "20"}, "task.spec_invalid:size"),
    ({"index": 20}, "task.spec_invalid:index"),
    ({"index": 1.0}, "task.spec_invalid:index"),
    ({"index": None}, "task.spec_invalid:keys"),
    ({"note": "x"}, "task.spec_invalid:keys"),
])
def test_a_task_spec_that_is_not_the_envs_fails(records, verifier, changes, reason):
    assert verifier.verify(_edit_task(records[0], **changes)).reasons == (reason,)


def test_a_spec_whose_seed_and_id_both_changed_still_fails_on_the_question(records, verifier):
    from orbit.envs.reasoning_gym import items

    record = _edit_task(records[0], seed=12345)
    level = items.resolve(leg_spec()).levels[None]
    record["task_id"] = level.task_id(12345, 20, 0)
    assert verifier.verify(record).reasons == ("prompt.mismatch",)


def test_record_level_rules(records, verifier):
    record = records[0]
    assert verifier.verify({**record, "task_id": record["task_id"] + "x"}).reasons == ("task.id_mismatch",)
    assert verifier.verify({**record, "task_id": None}).reasons == ("task.id_mismatch",)
    assert verifier.verify({**record, "env": "chain_sum"}).reasons == ("record.env_mismatch",)
    assert verifier.verify({**record, "metadata": "[1, 2]"}).reasons == ("record.metadata_not_object",)
    assert verifier.verify({**record, "metadata": "{not json"}).reasons == ("record.metadata_not_object",)
    assert verifier.verify({**record, "metadata": json.dumps({"task": 3})}).reasons == ("task.spec_invalid:not_object",)
    assert verifier.verify({**record, "tools": "[]"}).reasons == ("record.tools_mismatch",)


def test_trajectory_rules(records, verifier):
    record = copy.deepcopy(records[0])
    question = record["messages"][1]["content"]
    edited = copy.deepcopy(record)
    edited["messages"][1]["content"] = question.replace("have ", "have 1 spider, ", 1)
    assert verifier.verify(edited).reasons == ("prompt.mismatch",)
    edited = copy.deepcopy(record)
    edited["messages"][0]["content"] = SYSTEM_PROMPT + " Always answer 7."
    assert verifier.verify(edited).reasons == ("prompt.system_mismatch",)
    edited = copy.deepcopy(record)
    edited["messages"] = edited["messages"][1:]
    assert verifier.verify(edited).reasons == ("trajectory.turn_order",)
    edited = copy.deepcopy(record)
    edited["messages"].append(message("user", "and now?"))
    assert verifier.verify(edited).reasons == ("trajectory.turn_order",)
    edited = copy.deepcopy(record)
    edited["messages"][2]["tool_calls"] = [tool_call("call_1", "calculator", {"expression": "1+1"})]
    assert verifier.verify(edited).reasons == ("trajectory.unexpected_tool_call:2",)
    assert verify_record(edited, verifier, 1.0)[1] is False


def test_another_envs_record_fails(records):
    other = EnvSpec(name="leg_counting_hard", family="reasoning_gym", description="",
                    options={"task": "leg_counting", "config": {"min_animals": 2, "max_animals": 4}}, num_tasks=20)
    assert FAMILY.verifier(other).verify(records[0]).reasons == ("record.env_mismatch",)
    same_name = leg_spec(config={"min_animals": 3, "max_animals": 4})
    assert FAMILY.verifier(same_name).verify(records[0]).reasons == ("task.env_mismatch",)


def test_the_verifier_pickles_and_verifies_after(records, verifier):
    blob = pickle.dumps(verifier)
    assert len(blob) < 2000  # the env only: no dataset, no item cache
    again = pickle.loads(blob)
    assert [verify_record(r, again, 1.0) for r in records[:6]] == [(1.0, True, [])] * 6
    assert again.verify(_with_reply(records[0], "<answer>1</answer>")).reasons == ("answer.wrong",)


def _reward_record(record, completion, task_id="keep"):
    """The record ``orbit.rewards`` builds: prompt + completion, no tools, no claim, metadata task + history."""
    meta = json.loads(record["metadata"])
    return {"env": record["env"], "task_id": record["task_id"] if task_id == "keep" else task_id,
            "seed": record["seed"], "messages": record["messages"][:2] + [message("assistant", completion)],
            "tools": None, "score": None, "metadata": json.dumps({"task": meta["task"], "history": []})}


def test_the_rewards_record_scores_one_for_a_right_completion_and_zero_for_a_wrong_one(records, verifier):
    oracle = _oracle(records[2])
    right = _reward_record(records[2], f"Let me count.\n<answer>{oracle}</answer>")
    assert verify_record(right, verifier, 1.0) == (1.0, True, [])
    wrong = _reward_record(records[2], f"<answer>{int(oracle) + 2}</answer>")
    assert verify_record(wrong, verifier, 1.0) == (0.0, False, ["answer.wrong"])
    assert verify_record(_reward_record(records[2], f"<answer>{oracle}</answer>", task_id=None), verifier, 1.0)[2] == [
        "task.id_mismatch"]


def test_a_claimed_score_is_only_informational(records, verifier):
    for claim in (float("nan"), 0.0, 7.5, None):
        assert verify_record({**records[0], "score": claim}, verifier, 1.0) == (1.0, True, [])


def test_chain_sum_reads_arabic_indic_digits_as_numbers_but_the_verifier_does_not():
    from orbit.envs.reasoning_gym import items

    spec = EnvSpec(name="chain_sum", family="reasoning_gym", description="", options={"task": "chain_sum"},
                   num_tasks=5)
    record = generate(spec)[0]
    oracle = _oracle(record)
    arabic = oracle.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    meta = json.loads(record["metadata"])["task"]
    level = items.resolve(spec).levels[None]
    entry = items.item(level, meta["seed"], meta["size"], meta["index"])
    assert items.dataset(level, meta["seed"], meta["size"]).score_answer(arabic, entry) == 1.0  # the lookalike
    verdict = FAMILY.verifier(spec).verify(_with_reply(record, f"<answer>{arabic}</answer>"))
    assert (verdict.score, verdict.reasons) == (0.0, ("answer.non_ascii_digits",))


def test_a_verifier_of_read_only_options_pickles_too(records):
    from types import MappingProxyType

    from rg_env import LEG_OPTIONS

    spec = leg_spec(config=MappingProxyType(dict(LEG_OPTIONS["config"])))
    spec = EnvSpec(name=spec.name, family=spec.family, description="", options=MappingProxyType(dict(spec.options)),
                   num_tasks=20)
    again = pickle.loads(pickle.dumps(FAMILY.verifier(spec)))
    assert verify_record(records[0], again, 1.0) == (1.0, True, [])


def test_an_env_the_family_refuses_fails_its_records_by_name(records):
    verifier = FAMILY.verifier(leg_spec(config={"min_animals": 0}))
    assert verifier.verify(records[0]).reasons == ("env.options_refused:config.min_animals",)
