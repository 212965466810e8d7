"""The code family: the shipped sample set, teacher rows through the verify stage, reasons, task files,
the reward."""

import asyncio
import json

import pyarrow as pa
import pytest

from orbit.envs import EnvSpec, GenerationRequest, env_spec, envs, family_of
from orbit.envs.code.extract import extract_code
from orbit.envs.code.family import FAMILY
from orbit.envs.code.tasks import SYSTEM_PROMPT, load_tasks, matches, prompt_messages, teacher_completion
from orbit.envs.registry import EnvsFileError, registry
from orbit.io.schema import RECORD_SCHEMA, message
from orbit.policies.base import Turn
from orbit.stages.verify import VerifyCounts, verify_batch, verify_record

SPEC = env_spec("code_sample")


def _request(num_tasks=31, samples=1, round_key="r0001", spec=SPEC):
    return GenerationRequest(env=spec, round_key=round_key, num_tasks=num_tasks, samples_per_task=samples,
                             base_seed=5, workers=1)


def _rows(request):
    return pa.Table.from_batches(list(FAMILY.generate(request)), schema=RECORD_SCHEMA).to_pylist()


def _task_row(task_id):
    return next(r for r in _rows(_request()) if r["task_id"] == task_id)


def _with_code(row, code, fenced=True):
    messages = [dict(m) for m in row["messages"]]
    messages[-1]["content"] = teacher_completion(code) if fenced else code
    return {**row, "messages": messages}


@pytest.fixture(scope="module")
def verifier():
    return FAMILY.verifier(SPEC)


def test_registered_by_default_with_about_thirty_tasks():
    assert envs()["code_sample"].family == "code" and family_of(SPEC) is FAMILY
    tasks = load_tasks(None).tasks
    assert len(tasks) >= 30 and all(t.solution for t in tasks)
    assert all(len(t.tests) >= 4 for t in tasks)
    v = FAMILY.verifier(SPEC)
    assert (v.name, v.version, v.parallel_safe) == ("code_tests", "1", False)


def test_every_teacher_row_passes_in_the_sandbox(verifier):
    rows = _rows(_request(samples=2))
    assert len(rows) == 62
    counts = VerifyCounts()
    out = verify_batch(pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA), verifier, 1.0, counts)
    assert counts.passed == 62 and counts.failed == 0, counts.reasons
    assert set(out.column("verifier").to_pylist()) == {"code_tests@1"}
    row = rows[0]
    assert json.loads(row["metadata"])["task"] == {"id": row["task_id"], "digest": load_tasks(None).by_id[row["task_id"]].digest}
    assert "tests" not in row["metadata"] and "expected" not in row["metadata"]  # the tests stay with the env


def test_each_failure_has_its_reason(verifier):
    row = _task_row("fizzbuzz")
    cases = {
        "def fizzbuzz(n):\n    return str(n)\n": "code.tests_failed:3/8",
        "def fizzbuzz(n)\n    return 1\n": "code.syntax:line 1: expected ':'",
        "raise KeyError('boom')\n": "code.crash:KeyError",
        "def other(n):\n    return 1\n": "code.tests_failed:entry_point_missing",
        "x = bytearray(8 << 30)\n": "code.memory",
        "import os\nos.fork()\n": "code.forbidden:os.fork",
        "print('x' * (4 << 20))\n": "code.output_limit",
    }
    verdicts = verifier.verify_many([_with_code(row, code) for code in cases])
    for (code, reason), verdict in zip(cases.items(), verdicts):
        assert verdict.score == 0.0 and verdict.reasons == (reason,), code
    replies = {"no block at all": "answer.missing", "```python\nx=1\n```\n```python\ny=2\n```": "answer.multiple",
               "```python\ndef fizzbuzz(n): pass\n": "answer.unclosed"}
    for text, reason in replies.items():
        assert verifier.verify(_with_code(row, text, fenced=False)).reasons == (reason,)


def test_raises_tolerance_and_call_tests(verifier):
    median = _task_row("median")
    assert verifier.verify(median).score == 1.0
    no_raise = "def median(numbers):\n    s = sorted(numbers) or [0]\n    m = len(s) // 2\n" \
               "    return float(s[m]) if len(s) % 2 else (s[m - 1] + s[m]) / 2\n"
    assert verifier.verify(_with_code(median, no_raise)).reasons == ("code.tests_failed:4/5",)
    temp = _task_row("celsius_to_fahrenheit")
    close = "def celsius_to_fahrenheit(c):\n    return (c * 1.8 + 32) * (1 + 1e-12)\n"
    assert verifier.verify(_with_code(temp, close)).score == 1.0
    off = "def celsius_to_fahrenheit(c):\n    return c * 1.8 + 32.001\n"
    assert verifier.verify(_with_code(temp, off)).score == 0.0
    assert matches(1, 1.0) and not matches(True, 1) and not matches("1", 1) and matches([1, [2.0]], [1, [2]])
    assert not matches({"__type__": "set"}, [1, 2]) and matches({"a": 1}, {"a": 1}) and not matches({"a": 1}, {"a": 2})


