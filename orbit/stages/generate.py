"""Rejection sampling from a policy: best-of-N per task with the verifier inside the loop.

Works for any env family that can list its tasks (``policy_tasks``) and roll a
policy out on one (``rollout``). Fixed N spends N attempts per task; adaptive
(the default) spends a total budget in waves, closes a task once it has a
verified pass (in DPO mode: a pass and a fail) and moves the unused budget to
unsolved tasks, up to ``max_per_task`` attempts each. Every policy call goes
through the request cache, so a rerun of a crashed partition does not query
again what already came back.

Each request carries the env's ``Decoding`` (answer budget, legal answers); env option
``max_tokens`` overrides the rollout's budget. The partition's totals (``Accounting``:
requests, cached, tokens, seconds, requests/s, tokens/s, cost) come back on the stats
(``stats.accounting``), and every record's ``metadata.sampling`` carries the wall
``seconds`` of the partition's sampling and the endpoint's ``constrained`` mode.
"""

import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from orbit.envs.base import EnvFamily, GenerationRequest, Verifier
from orbit.policies.accounting import Accounting
from orbit.policies.base import Decoding, Policy, Turn, accepts_decoding
from orbit.policies.best_of_n import BestOfNStats, adaptive, fixed_n
from orbit.policies.request_cache import RequestCache, RequestKey
from orbit.stages.verify import verify_record


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
    env_max_tokens = request.option("max_tokens")
    takes_decoding = accepts_decoding(policy)
    accounting = Accounting()
    started = time.perf_counter()
    if hasattr(policy, "resolve_constrained") and getattr(policy, "constrained_mode", "off") is None:
        await asyncio.to_thread(policy.resolve_constrained)
    meta = {"sampling": {"strategy": plan.strategy, "budget": plan.budget, "max_per_task": plan.max_per_task,
                         "dpo": plan.dpo, "constrained": getattr(policy, "constrained_mode", None)}}

    def completer(task_id: str, sample_idx: int):
        async def complete(messages, tools, step: int, seed: int, decoding: Decoding | None = None) -> Turn:
            if env_max_tokens:
                decoding = replace(decoding or Decoding(), max_tokens=int(env_max_tokens))
            if cache is None:
                if decoding is not None and takes_decoding:
                    turn = await policy.acomplete(messages, tools, seed=seed, decoding=decoding)
                else:
                    turn = await policy.acomplete(messages, tools, seed=seed)
                hit = False
            else:
                key = RequestKey(request.round_key, request.env.name, task_id, sample_idx, policy.id, step)
                turn, hit = await cache.lookup_or_ask(policy, key, messages, tools, seed=seed, decoding=decoding)
            accounting.add(turn, cached=hit)
            return turn

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
    accounting.seconds = time.perf_counter() - started
    result.stats.accounting = accounting
    return [_with_seconds(r, accounting.seconds) for r in result.records], result.stats


def _with_seconds(record: dict, seconds: float) -> dict:
    """The record with the partition's sampling wall time in ``metadata.sampling.seconds``."""
    meta = json.loads(record.get("metadata") or "{}")
    if isinstance(meta.get("sampling"), dict):
        meta["sampling"]["seconds"] = round(seconds, 3)
        record = {**record, "metadata": json.dumps(meta, sort_keys=True, ensure_ascii=False)}
    return record


def run_sampling(*args: Any, **kwargs: Any) -> tuple[list[dict], BestOfNStats]:
    """``sample_partition`` for synchronous callers."""
    return asyncio.run(sample_partition(*args, **kwargs))
