"""The math family: the sample set, teacher rows through the verify stage, answers, task files, rewards."""

import asyncio
import json

import pyarrow as pa
import pytest

from orbit.envs import EnvSpec, GenerationRequest, env_spec, envs, family_of
from orbit.envs.math import answers
from orbit.envs.math.family import FAMILY
from orbit.envs.math.sample import SAMPLE_SIZE, sample_problems
from orbit.envs.math.tasks import SYSTEM_PROMPT, load_tasks, prompt_messages
from orbit.envs.registry import EnvsFileError, registry
from orbit.io.schema import RECORD_SCHEMA, message
from orbit.policies.base import Turn
from orbit.stages.verify import VerifyCounts, verify_batch, verify_record

SPEC = env_spec("math_sample")


def _request(num_tasks=40, samples=1, round_key="r0001", spec=SPEC):
    return GenerationRequest(env=spec, round_key=round_key, num_tasks=num_tasks, samples_per_task=samples,
                             base_seed=3, workers=1)


def _rows(request):
    return pa.Table.from_batches(list(FAMILY.generate(request)), schema=RECORD_SCHEMA).to_pylist()


def _with_reply(row, text):
    messages = [dict(m) for m in row["messages"]]
    messages[-1]["content"] = text
    return {**row, "messages": messages}


@pytest.fixture(scope="module")
def verifier():
    return FAMILY.verifier(SPEC)


def test_registered_by_default():
    assert envs()["math_sample"].family == "math"
    assert family_of(SPEC) is FAMILY
    v = FAMILY.verifier(SPEC)
    assert (v.name, v.version, v.parallel_safe) == ("math_verify", "1", False)


def test_sample_set_is_generated_the_same_every_time():
    first = sample_problems()
    assert len(first) == SAMPLE_SIZE == len({p["id"] for p in first})
    assert first == sample_problems()
    assert first[4]["answer"].startswith("x^2")  # an expansion


def test_generation_is_deterministic_and_rounds_differ():
    a, b = _rows(_request()), _rows(_request())
    assert a == b and len(a) == 40 and len({r["task_id"] for r in a}) == 40
    other = _rows(_request(round_key="r0002"))
    assert {r["task_id"] for r in other} != {r["task_id"] for r in a}
    row = a[0]
    meta = json.loads(row["metadata"])
    assert row["source"] == "teacher" and row["score"] == 1.0
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert meta["task"]["id"] == row["task_id"] and set(meta["task"]) == {"id", "answer", "digest"}


def test_teacher_rows_pass_through_the_verify_stage(verifier):
    rows = _rows(_request(num_tasks=60, samples=2))
    counts = VerifyCounts()
    out = verify_batch(pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA), verifier, SPEC.pass_threshold, counts)
    assert counts.passed == 120 and counts.failed == 0, counts.reasons
    assert set(out.column("verifier").to_pylist()) == {"math_verify@1"}


def test_equivalent_answers_pass_and_wrong_ones_fail(verifier):
    tasks = load_tasks(None)
    frac = next(t for t in tasks.tasks if t.answer == "\\frac{3}{4}" or t.answer.startswith("\\frac{"))
    row = next(r for r in _rows(_request(num_tasks=SAMPLE_SIZE)) if r["task_id"] == frac.task_id)
    num, den = frac.answer[6:-1].split("}{")
    decimal = f"{int(num) / int(den):.10f}".rstrip("0")
    cases = {
        f"So it is \\boxed{{{frac.answer}}}.": (1.0, ()),
        f"<answer>{frac.answer}</answer>": (1.0, ()),
        f"<answer>\\boxed{{{frac.answer}}}</answer>\n": (1.0, ()),
        f"Decimal: $\\boxed{{{decimal}}}$": (1.0, ()),
        "\\boxed{123456789}": (0.0, ("answer.wrong",)),
        f"\\boxed{{{frac.answer}}} or maybe \\boxed{{1}}": (0.0, ("answer.multiple",)),
        f"{frac.answer}": (0.0, ("answer.missing",)),
        f"<answer>{frac.answer}</answer> more": (0.0, ("answer.not_final",)),
    }
    records = [_with_reply(row, text) for text in cases]
    verdicts = verifier.verify_many(records)
    for (text, want), got in zip(cases.items(), verdicts):
        assert (got.score, got.reasons) == want, text
    assert verifier.verify(records[0]).score == 1.0  # record by record too


def test_the_record_is_not_trusted(verifier):
    row = _rows(_request(num_tasks=1))[0]
    meta = json.loads(row["metadata"])
    forged = dict(meta, task={**meta["task"], "answer": "42"})
    cases = {
        "task.env_mismatch": {**row, "metadata": json.dumps(forged)},
        "task.unknown": {**row, "metadata": json.dumps(dict(meta, task={**meta["task"], "id": "nope"}))},
        "task.spec_invalid": {**row, "metadata": json.dumps({"task": "x"})},
        "task.id_mismatch": {**row, "task_id": "other"},
        "record.env_mismatch": {**row, "env": "tic_tac_toe"},
        "prompt.mismatch": {**row, "messages": [row["messages"][0], message("user", "1+1?"), row["messages"][2]]},
        "prompt.system_mismatch": {**row, "messages": [message("system", "be nice")] + row["messages"][1:]},
        "trajectory.turn_order": {**row, "messages": row["messages"][1:]},
        "record.tools_mismatch": {**row, "tools": "[]"},
    }
    for reason, record in cases.items():
        verdict = verifier.verify(record)
        assert verdict.score == 0.0 and verdict.reasons == (reason,), reason