def test_the_record_is_not_trusted(verifier):
    row = _task_row("gcd")
    meta = json.loads(row["metadata"])
    cases = {
        "task.env_mismatch": {**row, "metadata": json.dumps({"task": {**meta["task"], "digest": "0" * 16}})},
        "task.unknown": {**row, "metadata": json.dumps({"task": {"id": "nope", "digest": "x"}})},
        "task.id_mismatch": {**row, "task_id": "fizzbuzz"},
        "record.env_mismatch": {**row, "env": "math_sample"},
        "prompt.mismatch": {**row, "messages": [row["messages"][0], message("user", "anything"), row["messages"][2]]},
        "trajectory.turn_order": {**row, "messages": row["messages"][1:]},
    }
    for reason, record in cases.items():
        assert verifier.verify(record).reasons == (reason,), reason


def test_extract_code():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone.") == ("def f():\n    return 1\n", None)
    assert extract_code("```\nx = 1\n```") == ("x = 1\n", None)
    assert extract_code("```py\n\n```") == (None, "answer.empty")
    assert extract_code("no code") == (None, "answer.missing")


def test_policy_rollout(verifier):
    task = dict(FAMILY.policy_tasks(_request()))["gcd"]

    async def good(messages, tools, step, seed, decoding=None):
        assert messages == prompt_messages(task) and decoding.max_tokens == 2048
        return Turn(message=message("assistant", "Sure.\n" + teacher_completion(task.solution)))

    record = asyncio.run(FAMILY.rollout(_request(), task, 0, "p", good))
    assert record["source"] == "policy" and verify_record(record, verifier, 1.0) == (1.0, True, [])


def test_reward_scores_right_and_wrong_code():
    from orbit import rewards

    row = _task_row("gcd")
    spec = json.loads(row["metadata"])["task"]
    prompt = [{"role": m["role"], "content": m["content"]} for m in row["messages"][:2]]
    task = load_tasks(None).by_id["gcd"]
    completions = [teacher_completion(task.solution), "```python\ndef gcd(a, b):\n    return 1\n```"]
    assert rewards.reward_func(completions, [prompt, prompt], env=["code_sample"] * 2,
                               task_spec=[json.dumps(spec)] * 2, task_id=["gcd"] * 2) == [1.0, 0.0]
    assert rewards.LAST_REASONS[1][0].startswith("code.tests_failed")


def _write(path, lines):
    path.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    return path


def test_tasks_file_env(tmp_path, monkeypatch):
    task = {"id": "add", "prompt": "Write add(a, b) returning a + b.", "entry_point": "add",
            "solution": "def add(a, b):\n    return a + b\n",
            "tests": [{"args": [1, 2], "expected": 3}, {"call": "add('a', 'b')", "expected": "ab"},
                      {"args": [1], "raises": "TypeError"}, {"kwargs": {"a": 0.1, "b": 0.2}, "expected": 0.3,
                                                           "tolerance": 1e-9}]}
    unsolved = {"id": "sub", "prompt": "Write sub(a, b).", "entry_point": "sub", "tests": [{"args": [2, 1], "expected": 1}]}
    tasks = _write(tmp_path / "code.jsonl", [task, unsolved])
    envs_file = tmp_path / "envs.toml"
    envs_file.write_text(f'[envs.my_code]\nfamily = "code"\ntasks_file = "{tasks}"\ntimeout = 5\n')
    monkeypatch.setenv("ORBIT_ENVS_FILE", str(envs_file))
    spec = registry().envs["my_code"]
    rows = sorted(_rows(_request(spec=spec)), key=lambda r: r["task_id"])
    verifier = FAMILY.verifier(spec)
    assert verifier.limits.wall_seconds == 5.0
    assert verify_record(rows[0], verifier, 1.0) == (1.0, True, [])
    score, passed, reasons = verify_record(rows[1], verifier, 1.0)
    assert not passed and reasons[0] == "teacher.no_reference"


@pytest.mark.parametrize("line, words", [
    ({"id": "a", "prompt": "p", "entry_point": "f"}, ":1: tests must be a list"),
    ({"id": "a", "prompt": "p", "entry_point": "not valid", "tests": [{"args": [], "expected": 1}]}, "entry_point"),
    ({"id": "a", "prompt": "p", "entry_point": "f", "tests": [{"args": [], "expected": 1, "raises": "E"}]},
     "tests[0] needs exactly one of expected and raises"),
    ({"id": "a", "prompt": "p", "entry_point": "f", "tests": [{"expected": 1}]}, "tests[0] needs either call"),
    ({"id": "a b", "prompt": "p", "entry_point": "f", "tests": [{"args": [], "expected": 1}]}, "id may hold only"),
])
def test_a_bad_tasks_file_is_refused_naming_the_line(tmp_path, monkeypatch, line, words):
    tasks = _write(tmp_path / "bad.jsonl", [line])
    envs_file = tmp_path / "envs.toml"
    envs_file.write_text(f'[envs.bad_code]\nfamily = "code"\ntasks_file = "{tasks}"\n')
    monkeypatch.setenv("ORBIT_ENVS_FILE", str(envs_file))
    with pytest.raises(EnvsFileError) as err:
        registry()
    assert err.value.env == "bad_code" and err.value.key == "tasks_file" and words in str(err.value)


def test_bad_options_are_refused():
    for options, key in (({"sandbox": "docker"}, "sandbox"), ({"timeout": 0}, "timeout"), ({"memory_mb": "1G"}, "memory_mb")):
        with pytest.raises(Exception) as err:
            FAMILY.check(EnvSpec(name="c", family="code", description="", options=options))
        assert err.value.key == key


def test_system_prompt_asks_for_one_fenced_block():
    assert "exactly one fenced code block" in SYSTEM_PROMPT
