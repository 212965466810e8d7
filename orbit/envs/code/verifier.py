"""The code verifier: the reply's code and the env's own tests, run in the sandbox.

It trusts nothing in the record. The record checks come first, each failure with its own reason
(``record.env_mismatch``, ``record.metadata_not_object``, ``task.spec_invalid``, ``task.unknown``,
``task.env_mismatch`` (the digest is not the env's task's), ``task.id_mismatch``,
``record.tools_mismatch``, ``trajectory.unexpected_tool_call:<i>``, ``trajectory.turn_order`` (exactly
system, user, assistant), ``prompt.system_mismatch``, ``prompt.mismatch``), then the code block
(``extract``: ``answer.missing``, ``answer.multiple``, ``answer.unclosed``, ``answer.empty``,
``answer.too_long``). Then one sandboxed run (``orbit.compute.sandbox``) of the harness with the code
and the tests' inputs; the score is 1.0 only when every test's result matches, else 0.0 with one reason:

- ``code.output_limit``: stdout, stderr or the results passed ``output_kb``;
- ``code.forbidden:<act>``: the run tried a forbidden act (a process, a signal, a socket, ctypes, a write
  outside its temp dir) and was stopped there;
- ``code.timeout``: past the wall-clock ``timeout`` or the CPU seconds;
- ``code.syntax:<where>``: the code does not compile;
- ``code.memory``: a ``MemoryError`` (past ``memory_mb`` of address space);
- ``code.crash:<ExceptionType>`` (the module raised while loading, ``SystemExit`` included) or
  ``code.crash:signal:<NAME>`` (the process died of a signal);
- ``code.tests_failed:<passed>/<total>`` (a wrong value, an exception, a missing result: a run that
  ended early), ``code.tests_failed:entry_point_missing``;
- ``sandbox.error:<what>``: the sandbox could not run at all (not the code's fault).

``verify`` never raises (``verify.internal_error:<ExceptionType>``). ``verify_many(records)`` runs up
to ``workers`` sandboxes at once; verdicts of a (task, code) pair already run are remembered.
"""

import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

from orbit.compute.sandbox import Limits, RunResult, sandbox
from orbit.envs.base import EnvSpec, Verdict
from orbit.envs.code.extract import extract_code
from orbit.envs.code.tasks import SYSTEM_PROMPT, CodeTask, TaskSet, load_tasks, matches
from orbit.envs.math.task_record import (  # noqa: F401 -- the reason ids, importable from here too
    ENV_MISMATCH, METADATA_INVALID, PROMPT_MISMATCH, ROLES, SPEC_INVALID, SYSTEM_MISMATCH, TASK_ENV_MISMATCH,
    TASK_ID_MISMATCH, TASK_UNKNOWN, TOOL_USE, TOOLS_MISMATCH, TURN_ORDER, check_task_record)

VERIFIER_NAME = "code_tests"
VERIFIER_VERSION = "1"
HARNESS = (Path(__file__).resolve().parent / "harness_program.py").read_text()
DEFAULT_TIMEOUT = 10.0
DEFAULT_MEMORY_MB = 1024
DEFAULT_OUTPUT_KB = 1024
MAX_MEMO = 16_384

TIMEOUT = "code.timeout"
MEMORY = "code.memory"
CRASH = "code.crash"
SYNTAX = "code.syntax"
TESTS_FAILED = "code.tests_failed"
FORBIDDEN = "code.forbidden"
OUTPUT_LIMIT = "code.output_limit"
SANDBOX_ERROR = "sandbox.error"
INTERNAL_ERROR = "verify.internal_error"
CPU_SIGNALS = {signal.SIGXCPU}


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def limits_for(options: Mapping[str, Any]) -> Limits:
    timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    return Limits(wall_seconds=timeout, cpu_seconds=int(options.get("cpu_seconds", max(1, int(timeout + 0.999)))),
                  memory_mb=int(options.get("memory_mb", DEFAULT_MEMORY_MB)),
                  output_bytes=int(options.get("output_kb", DEFAULT_OUTPUT_KB)) << 10)


def _lines(data: bytes) -> list[dict]:
    out = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _label(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:limit]


