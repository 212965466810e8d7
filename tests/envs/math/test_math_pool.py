"""The killable pool and the math answers that would pin a worker: killed at the hard timeout, replaced,
the other records of the batch unaffected, no worker left behind."""

import json
import os

import pyarrow as pa

from orbit.compute.killable_pool import CRASHED, ERROR, MEMORY, OK, TIMEOUT, KillablePool
from orbit.envs import GenerationRequest, env_spec
from orbit.envs.math.family import FAMILY
from orbit.envs.math.verifier import MathVerifier
from orbit.io.schema import RECORD_SCHEMA
from orbit.stages.verify import VerifyCounts, verify_batch


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_pool_outcomes_in_order_and_a_killed_worker_is_replaced():
    pool = KillablePool("time:sleep", workers=2, timeout=1.0)
    try:
        out = pool.map([0, 0.01, 30, 0, 0.01, 0])
        assert [s for s, _ in out] == [OK, OK, TIMEOUT, OK, OK, OK]
        assert pool.stats["timeouts"] == 1
        assert [s for s, _ in pool.map([0] * 5)] == [OK] * 5  # the pool goes on, the killed worker replaced
        assert pool.stats["started"] == 3
        first = pool.pids()
        assert len(first) == 2 and all(_alive(p) for p in first)
    finally:
        pool.close()
    assert not any(_alive(p) for p in first)


def test_pool_kills_c_code_that_ignores_signals_and_names_errors_and_crashes():
    pool = KillablePool("math:factorial", workers=1, timeout=1.0)
    try:
        out = pool.map([5, 10 ** 8, 6, -1])  # factorial(10**8) runs in C for minutes
        assert out[0] == (OK, 120) and out[1] == (TIMEOUT, None) and out[2] == (OK, 720)
        assert out[3] == (ERROR, "ValueError")
    finally:
        pool.close()
    exits = KillablePool("os:_exit", workers=1, timeout=5.0)
    try:
        assert exits.map([3, 4]) == [(CRASHED, "exit:3"), (CRASHED, "exit:4")]
    finally:
        exits.close()


def test_pool_memory_limit():
    pool = KillablePool("builtins:bytearray", workers=1, timeout=10.0, memory_mb=512)
    try:
        out = pool.map([10, 8 << 30, 10])
        assert [s for s, _ in out] == [OK, MEMORY, OK]
    finally:
        pool.close()


HOSTILE = {
    "sympy_for_minutes": ("\\boxed{9^{9^{9}}}", ("verify.timeout",)),
    "huge_exponent": ("\\boxed{10^{10^{10}}}", ("verify.timeout",)),
    "huge_power_of_a_sum": ("\\boxed{(x+1)^{100000}}", ("verify.timeout",)),
    "deeply_nested_latex": ("\\boxed{" + "\\sqrt{" * 200 + "2" + "}" * 200 + "}", ("answer.too_deep",)),
    "several_boxed_answers": ("\\boxed{1} \\boxed{2} \\boxed{3}", ("answer.multiple",)),
}


def test_hostile_math_answers_are_contained_and_the_partition_goes_on():
    spec = env_spec("math_sample")
    request = GenerationRequest(env=spec, round_key="r0004", num_tasks=12, samples_per_task=1, workers=1)
    rows = pa.Table.from_batches(list(FAMILY.generate(request)), schema=RECORD_SCHEMA).to_pylist()
    hostile = []
    for (name, (text, _)), row in zip(HOSTILE.items(), rows):
        messages = [dict(m) for m in row["messages"]]
        messages[-1]["content"] = text
        hostile.append({**row, "messages": messages, "record_id": name})
    # a nested LaTeX answer under the depth cap still reaches math-verify, and comes back
    nested = {**rows[-1], "record_id": "nested_under_cap",
              "messages": rows[-1]["messages"][:2] + [{**rows[-1]["messages"][2],
                                                        "content": "\\boxed{" + "\\sqrt{" * 30 + "2" + "}" * 30 + "}"}]}
    batch = hostile[:3] + rows[5:] + hostile[3:] + [nested]
    verifier = MathVerifier(spec, timeout=2.0, workers=2)
    counts = VerifyCounts()
    out = verify_batch(pa.RecordBatch.from_pylist(batch, schema=RECORD_SCHEMA), verifier, 1.0, counts).to_pylist()
    by_id = {r["record_id"]: r for r in out}
    for name, (_, reasons) in HOSTILE.items():
        assert by_id[name]["passed"] is False and tuple(by_id[name]["reasons"]) == reasons, name
    for row in rows[5:]:
        assert by_id[row["record_id"]]["passed"], by_id[row["record_id"]]["reasons"]
    assert by_id["nested_under_cap"]["passed"] is False
    assert verifier.pool.stats["timeouts"] >= 3
    # every worker the timeouts replaced is gone; the live ones are the pool's
    pids = verifier.pool.pids()
    verifier.pool.close()
    assert not any(_alive(p) for p in pids)


