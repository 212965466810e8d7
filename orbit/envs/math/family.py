"""The math family: problems with gold answers; teacher rows, policy answers, the math-verify verifier.

Options (an env table in ``envs.toml``, e.g. ``[envs.my_math] family = "math"``,
``tasks_file = "/data/math.jsonl"``):

- ``tasks_file``: JSONL tasks ``{"problem", "answer", "id"?}`` (``tasks``); without it the generated
  sample set (the built-in env ``math_sample``). The file is read and checked line by line when the env
  is declared: a bad line is refused naming the file, the line and what is wrong;
- ``verify_timeout`` (seconds, default 5): the hard per-record limit of math-verify, past which the
  worker is killed and the record fails with ``verify.timeout``;
- ``verify_workers`` (default 2, at most the cores): the verifier's worker processes;
- ``verify_memory_mb`` (default 4096): each worker's address-space limit;
- ``max_tokens`` (default 1024): the policy's answer budget.

Sources: ``teacher`` (the gold answer, boxed; claimed score 1.0) and ``policy`` (one request per
sample; the reply is scored by the verifier, the claim is left empty).
"""

from typing import Any, Iterator, Mapping

import pyarrow as pa

from orbit.envs.base import EnvOptionError, EnvSpec, GenerationRequest
from orbit.envs.math.taskfile import TaskFileError
from orbit.envs.math.tasks import (ANSWER_FORMAT, MathTask, load_tasks, partition_tasks, prompt_messages,
                                   teacher_completion)
from orbit.envs.math.verifier import MathVerifier
from orbit.io.schema import make_record, message, records_to_batch, stable_hash
from orbit.envs.math.task_record import answer_once

TEACHER_POLICY = "teacher:gold"
DEFAULT_MAX_TOKENS = 1024
BATCH_ROWS = 1024
OPTION_KEYS = ("tasks_file", "verify_timeout", "verify_workers", "verify_memory_mb", "max_tokens")
NUMBER_OPTIONS = {"verify_timeout": (0.1, 600.0), "verify_workers": (1, 64), "verify_memory_mb": (256, 1 << 20),
                  "max_tokens": (1, 1_000_000)}


def check_options(spec: EnvSpec, keys=OPTION_KEYS, numbers=NUMBER_OPTIONS, family: str = "math") -> None:
    """Refuse unknown options and out-of-range numbers (``EnvOptionError`` naming the option)."""
    for key, value in spec.options.items():
        if key not in keys:
            raise EnvOptionError(key, f"not an option of the {family} family (it takes {', '.join(keys)})")
        if key in numbers:
            low, high = numbers[key]
            whole = type(low) is int
            ok = (type(value) is int) if whole else (isinstance(value, (int, float)) and not isinstance(value, bool))
            if not ok or not low <= value <= high:
                kind = "a whole number" if whole else "a number"
                raise EnvOptionError(key, f"expected {kind} from {low} to {high}, got {value!r}")
    path = spec.options.get("tasks_file")
    if "tasks_file" in spec.options and (type(path) is not str or not path):
        raise EnvOptionError("tasks_file", f"expected the path of a JSONL file, got {path!r}")


def rollout_seed(env_name: str, round_key: str, task_id: str, sample_idx: int) -> int:
    return int(stable_hash("math-rollout", env_name, round_key, task_id, int(sample_idx), length=8), 16)


class MathFamily:
    name = "math"

    def check(self, spec: EnvSpec) -> None:
        check_options(spec)
        if "tasks_file" in spec.options:
            try:
                load_tasks(spec.options["tasks_file"])
            except (TaskFileError, OSError) as exc:
                raise EnvOptionError("tasks_file", str(exc)) from exc

    def _tasks(self, request: GenerationRequest) -> list[MathTask]:
        tasks = load_tasks(request.option("tasks_file"))
        return partition_tasks(tasks, request.env.name, request.round_key, request.base_seed, request.num_tasks)

    def generate(self, request: GenerationRequest) -> Iterator[pa.RecordBatch]:
        samples = int(request.samples_per_task)
        rows: list[dict] = []
        for task in self._tasks(request):
            messages = prompt_messages(task) + [message("assistant", teacher_completion(task.answer))]
            metadata = {"task": task.spec, "answer_format": ANSWER_FORMAT}
            for s in range(samples):
                rows.append(make_record(env=request.env.name, task_id=task.task_id, round_key=request.round_key,
                                        sample_idx=s, source="teacher", policy=TEACHER_POLICY, seed=None,
                                        messages=messages, score=1.0, metadata=metadata))
            if len(rows) >= BATCH_ROWS:
                yield records_to_batch(rows)
                rows = []
        if rows:
            yield records_to_batch(rows)

    def policy_tasks(self, request: GenerationRequest) -> list[tuple[str, MathTask]]:
        return [(task.task_id, task) for task in self._tasks(request)]

    async def rollout(self, request: GenerationRequest, task: MathTask, sample_idx: int, policy_id: str, complete,
                      extra_metadata: Mapping[str, Any] | None = None) -> dict:
        seed = rollout_seed(request.env.name, request.round_key, task.task_id, sample_idx)
        return await answer_once(request, task, sample_idx, policy_id, complete, extra_metadata, seed=seed,
                                 messages=prompt_messages(task), answer_format=ANSWER_FORMAT,
                                 max_tokens=int(request.option("max_tokens", DEFAULT_MAX_TOKENS)))

    def verifier(self, env: EnvSpec, options: Mapping[str, Any] | None = None) -> MathVerifier:
        return MathVerifier(env)


FAMILY = MathFamily()
