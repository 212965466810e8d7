"""Best-of-N scheduling on synthetic samplers with known per-task pass probabilities."""

import asyncio
import random

import pytest

from orbit.policies.best_of_n import adaptive, fixed_n
from orbit.io.schema import stable_hash


def synthetic_sampler(pass_rates: dict[str, float], *, jitter_s: float = 0.0):
    """Outcome of (task, sample_idx) is a fixed coin flip, whatever the schedule; records in-flight counts."""
    state = {"in_flight": 0, "max_in_flight": 0, "calls": 0}

    async def sample(task_id: str, sample_idx: int):
        state["calls"] += 1
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        await asyncio.sleep(random.random() * jitter_s)
        state["in_flight"] -= 1
        draw = int(stable_hash("coin", task_id, sample_idx), 16) / 16 ** 20
        return {"task_id": task_id, "sample_idx": sample_idx}, draw < pass_rates[task_id]

    return sample, state


def test_fixed_n_spends_n_per_task_in_order():
    rates = {"a": 1.0, "b": 0.0, "c": 0.5}
    sample, state = synthetic_sampler(rates, jitter_s=0.002)
    result = asyncio.run(fixed_n(list(rates), sample, 4, concurrency=3))
    assert [(s.task_id, s.sample_idx) for s in result.samples] == [(t, i) for t in "abc" for i in range(4)]
    stats = result.stats
    assert (stats.attempts, stats.budget, state["calls"]) == (12, 12, 12)
    c_passes = sum(s.passed for s in result.samples[8:])
    assert (stats.passes, stats.tasks_solved) == (4 + c_passes, 1 + (c_passes > 0))
    assert stats.tasks_with_pair == (0 < c_passes < 4)
    assert state["max_in_flight"] == 3


def test_adaptive_stops_on_pass_and_moves_budget_to_unsolved():
    rates = {"easy1": 1.0, "easy2": 1.0, "easy3": 1.0, "never": 0.0}
    sample, _ = synthetic_sampler(rates)
    result = asyncio.run(adaptive(list(rates), sample, budget=12))
    per_task = {t: sum(s.task_id == t for s in result.samples) for t in rates}
    assert per_task == {"easy1": 1, "easy2": 1, "easy3": 1, "never": 9}
    assert (result.stats.attempts, result.stats.tasks_solved, result.stats.attempts_per_solved) == (12, 3, 4.0)
    capped = asyncio.run(adaptive(list(rates), sample, budget=12, max_per_task=3)).stats
    assert (capped.attempts, capped.tasks_solved, capped.budget_used_share) == (6, 3, 0.5)


def test_adaptive_budget_smaller_than_tasks_goes_in_task_order():
    rates = {f"t{i}": 0.0 for i in range(5)}
    sample, _ = synthetic_sampler(rates)
    result = asyncio.run(adaptive(list(rates), sample, budget=3))
    assert [s.task_id for s in result.samples] == ["t0", "t1", "t2"]


def test_adaptive_dpo_waits_for_a_pass_and_a_fail():
    rates = {f"t{i}": 0.5 for i in range(20)} | {"always": 1.0}
    sample, _ = synthetic_sampler(rates)
    result = asyncio.run(adaptive(list(rates), sample, budget=200, dpo=True))
    for task in rates:
        outcomes = [s.passed for s in result.samples if s.task_id == task]
        if task == "always":
            assert not any(o is False for o in outcomes)
        else:
            assert set(outcomes) == {True, False} and set(outcomes[:-1]) != {True, False}
    assert result.stats.tasks_with_pair == 20


def test_adaptive_is_deterministic_whatever_the_timing():
    rng = random.Random(0)
    rates = {f"t{i}": rng.betavariate(0.7, 1.5) for i in range(40)}
    runs = []
    for _ in range(2):
        sample, state = synthetic_sampler(rates, jitter_s=0.003)
        runs.append(asyncio.run(adaptive(list(rates), sample, budget=160, concurrency=5)))
        assert state["max_in_flight"] <= 5
    assert [(s.task_id, s.sample_idx, s.passed) for s in runs[0].samples] == [
        (s.task_id, s.sample_idx, s.passed) for s in runs[1].samples]


def test_adaptive_beats_fixed_at_equal_budget():
    rng = random.Random(1)
    rates = {f"t{i}": rng.betavariate(2.0, 2.0) for i in range(300)}
    n = 8
    sample, _ = synthetic_sampler(rates)
    fixed = asyncio.run(fixed_n(list(rates), sample, n, concurrency=16)).stats
    moved = asyncio.run(adaptive(list(rates), sample, budget=n * len(rates), concurrency=16)).stats
    capped = asyncio.run(adaptive(list(rates), sample, budget=n * len(rates), concurrency=16, max_per_task=n)).stats
    assert moved.coverage >= fixed.coverage and moved.attempts <= fixed.attempts
    assert capped.tasks_solved == fixed.tasks_solved
    assert capped.attempts_per_solved * 2 <= fixed.attempts_per_solved


def test_invalid_arguments():
    sample, _ = synthetic_sampler({"a": 1.0})
    with pytest.raises(ValueError, match="unique"):
        asyncio.run(fixed_n(["a", "a"], sample, 2))
    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(adaptive(["a"], sample, budget=2, concurrency=0))
