"""A math env's tasks, a partition's pick of them, and what the model is shown.

An env's tasks are the generated sample set (``sample``) or, with the option ``tasks_file``, the
JSONL file's lines: ``{"problem": str, "answer": str, "id": str (optional)}`` (a missing id is
``m-`` and a hash of problem and answer). A task's spec, written to every record's
``metadata.task``, is ``{"id", "answer", "digest"}``, the digest a hash of problem and answer: the
verifier finds the task by id among the env's own and compares the whole spec.

A partition of ``num_tasks`` tasks takes the env's tasks in the order of
``stable_hash(env, round, base_seed, id)`` (all of them when there are fewer): every round draws
its own, and rematerialising a partition picks the same.
"""

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from orbit.envs.math.sample import sample_problems
from orbit.envs.math.taskfile import check_id, read_tasks
from orbit.io.schema import message, stable_hash

ANSWER_FORMAT = "math_boxed.v1"
SYSTEM_PROMPT = (
    "Solve the math problem in the user's message. You may reason step by step first. Give the final "
    "answer exactly once, as \\boxed{...} (for example \\boxed{\\frac{3}{4}}), or in one "
    "<answer>...</answer> tag at the very end of the reply, with only the answer itself inside."
)
MAX_PROBLEM_CHARS = 20_000
MAX_GOLD_CHARS = 2_000


@dataclass(frozen=True)
class MathTask:
    task_id: str
    problem: str
    answer: str

    @property
    def digest(self) -> str:
        return stable_hash("math-task", self.problem, self.answer, length=16)

    @property
    def spec(self) -> dict:
        return {"id": self.task_id, "answer": self.answer, "digest": self.digest}


def task_from_object(obj: Mapping[str, Any]) -> MathTask:
    """A task of a task file's line; ``ValueError`` says what is wrong with it."""
    extra = sorted(set(obj) - {"id", "problem", "answer"})
    if extra:
        raise ValueError(f"unknown key {extra[0]!r} (a math task has problem, answer and an optional id)")
    problem, answer = obj.get("problem"), obj.get("answer")
    if type(problem) is not str or not problem.strip():
        raise ValueError("problem must be a non-empty string")
    if len(problem) > MAX_PROBLEM_CHARS:
        raise ValueError(f"problem is longer than {MAX_PROBLEM_CHARS} characters")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if type(answer) is not str or not answer.strip():
        raise ValueError("answer must be a non-empty string (or a number)")
    if len(answer) > MAX_GOLD_CHARS:
        raise ValueError(f"answer is longer than {MAX_GOLD_CHARS} characters")
    task_id = obj.get("id")
    if task_id is None:
        task_id = "m-" + stable_hash("math-task-id", problem, answer, length=12)
    problem_id = check_id(task_id)
    if problem_id:
        raise ValueError(problem_id)
    return MathTask(task_id, problem, answer.strip())


_LOADED: dict[Any, tuple[tuple, "TaskSet"]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class TaskSet:
    tasks: tuple[MathTask, ...]
    by_id: Mapping[str, MathTask]


def _file_key(path: str) -> tuple:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def load_tasks(tasks_file: str | None) -> TaskSet:
    """The env's tasks: the sample set, or the file's (read again when it changes)."""
    key = tasks_file or "<sample>"
    stamp = _file_key(tasks_file) if tasks_file else ()
    with _LOCK:
        hit = _LOADED.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    if tasks_file:
        tasks = read_tasks(Path(tasks_file), task_from_object)
    else:
        tasks = [task_from_object(p) for p in sample_problems()]
    loaded = TaskSet(tuple(tasks), {t.task_id: t for t in tasks})
    with _LOCK:
        _LOADED[key] = (stamp, loaded)
    return loaded


def partition_tasks(tasks: TaskSet, env_name: str, round_key: str, base_seed: int, num_tasks: int) -> list[MathTask]:
    order = sorted(tasks.tasks, key=lambda t: stable_hash("math-pick", env_name, round_key, int(base_seed), t.task_id))
    return order[:max(0, int(num_tasks))]


def prompt_messages(task: MathTask) -> list[dict]:
    return [message("system", SYSTEM_PROMPT), message("user", task.problem)]


def teacher_completion(answer: str) -> str:
    """The teacher's reply: the gold answer boxed (in an answer tag when its braces do not balance)."""
    depth = 0
    for ch in answer:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            break
    if depth == 0 and "<answer>" not in answer and "</answer>" not in answer:
        return f"The answer is $\\boxed{{{answer}}}$."
    return f"<answer>{answer}</answer>"
