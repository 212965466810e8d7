"""The reasoning-gym family: a reasoning-gym task per env, oracle teacher rows, the answer verifier.

An env names one task registered in reasoning-gym and its config (options: ``options``). A
partition's tasks are items 0..num_tasks-1 of the task's dataset with seed ``dataset_seed(env,
round, base_seed)`` and size num_tasks, at the round's curriculum level when the env declares one
(``items``): every round draws fresh items, and rematerializing a partition reproduces its rows.

The teacher writes each item's oracle answer in the answer format (``teacher``), so a round yields
rows without any model; a chat policy answers in one request (``rollout``). The verifier
(``verifier``) regenerates the item from the record's task spec and scores the final answer with the
task's own ``score_answer``. reasoning-gym is imported on first use, never by importing this module.
"""

from typing import Any, Iterator, Mapping

import pyarrow as pa

from orbit.envs.base import EnvSpec, GenerationRequest
from orbit.envs.reasoning_gym import items
from orbit.envs.reasoning_gym.options import MAX_SIZE, check
from orbit.envs.reasoning_gym.rollout import answer_task
from orbit.envs.reasoning_gym.teacher import teacher_batch
from orbit.envs.reasoning_gym.verifier import AnswerVerifier

BATCH_ROWS = 1024


def _size(request: GenerationRequest) -> int:
    size = int(request.num_tasks)
    if size > MAX_SIZE:
        raise ValueError(f"env {request.env.name!r}: at most {MAX_SIZE:,} tasks per partition, got {size:,}")
    return size


class ReasoningGymFamily:
    name = "reasoning_gym"

    def check(self, spec: EnvSpec) -> None:
        """Refuse options the family cannot run (``EnvOptionError`` naming the option; see ``options``)."""
        check(spec)

    def generate(self, request: GenerationRequest) -> Iterator[pa.RecordBatch]:
        resolved = items.resolve(request.env)
        size, samples = _size(request), int(request.samples_per_task)
        if size <= 0 or samples <= 0:
            return
        part = items.Partition(resolved.level_for_round(request.round_key),
                               items.dataset_seed(request.env.name, request.round_key, request.base_seed), size)
        per_batch = max(1, BATCH_ROWS // samples)
        for start in range(0, size, per_batch):
            made = items.entries(part, start, min(size, start + per_batch))
            yield teacher_batch(part, made, start, env_name=request.env.name, round_key=request.round_key,
                                samples=samples)

    def policy_tasks(self, request: GenerationRequest) -> list[tuple[str, items.Task]]:
        resolved = items.resolve(request.env)
        tasks = items.partition_tasks(resolved, request.round_key, request.base_seed, _size(request))
        return [(task.task_id, task) for task in tasks]

    async def rollout(self, request: GenerationRequest, task: items.Task, sample_idx: int, policy_id: str, complete,
                      extra_metadata: Mapping[str, Any] | None = None) -> dict:
        resolved = items.resolve(request.env)
        max_tokens = request.options.get("max_tokens", resolved.options.max_tokens)
        return await answer_task(task, env_name=request.env.name, round_key=request.round_key,
                                 sample_idx=sample_idx, policy_id=policy_id, complete=complete,
                                 max_tokens=int(max_tokens), extra_metadata=extra_metadata,
                                 answer_grammar=resolved.options.answer_grammar)

    def verifier(self, env: EnvSpec, options: Mapping[str, Any] | None = None) -> AnswerVerifier:
        return AnswerVerifier(env)


FAMILY = ReasoningGymFamily()
