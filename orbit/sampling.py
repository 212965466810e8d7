"""Rejection sampling from a policy: best-of-N per task with the verifier inside the loop.

Works for any env family that can list its tasks (``policy_tasks``) and roll a
policy out on one (``rollout``). Fixed N spends N attempts per task; adaptive
(the default) spends a total budget in waves, closes a task once it has a
verified pass (in DPO mode: a pass and a fail) and moves the unused budget to
unsolved tasks, up to ``max_per_task`` attempts each. Every policy call goes
through the request cache, so a rerun of a crashed partition does not query
again what already came back.
"""

import asyncio
import math
from dataclasses import asdict, dataclass
from typing import Any

from orbit.envs.base import EnvFamily, GenerationRequest, Verifier
from orbit.policies.base import Policy, Turn
from orbit.policies.best_of_n import BestOfNStats, adaptive, fixed_n
from orbit.policies.request_cache import RequestCache, RequestKey
from orbit.verification import verify_record


@dataclass(frozen=True)
class SamplingPlan:
    best_of: int | None = None
    """Fixed N per task; None for adaptive."""
    budget: int | None = None
    """Adaptive: total attempts for the partition (default samples_per_task x tasks)."""
    samples_per_task: int = 4
    dpo: bool = False
    """Adaptive: keep sampling a solved task until it also has a failure (preference pairs)."""
    max_per_task: int | None = None
    """Adaptive: cap per task (default twice the mean budget per task)."""
    concurrency: int = 8

    @property
    def strategy(self) -> str:
        return "fixed" if self.best_of else "adaptive"

    def resolved(self, tasks: int) -> "SamplingPlan":
        if self.best_of:
            return SamplingPlan(**{**asdict(self), "budget": self.best_of * tasks, "max_per_task": self.best_of})
        budget = self.budget or self.samples_per_task * tasks
        cap = self.max_per_task or max(1, 2 * math.ceil(budget / max(tasks, 1)))
        return SamplingPlan(**{**asdict(self), "budget": budget, "max_per_task": cap})


async def sample_partition(request: GenerationRequest, family: EnvFamily, verifier: Verifier, threshold: float,
                           policy: Policy, plan: SamplingPlan, cache: RequestCache | None = None
                           ) -> tuple[list[dict], BestOfNStats]:
    tasks = dict(family.policy_tasks(request))
    task_ids = list(tasks)
    plan = plan.resolved(len(task_ids))
    meta = {"sampling": {"strategy": plan.strategy, "budget": plan.budget, "max_per_task": plan.max_per_task,
                         "dpo": plan.dpo}}

    def completer(task_id: str, sample_idx: int):
        async def complete(messages, tools, step: int, seed: int) -> Turn:
            if cache is None:
                return await policy.acomplete(messages, tools, seed=seed)
            key = RequestKey(request.round_key, request.env.name, task_id, sample_idx, policy.id, step)
            return await cache.complete(policy, key, messages, tools, seed=seed)

        return complete

    async def sample(task_id: str, sample_idx: int) -> tuple[dict, bool]:
        record = await family.rollout(request, tasks[task_id], sample_idx, policy.id,
                                      completer(task_id, sample_idx), meta)
        _, passed, _ = verify_record(record, verifier, threshold)
        return record, passed

    try:
        if plan.best_of:
            result = await fixed_n(task_ids, sample, plan.best_of, concurrency=plan.concurrency)
        else:
            result = await adaptive(task_ids, sample, plan.budget, concurrency=plan.concurrency,
                                    dpo=plan.dpo, max_per_task=plan.max_per_task)
    finally:
        await policy.aclose()
    return result.records, result.stats


def run_sampling(*args: Any, **kwargs: Any) -> tuple[list[dict], BestOfNStats]:
    """``sample_partition`` for synchronous callers."""
    return asyncio.run(sample_partition(*args, **kwargs))
