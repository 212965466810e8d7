"""Best-of-N scheduling over any sampler, with the verifier inside the loop.

A sampler ``await sample(task_id, sample_idx) -> (record, passed)`` produces one
verified attempt. ``fixed_n`` spends exactly N attempts on every task.
``adaptive`` spends a total budget in round-robin waves: each wave gives one
attempt to every still-open task (in input order), and a task closes once it has
a pass (with ``dpo=True``: a pass and a fail), or has had ``max_per_task``
attempts. Budget a solved task does not use goes to the unsolved ones. Which
attempts run depends only on the sampler's outcomes, never on timing, and the
samples come back ordered by task then sample index.
"""

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from orbit.policies.bounded import map_bounded

Sampler = Callable[[str, int], Awaitable[tuple[dict, bool]]]


@dataclass(frozen=True)
class Sample:
    task_id: str
    sample_idx: int
    record: dict
    passed: bool


@dataclass
class BestOfNStats:
    tasks: int
    budget: int
    attempts: int = 0
    passes: int = 0
    tasks_solved: int = 0
    tasks_with_pair: int = 0
    accounting: Any = None
    """What the policy calls spent (``orbit.policies.accounting.Accounting``), when the caller measured it."""

    @property
    def coverage(self) -> float:
        """Share of tasks with at least one verified pass."""
        return self.tasks_solved / self.tasks if self.tasks else 0.0

    @property
    def attempts_per_solved(self) -> float:
        """Attempts spent per solved task (all attempts, including those on unsolved tasks)."""
        return self.attempts / self.tasks_solved if self.tasks_solved else float("inf")

    @property
    def budget_used_share(self) -> float:
        """Attempts as a share of the budget."""
        return self.attempts / self.budget if self.budget else 0.0


@dataclass
class BestOfNResult:
    samples: list[Sample]
    stats: BestOfNStats

    @property
    def records(self) -> list[dict]:
        return [s.record for s in self.samples]


async def fixed_n(task_ids: Sequence[str], sample: Sampler, n: int, *, concurrency: int = 8) -> BestOfNResult:
    """Exactly ``n`` attempts per task."""
    tasks = _unique(task_ids)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    samples = await _run_attempts([(t, i) for t in tasks for i in range(n)], sample, concurrency)
    return _result(tasks, samples, budget=n * len(tasks))


async def adaptive(task_ids: Sequence[str], sample: Sampler, budget: int, *, concurrency: int = 8,
                   dpo: bool = False, max_per_task: int | None = None) -> BestOfNResult:
    """At most ``budget`` attempts in round-robin waves over the tasks still open."""
    tasks = _unique(task_ids)
    if budget < 0 or (max_per_task is not None and max_per_task < 1):
        raise ValueError("budget must be >= 0 and max_per_task >= 1")
    attempts = {t: 0 for t in tasks}
    passes = {t: 0 for t in tasks}
    samples: list[Sample] = []

    def is_open(task: str) -> bool:
        done = passes[task] > 0 and (not dpo or passes[task] < attempts[task])
        return not done and (max_per_task is None or attempts[task] < max_per_task)

    open_tasks = list(tasks)
    while open_tasks and len(samples) < budget:
        wave = open_tasks[: budget - len(samples)]
        results = await _run_attempts([(t, attempts[t]) for t in wave], sample, concurrency)
        for s in results:
            attempts[s.task_id] += 1
            passes[s.task_id] += s.passed
        samples.extend(results)
        open_tasks = [t for t in tasks if is_open(t)]
    order = {t: i for i, t in enumerate(tasks)}
    samples.sort(key=lambda s: (order[s.task_id], s.sample_idx))
    return _result(tasks, samples, budget=budget)


async def _run_attempts(jobs: list[tuple[str, int]], sample: Sampler, concurrency: int) -> list[Sample]:
    async def attempt(job: tuple[str, int]) -> Sample:
        record, passed = await sample(*job)
        return Sample(job[0], job[1], record, bool(passed))

    return await map_bounded(attempt, jobs, concurrency)


def _unique(task_ids: Sequence[str]) -> list[str]:
    tasks = list(task_ids)
    if len(set(tasks)) != len(tasks):
        raise ValueError("task ids must be unique")
    return tasks


def _result(tasks: list[str], samples: list[Sample], budget: int) -> BestOfNResult:
    stats = BestOfNStats(tasks=len(tasks), budget=budget, attempts=len(samples),
                         passes=sum(s.passed for s in samples))
    outcomes: dict[str, set[bool]] = {}
    for s in samples:
        outcomes.setdefault(s.task_id, set()).add(s.passed)
    stats.tasks_solved = sum(True in o for o in outcomes.values())
    stats.tasks_with_pair = sum(o == {True, False} for o in outcomes.values())
    return BestOfNResult(samples, stats)