def test_final_answer_rules():
    assert answers.final_answer("x \\boxed{\\frac{1}{2}} y") == ("\\frac{1}{2}", None)
    assert answers.final_answer("\\boxed{\\{1, 2\\}}") == ("\\{1, 2\\}", None)
    assert answers.final_answer("\\boxed{1} \\boxed{1}") == (None, "answer.multiple")
    assert answers.final_answer("\\boxed{1") == (None, "answer.unclosed")
    assert answers.final_answer("\\boxed{ }") == (None, "answer.empty")
    assert answers.final_answer("<answer>1</answer><answer>2</answer>") == (None, "answer.multiple")
    assert answers.final_answer("<answer>1") == (None, "answer.unclosed")
    assert answers.final_answer("\\boxed{" + "{" * 60 + "1" + "}" * 60 + "}") == (None, "answer.too_deep")
    assert answers.final_answer("\\boxed{" + "1" * 3000 + "}") == (None, "answer.too_long")
    assert answers.final_answer(None) == (None, "answer.missing")


def test_policy_rollout_and_a_failed_request():
    task = FAMILY.policy_tasks(_request(num_tasks=2))[0][1]

    async def good(messages, tools, step, seed, decoding=None):
        assert messages == prompt_messages(task) and decoding.max_tokens == 1024
        return Turn(message=message("assistant", f"Thinking... \\boxed{{{task.answer}}}"), completion_tokens=7)

    async def broken(messages, tools, step, seed, decoding=None):
        return Turn.failed("endpoint.timeout")

    record = asyncio.run(FAMILY.rollout(_request(), task, 0, "p", good, {"sampling": {"strategy": "fixed"}}))
    assert record["source"] == "policy" and record["score"] is None
    verifier = FAMILY.verifier(SPEC)
    assert verify_record(record, verifier, 1.0) == (1.0, True, [])
    failed = asyncio.run(FAMILY.rollout(_request(), task, 1, "p", broken))
    score, passed, reasons = verify_record(failed, verifier, 1.0)
    assert (score, passed, reasons[0]) == (0.0, False, "endpoint.timeout")


def test_reward_scores_a_right_and_a_wrong_completion():
    from orbit import rewards

    row = _rows(_request(num_tasks=1))[0]
    spec = json.loads(row["metadata"])["task"]
    prompt = [{"role": m["role"], "content": m["content"]} for m in row["messages"][:2]]
    good = rewards.reward_func([f"\\boxed{{{spec['answer']}}}", "\\boxed{987654321}"], [prompt, prompt],
                               env=["math_sample"] * 2, task_spec=[json.dumps(spec)] * 2, task_id=[row["task_id"]] * 2)
    assert good == [1.0, 0.0]
    assert rewards.LAST_REASONS[1] == ["answer.wrong"]


def _write(path, lines):
    path.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    return path


def test_tasks_file_env(tmp_path, monkeypatch):
    tasks = _write(tmp_path / "math.jsonl", [{"problem": "What is 2+2?", "answer": "4"},
                                            {"id": "half", "problem": "Half of one?", "answer": "\\frac{1}{2}"},
                                            {"problem": "Pi to 2 places?", "answer": 3.14}])
    envs_file = tmp_path / "envs.toml"
    envs_file.write_text(f'[envs.my_math]\nfamily = "math"\ntasks_file = "{tasks}"\nverify_timeout = 3\n')
    monkeypatch.setenv("ORBIT_ENVS_FILE", str(envs_file))
    spec = registry().envs["my_math"]
    rows = _rows(_request(num_tasks=10, spec=spec))
    assert len(rows) == 3 and "half" in {r["task_id"] for r in rows}
    verifier = FAMILY.verifier(spec)
    assert [v.score for v in verifier.verify_many(rows)] == [1.0, 1.0, 1.0]
    assert verifier.timeout == 3.0


@pytest.mark.parametrize("lines, key, words", [
    ([{"problem": "x"}], "tasks_file", ":1: answer must be"),
    ([{"problem": "a", "answer": "1"}, "{not json"], "tasks_file", ":2: not JSON"),
    ([{"id": "a", "problem": "a", "answer": "1"}, {"id": "a", "problem": "b", "answer": "2"}], "tasks_file",
     "id 'a' repeats line 1"),
    ([{"problem": "a", "answer": "1", "hint": "no"}], "tasks_file", "unknown key 'hint'"),
    ([], "tasks_file", "holds no task"),
])
def test_a_bad_tasks_file_is_refused_naming_the_line(tmp_path, monkeypatch, lines, key, words):
    tasks = _write(tmp_path / "bad.jsonl", lines)
    envs_file = tmp_path / "envs.toml"
    envs_file.write_text(f'[envs.bad_math]\nfamily = "math"\ntasks_file = "{tasks}"\n')
    monkeypatch.setenv("ORBIT_ENVS_FILE", str(envs_file))
    with pytest.raises(EnvsFileError) as err:
        registry()
    assert err.value.env == "bad_math" and err.value.key == key and words in str(err.value)


def test_bad_options_are_refused():
    with pytest.raises(Exception) as err:
        FAMILY.check(EnvSpec(name="m", family="math", description="", options={"verify_timeout": -1}))
    assert err.value.key == "verify_timeout"
    with pytest.raises(Exception) as err:
        FAMILY.check(EnvSpec(name="m", family="math", description="", options={"tasks_file": "/nonexistent.jsonl"}))
    assert err.value.key == "tasks_file"
    with pytest.raises(Exception) as err:
        FAMILY.check(EnvSpec(name="m", family="math", description="", options={"colour": "red"}))
    assert err.value.key == "colour"


def test_system_prompt_asks_for_the_answer_format():
    assert "\\boxed{" in SYSTEM_PROMPT and "<answer>" in SYSTEM_PROMPT
