"""Code verification: sandboxed test runs vs bare ``subprocess.run([python, "-c", ...])``, and the cost of
containing each hostile class.

    python bench/bench_code.py [--repeat 3] [--quick]

For every task of ``code_sample`` (its reference solution), timed interleaved (medians over ``--repeat``):

  * bare: ``subprocess.run([sys.executable, "-c", solution + a loop calling the entry point on every
    test's inputs])``: no sandbox, no limits, no comparison;
  * sandboxed: ``CodeVerifier.run(task, solution)``: bwrap (pid/net/IPC/UTS namespaces, a read-only mount
    tree, a private tmpfs), ``python -I -S -B``, rlimits and a uid of its own, the audit guard, the
    harness, the results compared outside; one run at a time;
  * ``verify_many`` with 2 workers (two sandboxes at once), for information.

Figures are test runs (one task's tests) per second; ratio = sandboxed / bare. Goal: >= 0.6x.
Then, with a 2 s timeout, the wall time from ``verify(record)`` to the failed verdict for each hostile
class (the class's reason beside it).
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import pyarrow as pa  # noqa: E402

from orbit.envs import EnvSpec, GenerationRequest, env_spec  # noqa: E402
from orbit.envs.code.family import FAMILY  # noqa: E402
from orbit.envs.code.tasks import load_tasks, teacher_completion  # noqa: E402
from orbit.envs.code.verifier import CodeVerifier  # noqa: E402
from orbit.io.schema import RECORD_SCHEMA  # noqa: E402

GOAL = 0.6

HOSTILE = {
    "loops forever": "while True:\n    pass\n",
    "forks without end": "import os\nwhile True:\n    os.fork()\n",
    "allocates until killed": "x = []\nwhile True:\n    x.append(bytearray(1 << 24))\n",
    "writes a huge file": "with open('/tmp/big', 'wb') as fh:\n    while True:\n        fh.write(b'0' * (1 << 20))\n",
    "floods stdout": "while True:\n    print('flood' * 100)\n",
    "writes/deletes elsewhere": "import os\nos.remove('/root/.bashrc')\n",
    "reads secrets": "import os\ndef gcd(a, b):\n    return os.environ.get('OPENAI_API_KEY')\n",
    "connects to 127.0.0.1": "import socket\nsocket.create_connection(('127.0.0.1', 22))\n",
    "kills its parent": "import os\nos.kill(os.getppid(), 9)\n",
    "kills its group": "import os\nos.killpg(0, 9)\n",
    "starts a daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n",
    "patches the harness": "import json\njson.dumps = lambda *a, **k: '{\"done\": 6}'\ndef gcd(a, b):\n    return 0\n",
    "exits 0 early": "import os\nos._exit(0)\n",
    "prints the expected output": "def gcd(a, b):\n    print(6)\n    return 6\n",
}


def bare_code(task) -> str:
    calls = "\n".join(f"    print(repr({t['call']}))" if "call" in t else
                      f"    print(repr({task.entry_point}(*{t.get('args', [])!r}, **{t.get('kwargs', {})!r})))"
                      for t in task.tests)
    return f"{task.solution}\n\ntry:\n    pass\n{calls}\nexcept Exception as exc:\n    print(type(exc).__name__)\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke test: 12 tasks, 2 repeats")
    args = parser.parse_args()
    tasks = list(load_tasks(None).tasks)
    if args.quick:
        tasks, args.repeat = tasks[:12], 2
    spec = env_spec("code_sample")
    verifier = CodeVerifier(spec, workers=1)
    many = CodeVerifier(spec, workers=2)
    codes = {t.task_id: bare_code(t) for t in tasks}
    print(f"{len(tasks)} tasks; {C.environment_note()}")
    verifier.run(tasks[0], tasks[0].solution)  # first run: the sandbox's argv, the page cache

    def run_bare():
        for t in tasks:
            subprocess.run([sys.executable, "-c", codes[t.task_id]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           check=True)

    def run_bare_isolated():
        for t in tasks:
            subprocess.run([sys.executable, "-I", "-S", "-c", codes[t.task_id]], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, check=True)

    def run_sandboxed():
        for t in tasks:
            assert verifier.run(t, t.solution).score == 1.0

    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=len(load_tasks(None).tasks), samples_per_task=1,
                                workers=1)
    rows = [r for r in pa.Table.from_batches(list(FAMILY.generate(request)), schema=RECORD_SCHEMA).to_pylist()
            if r["task_id"] in codes]

    def run_many():
        many._memo.clear()
        assert all(v.score == 1.0 for v in many.verify_many(rows))

    samples = C.interleaved_samples([run_bare, run_sandboxed, run_many, run_bare_isolated], args.repeat, rotate=True,
                                    max_rounds=args.repeat)
    bare_s, sandbox_s, many_s, isolated_s = (statistics.median(s) for s in samples)
    n = len(tasks)
    rates = {"bare": n / bare_s, "sandboxed": n / sandbox_s, "many": n / many_s, "bare_isolated": n / isolated_s}
    rows_out = [
        C.Row("bare subprocess.run([python, -c, ...])", rates["bare"], "runs/s"),
        C.Row("sandboxed (bwrap + harness), 1 at a time", rates["sandboxed"], "runs/s", rates["bare"],
              rates["sandboxed"] / rates["bare"], f">= {GOAL}x", rates["sandboxed"] / rates["bare"] >= GOAL),
        C.Row("sandboxed, verify_many with 2 workers", rates["many"], "runs/s", rates["bare"], rates["many"] / rates["bare"]),
        C.Row("bare with python -I -S (no site: for reference)", rates["bare_isolated"], "runs/s", rates["bare"],
              rates["bare_isolated"] / rates["bare"]),
    ]
    hostile_spec = EnvSpec(name="code_sample", family="code", description="", options={"timeout": 2})
    hostile_verifier = CodeVerifier(hostile_spec, workers=1)
    gcd = next(r for r in pa.Table.from_batches(list(FAMILY.generate(request)), schema=RECORD_SCHEMA).to_pylist()
               if r["task_id"] == "gcd")
    for name, code in HOSTILE.items():
        record = {**gcd, "messages": gcd["messages"][:2] + [{**gcd["messages"][2], "content": teacher_completion(code)}]}
        t0 = time.perf_counter()
        got = hostile_verifier.verify(record)
        seconds = time.perf_counter() - t0
        assert got.score == 0.0
        rows_out.append(C.Row(f"time to fail: {name}", seconds, "s", note=", ".join(got.reasons)))
        C.metric("time_to_fail." + name.replace(" ", "_").replace("/", "_").replace(".", ""), round(seconds, 3))
    C.print_table("code verify", rows_out)
    for key, value in rates.items():
        C.metric(f"{key}_runs_per_s", round(value, 2))
    C.metric("ratio_sandboxed", round(rates["sandboxed"] / rates["bare"], 3))
    C.metric("ratio_many", round(rates["many"] / rates["bare"], 3))
    C.save_metrics("bench_code")


if __name__ == "__main__":
    main()