def test_many_records_in_one_batch_grade_like_one_by_one():
    spec = env_spec("math_sample")
    request = GenerationRequest(env=spec, round_key="r0005", num_tasks=30, samples_per_task=1, workers=1)
    rows = pa.Table.from_batches(list(FAMILY.generate(request)), schema=RECORD_SCHEMA).to_pylist()
    wrong = [{**r, "messages": r["messages"][:2] + [{**r["messages"][2], "content": "\\boxed{-7777}"}]} for r in rows]
    verifier = MathVerifier(spec, workers=2)
    batch = verifier.verify_many(rows + wrong)
    one_by_one = [MathVerifier(spec, workers=1).verify(r) for r in rows[:5] + wrong[:5]]
    assert [v.score for v in batch] == [1.0] * 30 + [0.0] * 30
    assert one_by_one == batch[:5] + batch[30:35]
    assert json.loads(rows[0]["metadata"])["task"]["id"] == rows[0]["task_id"]
    assert os.getpid() not in verifier.pool.pids()


TRAINER = """
import json, os, sys, time
from orbit import rewards
from orbit.envs.math.verifier import shared_pool, default_workers, DEFAULT_TIMEOUT, DEFAULT_MEMORY_MB
spec = json.loads(sys.argv[1])
prompt = [{"role": "system", "content": sys.argv[2]}, {"role": "user", "content": sys.argv[3]}]
for completion in ("\\\\boxed{" + spec["answer"] + "}", "\\\\boxed{-1234567}"):
    print(rewards.reward_func([completion], [prompt], env=["math_sample"], task_spec=[json.dumps(spec)],
                              task_id=[spec["id"]])[0], flush=True)
pool = shared_pool(default_workers(), DEFAULT_TIMEOUT, DEFAULT_MEMORY_MB)
print(json.dumps(pool.pids()), flush=True)
if sys.argv[4] == "hang":
    time.sleep(600)
"""


def _trainer(tmp_path, mode):
    import subprocess
    import sys

    from orbit.envs.math.tasks import SYSTEM_PROMPT, load_tasks

    task = load_tasks(None).tasks[7]
    script = tmp_path / "train.py"  # a trainer script without ``if __name__ == "__main__"``
    script.write_text(TRAINER)
    return subprocess.Popen([sys.executable, str(script), json.dumps(task.spec), SYSTEM_PROMPT, task.problem, mode],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})


def _wait_gone(pids, seconds=30.0):
    import time

    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(_alive(p) for p in pids)


def test_a_trainer_process_scores_record_by_record_and_leaves_no_worker(tmp_path):
    proc = _trainer(tmp_path, "exit")
    out, _ = proc.communicate(timeout=600)
    lines = out.splitlines()
    assert proc.returncode == 0 and lines[:2] == ["1.0", "0.0"]
    pids = json.loads(lines[2])
    assert pids and _wait_gone(pids)


def test_workers_of_a_killed_trainer_exit_by_themselves(tmp_path):
    import signal

    proc = _trainer(tmp_path, "hang")
    lines = [proc.stdout.readline().strip() for _ in range(3)]
    assert lines[:2] == ["1.0", "0.0"]
    pids = json.loads(lines[2])
    assert pids and all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _wait_gone(pids)
