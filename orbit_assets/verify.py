"""Verify: every raw sample rescored by its env's verifier from the trajectory alone."""

from typing import Iterator

import dagster as dg

from orbit.io import lake
from orbit.envs import env_spec, family_of
from orbit.flywheel.growth import NoisyVerifier
from orbit.io.lake import ArrowStream
from orbit.io.schema import VERIFIED_SCHEMA
from orbit.stages.verify import VerifyCounts, verify_batches
from orbit_assets import checks
from orbit_assets.automation import upstream_updated
from orbit_assets.generate import raw_samples
from orbit_assets.partitions import round_and_env, round_env_partitions, upstream_file
from resources.settings import OrbitSettings


class VerifyConfig(dg.Config):
    noise_epsilon: float = 0.0
    """Flip each verdict with this probability (for studying a noisy verifier); 0 in production."""
    noise_seed: int = 0


@dg.asset(
    partitions_def=round_env_partitions,
    deps=[raw_samples],
    check_specs=[checks.VERIFIED_CONSERVATION],
    group_name="verify",
    automation_condition=upstream_updated,
    description="Every raw sample with its recomputed score, pass/fail and the ids of the rules it failed.",
    kinds={"parquet"},
)
def verified_samples(context: dg.AssetExecutionContext, config: VerifyConfig, settings: OrbitSettings) -> Iterator:
    round_key, env = round_and_env(context.partition_key)
    raw = upstream_file(settings.lake_path(), "raw_samples", round_key, env)
    spec = env_spec(env)
    verifier = family_of(spec).verifier(spec)
    if config.noise_epsilon:
        verifier = NoisyVerifier(verifier, config.noise_epsilon, spec.pass_threshold, seed=config.noise_seed)
    counts = VerifyCounts()

    def summary() -> dict:
        top = sorted(counts.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "rows": counts.rows, "passed": counts.passed, "failed": counts.failed,
            "pass_rate": counts.passed / counts.rows if counts.rows else 0.0,
            "verifier": f"{verifier.name}@{verifier.version}",
            "failure_reasons": dg.MetadataValue.json(dict(top)),
        }

    batches = verify_batches(lake.iter_batches(raw), verifier, spec.pass_threshold, counts)
    yield dg.Output(ArrowStream(VERIFIED_SCHEMA, batches, summary=summary))
    yield checks.verified_conservation(settings.lake_path(), round_key, env)  # the file is written by now
