"""Best-of-N: attempts per solved task, adaptive vs fixed N at equal total budget.

Each population is a set of tasks with per-task pass probabilities; the outcome
of (task, sample_idx) is a fixed coin flip, so every schedule sees the same
outcomes (common random numbers). Rows, for a budget of N x tasks:

* ``fixed N``: N attempts per task;
* ``adaptive``: stop a task at its first pass and move the rest of the budget to unsolved tasks;
* ``adaptive cap N``: the same, but no task gets more than N attempts.

``ratio`` is fixed N's attempts per solved task divided by the row's (goal: >= 2
at equal or better coverage). ``compare`` works on any sampler, e.g. an env
played by the embedded policy.

    .venv/bin/python bench/bench_best_of_n.py
"""

import asyncio
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orbit.policies.best_of_n import BestOfNStats, Sampler, adaptive, fixed_n  # noqa: E402
from orbit.io.schema import stable_hash  # noqa: E402

TASKS = 1000
N = 8
POPULATIONS = {
    "Beta(2,2)": (2.0, 2.0, 0.0),
    "Beta(1,1)": (1.0, 1.0, 0.0),
    "Beta(1,3)": (1.0, 3.0, 0.0),
    "Beta(0.5,0.5)": (0.5, 0.5, 0.0),
    "Beta(2,2)+20% never": (2.0, 2.0, 0.2),
}


@dataclass(frozen=True)
class Row:
    population: str
    schedule: str
    stats: BestOfNStats


def simulated_sampler(pass_rates: dict[str, float]) -> Sampler:
    async def sample(task_id: str, sample_idx: int) -> tuple[dict, bool]:
        draw = int(stable_hash("bench.coin", task_id, sample_idx), 16) / 16 ** 20
        return {"task_id": task_id, "sample_idx": sample_idx}, draw < pass_rates[task_id]

    return sample


def beta_population(a: float, b: float, never: float, tasks: int = TASKS, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    return {f"task-{i:05d}": 0.0 if rng.random() < never else rng.betavariate(a, b) for i in range(tasks)}


async def compare(population: str, task_ids: list[str], sample: Sampler, n: int = N,
                  concurrency: int = 16) -> list[Row]:
    """Fixed N, adaptive and adaptive capped at N on the same sampler, all with budget n x tasks."""
    budget = n * len(task_ids)
    fixed = await fixed_n(task_ids, sample, n, concurrency=concurrency)
    moved = await adaptive(task_ids, sample, budget, concurrency=concurrency)
    capped = await adaptive(task_ids, sample, budget, concurrency=concurrency, max_per_task=n)
    return [Row(population, f"fixed N={n}", fixed.stats), Row(population, "adaptive", moved.stats),
            Row(population, f"adaptive cap {n}", capped.stats)]


def game_sampler(env: str, tasks: int, options: dict, round_key: str = "r0000", policy=None) -> tuple[list[str], Sampler]:
    """An embedded policy (uniform by default) playing ``env``: a real rollout and the replay verifier per attempt."""
    from orbit.envs import GenerationRequest, env_spec, family_of
    from orbit.policies.table_policy import TablePolicy
    from orbit.stages.verify import verify_record

    spec = env_spec(env)
    family = family_of(spec)
    verifier = family.verifier(spec)
    request = GenerationRequest(env=spec, round_key=round_key, num_tasks=tasks, samples_per_task=1, options=options)
    by_id = dict(family.policy_tasks(request))
    policy = policy or TablePolicy()

    async def complete(messages, tools, step, seed, decoding=None):
        return await policy.acomplete(messages, tools, seed=seed, decoding=decoding)

    async def sample(task_id: str, sample_idx: int) -> tuple[dict, bool]:
        record = await family.rollout(request, by_id[task_id], sample_idx, policy.id, complete)
        return record, verify_record(record, verifier, spec.pass_threshold)[1]

    return list(by_id), sample


def format_table(rows: list[Row]) -> str:
    header = f"{'population':<22}{'schedule':<17}{'budget':>8}{'attempts':>10}{'solved':>8}" \
             f"{'coverage':>10}{'att/solved':>12}{'ratio':>8}"
    lines = [header, "-" * len(header)]
    baseline = {}
    for row in rows:
        s = row.stats
        baseline.setdefault(row.population, s.attempts_per_solved)
        ratio = baseline[row.population] / s.attempts_per_solved
        lines.append(f"{row.population:<22}{row.schedule:<17}{s.budget:>8}{s.attempts:>10}{s.tasks_solved:>8}"
                     f"{s.coverage:>10.3f}{s.attempts_per_solved:>12.2f}{ratio:>7.2f}x")
    return "\n".join(lines)


def main() -> None:
    rows = []
    for name, (a, b, never) in POPULATIONS.items():
        rates = beta_population(a, b, never)
        rows += asyncio.run(compare(name, list(rates), simulated_sampler(rates)))
    from orbit.flywheel.noise_study import run_flywheel

    opponent = {"opponent": {"kind": "mcts", "simulations": 30}}
    task_ids, sampler = game_sampler("tic_tac_toe", 200, opponent, round_key="r0100")
    rows += asyncio.run(compare("ttt uniform policy", task_ids, sampler))
    trained = run_flywheel("tic_tac_toe", rounds=4, options=opponent).policy
    task_ids, sampler = game_sampler("tic_tac_toe", 200, opponent, round_key="r0100", policy=trained)
    rows += asyncio.run(compare("ttt after 4 rounds", task_ids, sampler))
    print(f"best-of-N, {TASKS} simulated tasks per Beta population, and 200 real tic_tac_toe tasks played by the "
          f"embedded policy vs MCTS-30 (uniform, and after 4 flywheel rounds), replay verifier in the loop; "
          f"budget N x tasks with N={N}\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
