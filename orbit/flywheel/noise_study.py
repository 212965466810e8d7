"""The flywheel turned in memory, to measure how verifier noise collapses g.

Each round samples the current embedded policy (best-of-N on the same tasks),
keeps what a verifier wrapped in ``NoisyVerifier(epsilon)`` passes, deduplicates
the cumulative set by task keeping the best (the filter stage's semantics),
and trains the next policy on it. Yield is measured with the clean verifier, so
the fitted g says how much the policy really improved. Every run starts from
the same uniform policy and seeds, so runs differ only in epsilon.
"""

from dataclasses import dataclass, field

import pyarrow as pa

from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.stages.filter import filter_table
from orbit.flywheel.growth import GrowthFit, NoisyVerifier, fit_growth
from orbit.io.keys import round_base_seed, round_key
from orbit.policies.table_policy import TablePolicy
from orbit.stages.generate import SamplingPlan, run_sampling
from orbit.io.schema import VERIFIED_SCHEMA
from orbit.stages.verify import verify_record


@dataclass
class FlywheelRun:
    env: str
    epsilon: float
    pass_rates: list[float] = field(default_factory=list)  # clean verifier
    noisy_pass_rates: list[float] = field(default_factory=list)  # what the noisy verifier reported
    passes: list[int] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    training_rows: list[int] = field(default_factory=list)
    fit: GrowthFit | None = None
    policy: TablePolicy | None = None  # trained on the last round: what a next round would sample


def run_flywheel(env: str, *, rounds: int = 5, epsilon: float = 0.0, tasks: int = 200, best_of: int = 4,
                 options: dict | None = None, alpha: float = 0.1, temperature: float = 0.5,
                 noise_seed: int = 0) -> FlywheelRun:
    spec = env_spec(env)
    family = family_of(spec)
    clean = family.verifier(spec)
    noisy = NoisyVerifier(clean, epsilon, spec.pass_threshold, seed=noise_seed)
    policy = TablePolicy()
    kept: pa.Table = VERIFIED_SCHEMA.empty_table()
    run = FlywheelRun(env=env, epsilon=epsilon)
    for t in range(rounds):
        request = GenerationRequest(env=spec, round_key=round_key(t), num_tasks=tasks, samples_per_task=best_of,
                                    base_seed=round_base_seed(t), options=dict(options or {}))
        records, stats = run_sampling(request, family, clean, spec.pass_threshold, policy,
                                      SamplingPlan(best_of=best_of))
        rows, noisy_passes = [], 0
        for record in records:
            score, passed, reasons = verify_record(record, noisy, spec.pass_threshold)
            noisy_passes += passed
            rows.append({**record, "claimed_score": record["score"], "score": score, "passed": passed,
                         "reasons": reasons, "verifier": f"{noisy.name}@{noisy.version}"})
        run.passes.append(stats.passes)
        run.attempts.append(stats.attempts)
        run.pass_rates.append(stats.passes / stats.attempts if stats.attempts else 0.0)
        run.noisy_pass_rates.append(noisy_passes / len(rows) if rows else 0.0)
        verified = pa.Table.from_pylist(rows, schema=VERIFIED_SCHEMA)
        kept = filter_table(pa.concat_tables([kept, filter_table(verified)]))
        run.training_rows.append(kept.num_rows)
        policy = TablePolicy.train(kept, name=f"{env}-eps{epsilon:g}-{round_key(t + 1)}", alpha=alpha,
                                   temperature=temperature)
    run.fit = fit_growth(range(rounds), run.passes, run.attempts)
    run.policy = policy
    return run
