"""The math verifier: the env's own gold answer against the reply's final answer, by math-verify.

It trusts nothing in the record. In order, each failure with its own reason:

- ``record.env_mismatch`` (another env's record), ``record.metadata_not_object``;
- ``task.spec_invalid`` (``metadata.task`` is no object with a string id), ``task.unknown`` (no task of
  the env has that id), ``task.env_mismatch`` (the spec is not the env's task: another answer or
  problem), ``task.id_mismatch`` (the record's task id is not the spec's);
- ``record.tools_mismatch``, ``trajectory.unexpected_tool_call:<i>``, ``trajectory.turn_order`` (the
  messages must be exactly system, user, assistant), ``prompt.system_mismatch``, ``prompt.mismatch``
  (the user message is not the task's problem);
- the final answer (``answers``): ``answer.missing``, ``answer.multiple``, ``answer.nested``,
  ``answer.unclosed``, ``answer.not_final``, ``answer.empty``, ``answer.too_long``, ``answer.too_deep``;
- math-verify in a worker process (``grading``), ``verify(parse(gold), parse(answer))``: score 1.0, or
  ``answer.wrong``; ``verify.timeout`` when it ran past the hard per-record ``timeout`` (the worker is
  killed and replaced), ``verify.memory`` (past the worker's ``memory_mb``), ``verify.crash:<how>``,
  ``verify.error:<ExceptionType>``, ``verify.pool_error:<what>`` (no worker could start).

``verify`` never raises (``verify.internal_error:<ExceptionType>``). ``verify_many(records)`` grades
records as one batch across the workers (one pipe write per chunk); ``verify(record)`` is a batch of
one. The pool is per process and shared by every math verifier with the same settings: started on the
first answer that needs it, kept, stopped at exit. Verdicts of a (gold, answer) pair already graded
are remembered (``MAX_MEMO``), so the samples of a task that repeat an answer cost nothing.
"""

import os
import threading
from typing import Any, Mapping, Sequence

from orbit.compute.killable_pool import CRASHED, ERROR, MEMORY, OK, TIMEOUT, KillablePool
from orbit.envs.base import EnvSpec, Verdict
from orbit.envs.math import grading
from orbit.envs.math.answers import final_answer
from orbit.envs.math.tasks import SYSTEM_PROMPT, TaskSet, load_tasks
from orbit.envs.math.task_record import (  # noqa: F401 -- the reason ids, importable from here too
    ENV_MISMATCH, METADATA_INVALID, PROMPT_MISMATCH, ROLES, SPEC_INVALID, SYSTEM_MISMATCH, TASK_ENV_MISMATCH,
    TASK_ID_MISMATCH, TASK_UNKNOWN, TOOL_USE, TOOLS_MISMATCH, TURN_ORDER, check_task_record)

VERIFIER_NAME = "math_verify"
VERIFIER_VERSION = "1"
DEFAULT_TIMEOUT = 5.0
DEFAULT_MEMORY_MB = 4096
MAX_MEMO = 65_536

WRONG = "answer.wrong"
VERIFY_TIMEOUT = "verify.timeout"
VERIFY_MEMORY = "verify.memory"
VERIFY_CRASH = "verify.crash"
VERIFY_ERROR = "verify.error"
POOL_ERROR = "verify.pool_error"
INTERNAL_ERROR = "verify.internal_error"


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


