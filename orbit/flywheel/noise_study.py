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


# ---- the real-LLM flywheel, clean against noisy ---------------------------------------------------------------
# `make flywheel-llm` and `make flywheel-llm LLM_NOISE=0.3 LLM_HOME=...` turn the same flywheel from the same start
# (base model, seeds, items); only the verifier that picks the training rows differs. `compare_llm_runs` reads both
# lakes: g as each run's own verifier measured it (the noisy one flips verdicts, so its p is biased), and g on the
# held-out set, which the clean verifier scores in both runs.


def compare_llm_runs(clean_lake, noisy_lake, noise: float | None = None) -> list[dict]:
    from orbit.flywheel import heldout
    from orbit.io.lakefs import lake_path
    from orbit.flywheel.report import fits, heldout_fits, per_round

    out = []
    for label, lake_root in (("clean", clean_lake), (f"noisy{'' if noise is None else f' eps={noise:g}'}", noisy_lake)):
        lake_root = lake_path(lake_root)
        fit_rows = {r["env"]: r for r in fits(per_round(lake_root), 0.5).to_pylist()}
        rounds = sorted(p.stem for p in (lake_root / "reports" / "heldout").glob("r[0-9][0-9][0-9][0-9].json"))
        held = {r["env"]: r for r in heldout_fits(heldout.table(lake_root, rounds))}
        for env in sorted(set(fit_rows) | set(held)):
            f, h = fit_rows.get(env, {}), held.get(env, {})
            out.append({"run": label, "env": env, "rounds": f.get("rounds"), "p_first": f.get("p_first"),
                        "p_last": f.get("p_last"), "g": f.get("g"), "g_low": f.get("g_low"), "g_high": f.get("g_high"),
                        "heldout_p_first": h.get("p_first"), "heldout_p_last": h.get("p_last"),
                        "heldout_g": h.get("g"), "heldout_g_low": h.get("g_low"), "heldout_g_high": h.get("g_high")})
    return out


def main(argv=None) -> int:  # python -m orbit.flywheel.noise_study CLEAN_LAKE NOISY_LAKE [EPSILON]
    import json
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) not in (2, 3):
        print("usage: python -m orbit.flywheel.noise_study CLEAN_LAKE NOISY_LAKE [EPSILON]", file=sys.stderr)
        return 2
    rows = compare_llm_runs(argv[0], argv[1], float(argv[2]) if len(argv) == 3 else None)
    cols = list(rows[0]) if rows else []
    print("  ".join(cols))
    for r in rows:
        print("  ".join("-" if r[c] is None else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    print(json.dumps(rows, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