def run_verdict(task: CodeTask, run: RunResult) -> Verdict:
    """The verdict of one sandboxed run of ``task``'s tests (see the module doc for the order)."""
    if run.status == "error":
        return Verdict(0.0, (f"{SANDBOX_ERROR}:{_label(run.detail, 160)}",))
    if run.status == "output_limit":
        return Verdict(0.0, (OUTPUT_LIMIT,))
    lines = _lines(run.results)
    for line in lines:
        if "forbidden" in line:
            return Verdict(0.0, (f"{FORBIDDEN}:{_label(line['forbidden'])}",))
    if run.status == "timeout" or (run.status == "signaled" and run.signal in CPU_SIGNALS):
        return Verdict(0.0, (TIMEOUT,))
    results: dict[int, dict] = {}
    done = False
    for line in lines:
        if "syntax" in line:
            return Verdict(0.0, (f"{SYNTAX}:{_label(line['syntax'])}",))
        if "memory" in line:
            return Verdict(0.0, (MEMORY,))
        if "crash" in line:
            return Verdict(0.0, (f"{CRASH}:{_label(line['crash'])}",))
        if "missing" in line:
            return Verdict(0.0, (f"{TESTS_FAILED}:entry_point_missing",))
        if "done" in line:
            done = True
        t = line.get("t")
        if type(t) is int and t not in results:
            results[t] = line
    if run.status == "signaled":
        try:
            name = signal.Signals(run.signal).name
        except (ValueError, TypeError):
            name = str(run.signal)
        return Verdict(0.0, (f"{CRASH}:signal:{name}",))
    passed = 0
    for i, test in enumerate(task.tests):
        got = results.get(i)
        if got is None:
            continue
        if "raises" in test:
            passed += got.get("e") == test["raises"]
        elif "v" in got and matches(got["v"], test["expected"], test.get("tolerance")):
            passed += 1
    total = len(task.tests)
    if passed == total and done:
        return Verdict(1.0)
    return Verdict(0.0, (f"{TESTS_FAILED}:{passed}/{total}",))



class CodeVerifier:
    parallel_safe = False  # it runs its own sandboxes (subprocesses), several at once in verify_many
    columns = ("env", "task_id", "messages", "tools", "metadata")
    reads_plain_texts = True
    name = VERIFIER_NAME
    version = VERIFIER_VERSION

    def __init__(self, env: EnvSpec, *, workers: int | None = None, limits: Limits | None = None):
        self.env = env
        options = env.options
        self.tasks_file = options.get("tasks_file")
        self.backend = options.get("sandbox")
        self.limits = limits or limits_for(options)
        self.workers = int(workers or options.get("verify_workers") or default_workers())
        self._memo: dict[tuple[str, str], Verdict] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        state["_memo"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _tasks(self) -> TaskSet:
        return load_tasks(self.tasks_file)

    def check(self, record: Mapping[str, Any]) -> Verdict | tuple[CodeTask, str]:
        """A failed verdict, or ``(task, code)`` to run."""
        checked = check_task_record(record, self.env.name, self._tasks().by_id, SYSTEM_PROMPT,
                                    lambda task: task.prompt)
        if isinstance(checked, Verdict):
            return checked
        task, reply = checked
        code, reason = extract_code(reply)
        if reason:
            return Verdict(0.0, (reason,))
        return task, code

    def run(self, task: CodeTask, code: str) -> Verdict:
        """Run ``code`` against ``task``'s tests in the sandbox (no memo)."""
        payload = {"code": code, "entry_point": task.entry_point, "tests": task.inputs()}
        try:
            result = sandbox(self.backend).run_python(HARNESS, payload, self.limits)
        except Exception as exc:  # noqa: BLE001 -- a sandbox that cannot start fails the record, named
            return Verdict(0.0, (f"{SANDBOX_ERROR}:{type(exc).__name__}:{_label(str(exc))}",))
        return run_verdict(task, result)

    def verify_many(self, records: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(records)
        jobs: dict[tuple[str, str], tuple[CodeTask, str, list[int]]] = {}
        for i, record in enumerate(records):
            try:
                checked = self.check(record) if isinstance(record, Mapping) else Verdict(0.0, ("record.not_object",))
            except Exception as exc:  # noqa: BLE001
                checked = Verdict(0.0, (f"{INTERNAL_ERROR}:{type(exc).__name__}",))
            if isinstance(checked, Verdict):
                verdicts[i] = checked
                continue
            task, code = checked
            key = (task.digest, code)
            with self._lock:
                memo = self._memo.get(key)
            if memo is not None:
                verdicts[i] = memo
            else:
                jobs.setdefault(key, (task, code, []))[2].append(i)
        if jobs:
            keys = list(jobs)
            if len(keys) == 1 or self.workers <= 1:
                outcomes = [self.run(*jobs[k][:2]) for k in keys]
            else:
                with ThreadPoolExecutor(max_workers=min(self.workers, len(keys)),
                                        thread_name_prefix="orbit-sandbox") as executor:
                    outcomes = list(executor.map(lambda k: self.run(*jobs[k][:2]), keys))
            for key, verdict in zip(keys, outcomes):
                if not any(r.startswith(SANDBOX_ERROR) for r in verdict.reasons):
                    with self._lock:
                        if len(self._memo) >= MAX_MEMO:
                            self._memo.clear()
                        self._memo[key] = verdict
                for i in jobs[key][2]:
                    verdicts[i] = verdict
        return verdicts  # type: ignore[return-value]

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        try:
            return self.verify_many([record])[0]
        except Exception as exc:  # noqa: BLE001 -- never raises
            return Verdict(0.0, (f"{INTERNAL_ERROR}:{type(exc).__name__}",))