_POOLS: dict[tuple, KillablePool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(workers: int, timeout: float, memory_mb: int | None) -> KillablePool:
    """This process's math pool for these settings (made once; its workers start on first use)."""
    key = (int(workers), float(timeout), memory_mb, os.getpid())
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = KillablePool(grading.TARGET, workers=workers, timeout=timeout,
                                              preload=grading.PRELOAD, memory_mb=memory_mb, warmup=grading.WARMUP)
        return pool



class MathVerifier:
    parallel_safe = False  # it runs its own killable worker pool
    columns = ("env", "task_id", "messages", "tools", "metadata")
    reads_plain_texts = True
    name = VERIFIER_NAME
    version = VERIFIER_VERSION

    def __init__(self, env: EnvSpec, *, timeout: float | None = None, workers: int | None = None,
                 memory_mb: int | None = None):
        self.env = env
        options = env.options
        self.tasks_file = options.get("tasks_file")
        self.timeout = float(timeout or options.get("verify_timeout") or DEFAULT_TIMEOUT)
        self.workers = int(workers or options.get("verify_workers") or default_workers())
        self.memory_mb = int(memory_mb or options.get("verify_memory_mb") or DEFAULT_MEMORY_MB)
        self._memo: dict[tuple[str, str], Verdict] = {}

    def __getstate__(self):
        return {**self.__dict__, "_memo": {}}

    @property
    def pool(self) -> KillablePool:
        return shared_pool(self.workers, self.timeout, self.memory_mb)

    def _tasks(self) -> TaskSet:
        return load_tasks(self.tasks_file)

    def check(self, record: Mapping[str, Any]) -> Verdict | tuple[str, str]:
        """A failed verdict, or the ``(gold, answer)`` pair math-verify must grade."""
        checked = check_task_record(record, self.env.name, self._tasks().by_id, SYSTEM_PROMPT,
                                    lambda task: task.problem)
        if isinstance(checked, Verdict):
            return checked
        task, reply = checked
        answer, reason = final_answer(reply)
        if reason:
            return Verdict(0.0, (reason,))
        return task.answer, answer

    @staticmethod
    def _verdict(outcome: tuple[str, Any]) -> Verdict:
        status, value = outcome
        if status == OK:
            return Verdict(1.0) if value is True else Verdict(0.0, (WRONG,))
        if status == TIMEOUT:
            return Verdict(0.0, (VERIFY_TIMEOUT,))
        if status == MEMORY:
            return Verdict(0.0, (VERIFY_MEMORY,))
        if status == CRASHED:
            return Verdict(0.0, (f"{VERIFY_CRASH}:{value}",))
        if status == ERROR:
            return Verdict(0.0, (f"{VERIFY_ERROR}:{value}",))
        return Verdict(0.0, (f"{INTERNAL_ERROR}:{status}",))

    def verify_many(self, records: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """The verdicts of ``records``, in order, graded as one batch across the pool's workers."""
        verdicts: list[Verdict | None] = [None] * len(records)
        pairs: dict[tuple[str, str], list[int]] = {}
        for i, record in enumerate(records):
            try:
                checked = self.check(record) if isinstance(record, Mapping) else Verdict(0.0, ("record.not_object",))
            except Exception as exc:  # noqa: BLE001 -- a check bug fails the record, not the batch
                checked = Verdict(0.0, (f"{INTERNAL_ERROR}:{type(exc).__name__}",))
            if isinstance(checked, Verdict):
                verdicts[i] = checked
            elif checked in self._memo:
                verdicts[i] = self._memo[checked]
            else:
                pairs.setdefault(checked, []).append(i)
        if pairs:
            jobs = list(pairs)
            try:
                outcomes = self.pool.map(jobs)
            except Exception as exc:  # noqa: BLE001 -- no worker: every pending record fails, named
                detail = str(exc).replace("\n", " ")[:120]
                outcomes = [("pool", detail)] * len(jobs)
            for job, outcome in zip(jobs, outcomes):
                if outcome[0] == "pool":
                    verdict = Verdict(0.0, (f"{POOL_ERROR}:{outcome[1]}",))
                else:
                    verdict = self._verdict(outcome)
                    if len(self._memo) >= MAX_MEMO:
                        self._memo.clear()
                    self._memo[job] = verdict
                for i in pairs[job]:
                    verdicts[i] = verdict
        return verdicts  # type: ignore[return-value]

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        try:
            return self.verify_many([record])[0]
        except Exception as exc:  # noqa: BLE001 -- never raises
            return Verdict(0.0, (f"{INTERNAL_ERROR}:{type(exc).__name__}",))
