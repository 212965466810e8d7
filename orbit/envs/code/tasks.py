"""A code env's tasks, a partition's pick of them, and what the model is shown.

A task (a line of a JSONL task file, or of the shipped ``data/code_sample.jsonl``)::

    {"id": "fizzbuzz", "prompt": "Write a function fizzbuzz(n) ...", "entry_point": "fizzbuzz",
     "solution": "def fizzbuzz(n): ...",                       # optional: the teacher's reference
     "tests": [{"args": [3], "expected": "Fizz"},             # entry_point(*args, **kwargs)
               {"call": "fizzbuzz(5) + fizzbuzz(15)", "expected": "BuzzFizzBuzz"},   # an expression
               {"args": [0], "raises": "ValueError"},          # the exception's class name
               {"args": [0.1], "expected": 0.3, "tolerance": 1e-9}]}

A test's inputs (``args``, ``kwargs`` or ``call``) go into the sandbox; its ``expected``, ``raises`` and
``tolerance`` never do: the run's results are compared outside (``matches``). Results are JSON data by
exact type (a tuple comes back as a list; a set or an object as ``{"__type__": name}``, which matches
nothing), so ``expected`` is JSON too. A task's spec in ``metadata.task`` is ``{"id", "digest"}``: the
verifier finds the task by id among the env's own and compares the digest (of everything above).
"""

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from orbit.envs.math.taskfile import check_id, read_tasks
from orbit.io.schema import message, stable_hash

SAMPLE_FILE = Path(__file__).resolve().parent / "data" / "code_sample.jsonl"
ANSWER_FORMAT = "code_fenced.v1"
SYSTEM_PROMPT = (
    "Solve the programming task in the user's message in Python 3, using the standard library only. "
    "Reply with the complete solution in exactly one fenced code block (```python ... ```): it must "
    "define the function the task names. Do not print anything, read input or call the function yourself."
)
MAX_TESTS = 1000
MAX_PROMPT_CHARS = 50_000
MAX_CODE_CHARS = 100_000
TASK_KEYS = frozenset({"id", "prompt", "entry_point", "solution", "tests"})
TEST_KEYS = frozenset({"args", "kwargs", "call", "expected", "raises", "tolerance"})


@dataclass(frozen=True)
class CodeTask:
    task_id: str
    prompt: str
    entry_point: str
    tests: tuple
    solution: str | None = None

    @property
    def digest(self) -> str:
        return stable_hash("code-task", self.prompt, self.entry_point, list(self.tests), self.solution, length=16)

    @property
    def spec(self) -> dict:
        return {"id": self.task_id, "digest": self.digest}

    def inputs(self) -> list[dict]:
        """What of each test enters the sandbox: its inputs only."""
        return [{k: t[k] for k in ("args", "kwargs", "call") if k in t} for t in self.tests]


def _check_test(i: int, test: Any) -> dict:
    if not isinstance(test, dict):
        raise ValueError(f"tests[{i}] must be an object")
    extra = sorted(set(test) - TEST_KEYS)
    if extra:
        raise ValueError(f"tests[{i}]: unknown key {extra[0]!r} (known: {', '.join(sorted(TEST_KEYS))})")
    if ("call" in test) == ("args" in test or "kwargs" in test):
        raise ValueError(f"tests[{i}] needs either call (an expression) or args/kwargs")
    if "call" in test and (type(test["call"]) is not str or not test["call"].strip()):
        raise ValueError(f"tests[{i}].call must be a non-empty expression")
    if "args" in test and not isinstance(test["args"], list):
        raise ValueError(f"tests[{i}].args must be a list")
    if "kwargs" in test and not (isinstance(test["kwargs"], dict) and all(k.isidentifier() for k in test["kwargs"])):
        raise ValueError(f"tests[{i}].kwargs must be an object of argument names")
    if ("expected" in test) == ("raises" in test):
        raise ValueError(f"tests[{i}] needs exactly one of expected and raises")
    if "raises" in test and (type(test["raises"]) is not str or not test["raises"].isidentifier()):
        raise ValueError(f"tests[{i}].raises must be an exception class name")
    tol = test.get("tolerance")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < math.inf):
        raise ValueError(f"tests[{i}].tolerance must be a number >= 0")
    return test


def task_from_object(obj: Mapping[str, Any]) -> CodeTask:
    extra = sorted(set(obj) - TASK_KEYS)
    if extra:
        raise ValueError(f"unknown key {extra[0]!r} (a code task has {', '.join(sorted(TASK_KEYS))})")
    problem = check_id(obj.get("id"))
    if problem:
        raise ValueError(problem)
    prompt, entry, solution, tests = obj.get("prompt"), obj.get("entry_point"), obj.get("solution"), obj.get("tests")
    if type(prompt) is not str or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt must be a non-empty string of at most {MAX_PROMPT_CHARS} characters")
    if type(entry) is not str or not entry.isidentifier():
        raise ValueError("entry_point must be a Python identifier (the function the tests call)")
    if solution is not None and (type(solution) is not str or not solution.strip() or len(solution) > MAX_CODE_CHARS):
        raise ValueError("solution must be Python source (a non-empty string)")
    if not isinstance(tests, list) or not tests or len(tests) > MAX_TESTS:
        raise ValueError(f"tests must be a list of 1 to {MAX_TESTS} tests")
    checked = tuple(_check_test(i, t) for i, t in enumerate(tests))
    return CodeTask(obj["id"], prompt, entry, checked, solution)


@dataclass(frozen=True)
class TaskSet:
    tasks: tuple[CodeTask, ...]
    by_id: Mapping[str, CodeTask]


_LOADED: dict[str, tuple[tuple, TaskSet]] = {}
_LOCK = threading.Lock()


def load_tasks(tasks_file: str | None) -> TaskSet:
    """The env's tasks: the shipped sample set, or the file's (read again when it changes)."""
    path = str(tasks_file or SAMPLE_FILE)
    st = os.stat(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _LOCK:
        hit = _LOADED.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    tasks = read_tasks(path, task_from_object)
    loaded = TaskSet(tuple(tasks), {t.task_id: t for t in tasks})
    with _LOCK:
        _LOADED[path] = (stamp, loaded)
    return loaded


def partition_tasks(tasks: TaskSet, env_name: str, round_key: str, base_seed: int, num_tasks: int) -> list[CodeTask]:
    order = sorted(tasks.tasks, key=lambda t: stable_hash("code-pick", env_name, round_key, int(base_seed), t.task_id))
    return order[:max(0, int(num_tasks))]


def prompt_messages(task: CodeTask) -> list[dict]:
    return [message("system", SYSTEM_PROMPT), message("user", task.prompt)]


def teacher_completion(solution: str) -> str:
    return f"```python\n{solution.rstrip()}\n```"


def matches(got: Any, expected: Any, tolerance: float | None = None) -> bool:
    """Is the run's JSON result ``got`` the test's ``expected``? By type: a bool is no number, a number
    no string; floats (and an int against a float) within ``tolerance`` (default 1e-9, relative or absolute)."""
    if type(expected) is bool or type(got) is bool:
        return type(got) is type(expected) and got == expected
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        if type(expected) is int and type(got) is int and tolerance is None:
            return got == expected
        tol = 1e-9 if tolerance is None else float(tolerance)
        try:
            return math.isclose(float(got), float(expected), rel_tol=tol, abs_tol=tol)
        except OverflowError:
            return got == expected
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(
            matches(g, e, tolerance) for g, e in zip(got, expected))
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(
            matches(got[k], expected[k], tolerance) for k in expected)
    return type(got) is type(expected) and got == expected
