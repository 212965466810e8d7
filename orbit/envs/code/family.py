"""The code family: programming tasks with unit tests; teacher solutions, policy code, sandboxed tests.

Options (an env table in ``envs.toml``, e.g. ``[envs.my_code] family = "code"``,
``tasks_file = "/data/code.jsonl"``):

- ``tasks_file``: JSONL tasks (``tasks``); without it the shipped sample set (the built-in env
  ``code_sample``). Read and checked line by line when the env is declared;
- ``timeout`` (seconds, default 10): the wall-clock limit of one run of a task's tests;
  ``cpu_seconds`` (default: the timeout rounded up); ``memory_mb`` (default 1024, address space);
  ``output_kb`` (default 1024, per stream);
- ``sandbox``: the sandbox backend (default ``$ORBIT_SANDBOX`` or ``bwrap``; ``orbit.compute.sandbox``);
- ``verify_workers`` (default 2, at most the cores): sandboxes run at once by ``verify_many``;
- ``max_tokens`` (default 2048): the policy's answer budget.

Sources: ``teacher`` (the task's reference ``solution``, fenced; a task without one gives a row with no
answer, score 0 and ``metadata.sample_error = "teacher.no_reference"``) and ``policy`` (one request per
sample; the code is the reply's one fenced block, scored by the verifier).
"""

from typing import Any, Iterator, Mapping

import pyarrow as pa

from orbit.compute.sandbox import BACKENDS
from orbit.envs.base import EnvOptionError, EnvSpec, GenerationRequest, default_dedup_text
from orbit.envs.code.tasks import (ANSWER_FORMAT, CodeTask, load_tasks, partition_tasks, prompt_messages,
                                   teacher_completion)
from orbit.envs.code.verifier import CodeVerifier
from orbit.envs.math.family import check_options
from orbit.envs.math.taskfile import TaskFileError
from orbit.io.schema import make_record, message, records_to_batch, stable_hash
from orbit.envs.math.task_record import answer_once

TEACHER_POLICY = "teacher:reference"
NO_REFERENCE = "teacher.no_reference"
DEFAULT_MAX_TOKENS = 2048
BATCH_ROWS = 1024
OPTION_KEYS = ("tasks_file", "timeout", "cpu_seconds", "memory_mb", "output_kb", "sandbox", "verify_workers",
               "max_tokens")
NUMBER_OPTIONS = {"timeout": (0.1, 3600.0), "cpu_seconds": (1, 3600), "memory_mb": (64, 1 << 20),
                  "output_kb": (1, 1 << 20), "verify_workers": (1, 64), "max_tokens": (1, 1_000_000)}


def rollout_seed(env_name: str, round_key: str, task_id: str, sample_idx: int) -> int:
    return int(stable_hash("code-rollout", env_name, round_key, task_id, int(sample_idx), length=8), 16)


class CodeFamily:
    name = "code"

    @staticmethod
    def dedup_text(record: Mapping[str, Any]) -> tuple[str, str]:
        """The assistant's code, shingled as characters (word n-grams of code are mostly punctuation)."""
        return default_dedup_text(record)[0], "code"

    def check(self, spec: EnvSpec) -> None:
        check_options(spec, OPTION_KEYS, NUMBER_OPTIONS, family="code")
        backend = spec.options.get("sandbox")
        if backend is not None and backend not in BACKENDS:
            raise EnvOptionError("sandbox", f"unknown sandbox {backend!r} (known: {', '.join(sorted(BACKENDS))})")
        if "tasks_file" in spec.options:
            try:
                load_tasks(spec.options["tasks_file"])
            except (TaskFileError, OSError) as exc:
                raise EnvOptionError("tasks_file", str(exc)) from exc

    def _tasks(self, request: GenerationRequest) -> list[CodeTask]:
        tasks = load_tasks(request.option("tasks_file"))
        return partition_tasks(tasks, request.env.name, request.round_key, request.base_seed, request.num_tasks)

    def generate(self, request: GenerationRequest) -> Iterator[pa.RecordBatch]:
        samples = int(request.samples_per_task)
        rows: list[dict] = []
        for task in self._tasks(request):
            metadata: dict[str, Any] = {"task": task.spec, "answer_format": ANSWER_FORMAT}
            messages = prompt_messages(task)
            if task.solution is not None:
                messages = messages + [message("assistant", teacher_completion(task.solution))]
                score = 1.0
            else:
                metadata["sample_error"] = NO_REFERENCE
                score = 0.0
            for s in range(samples):
                rows.append(make_record(env=request.env.name, task_id=task.task_id, round_key=request.round_key,
                                        sample_idx=s, source="teacher", policy=TEACHER_POLICY, seed=None,
                                        messages=messages, score=score, metadata=metadata))
            if len(rows) >= BATCH_ROWS:
                yield records_to_batch(rows)
                rows = []
        if rows:
            yield records_to_batch(rows)

    def policy_tasks(self, request: GenerationRequest) -> list[tuple[str, CodeTask]]:
        return [(task.task_id, task) for task in self._tasks(request)]

    async def rollout(self, request: GenerationRequest, task: CodeTask, sample_idx: int, policy_id: str, complete,
                      extra_metadata: Mapping[str, Any] | None = None) -> dict:
        seed = rollout_seed(request.env.name, request.round_key, task.task_id, sample_idx)
        return await answer_once(request, task, sample_idx, policy_id, complete, extra_metadata, seed=seed,
                                 messages=prompt_messages(task), answer_format=ANSWER_FORMAT,
                                 max_tokens=int(request.option("max_tokens", DEFAULT_MAX_TOKENS)))

    def verifier(self, env: EnvSpec, options: Mapping[str, Any] | None = None) -> CodeVerifier:
        return CodeVerifier(env)


FAMILY = CodeFamily()
