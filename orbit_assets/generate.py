"""Generate: the raw samples of one round x env partition (and the CFR tables they use)."""

import json
from pathlib import Path
from typing import Iterator, List, Optional

import dagster as dg
import pyarrow as pa

from orbit.envs import GenerationRequest, env_spec, envs, family_of
from orbit.policies.base import PolicyUnavailable
from orbit.policies.uri import InvalidPolicyURI, parse_policy_uri
from orbit.flywheel.rounds import RoundEntry
from orbit.stages.generate import SamplingPlan, run_sampling
from orbit.io import lake
from orbit.envs.openspiel.cfr import CFR_SCHEMA, solve_cfr
from orbit.envs.openspiel.family import cfr_table_file, unsolved_cfr_configs
from orbit.io.importer import ImportCounts, import_jsonl
from orbit.io.lakefs import lake_path
from orbit.io.keys import round_base_seed, round_index
from orbit.io.lake import ArrowStream
from orbit.io.schema import RECORD_SCHEMA, records_to_batch
from orbit_assets import checks
from orbit_assets.automation import new_partition
from orbit_assets.key_checks import refuse_invalid_partition
from orbit_assets.partitions import round_and_env, round_env_partitions
from orbit_assets.rounds import ensure_registered, refuse_duplicate_run, stamp_run_tags
from resources.policies import PolicyResource
from resources.settings import OrbitSettings


# The Dagster pool of the sampling step: its limit is how many partitions may sample at once across every run of
# the instance (`dagster instance concurrency set orbit_sampling 1` for one llama.cpp server); unlimited until set.
SAMPLING_POOL = "orbit_sampling"


class RawSamplesConfig(dg.Config):
    num_tasks: Optional[int] = None
    """Tasks in this partition; unset: the round's registered size, else the env's default."""
    samples_per_task: Optional[int] = None
    """Generation passes per task; unset: the round's registered size, else the env's default."""
    base_seed: Optional[int] = None
    """Task seeds are base_seed, base_seed + 1, ...; unset, each round draws fresh tasks
    (round index x 1,000,000 + i). Pin it to replay the same task set every round."""
    options_json: str = "{}"
    """JSON object overriding the env's options, e.g. {"opponent": {"kind": "mcts", "simulations": 50}}."""
    import_jsonl: Optional[str] = None
    """A JSONL file of records to import into this partition (source=import)."""
    generators: bool = True
    """Run the env's own scripted or self-play generator, and sample the round's registered policy
    (false: only an explicit `policy` and imports)."""
    policy: Optional[str] = None
    """Policy URI to sample from (openai:<base_url>#<model>, embedded:uniform, embedded:<checkpoint>);
    defaults to the round's policy in the round registry, if any."""
    best_of: Optional[int] = None
    """Fixed N samples per task; with budget also unset, the round's registered size decides."""
    budget: Optional[int] = None
    """Adaptive: total policy samples for the partition (default: the round's registered size, else
    policy_samples_per_task x tasks)."""
    policy_samples_per_task: int = 4
    """Adaptive: mean budget per task when no budget is given."""
    dpo: bool = False
    """Adaptive: keep sampling solved tasks until they also have a failed sample (for DPO pairs)."""


class CfrConfig(dg.Config):
    envs: Optional[List[str]] = None
    """Solve the CFR bots of these envs only (unset: every env); configurations solved before are kept."""


@dg.asset(
    group_name="generate",
    description="CFR average policies of every game configuration a CFR bot uses, one row per (info state, action).",
    kinds={"parquet", "openspiel"},
)
def cfr_policies(context: dg.AssetExecutionContext, config: CfrConfig, settings: OrbitSettings) -> pa.Table:
    envs = [env_spec(e) for e in config.envs] if config.envs is not None else list(envs().values())
    path = cfr_table_file(settings.lake_path())
    tables = [lake.read_table(path) if path.exists() else CFR_SCHEMA.empty_table()]  # solved before: kept
    for game, params, iterations in unsolved_cfr_configs(envs, settings.lake_path()):
        context.log.info(f"CFR {game} {params} x{iterations}")
        tables.append(solve_cfr(game, params, iterations))
    return pa.concat_tables(tables)


@dg.asset(
    partitions_def=round_env_partitions,
    group_name="generate",
    deps=[cfr_policies],
    automation_condition=new_partition,
    description="Raw samples of one round x env: the env's scripted or self-play generator, best-of-N samples "
    "of the round's policy, and JSONL imports.",
    kinds={"parquet"},
    pool=SAMPLING_POOL,
    check_specs=[checks.RAW_SAMPLES_SCHEMA],
)
def raw_samples(context: dg.AssetExecutionContext, config: RawSamplesConfig, settings: OrbitSettings,
                policies: PolicyResource) -> Iterator:
    refuse_invalid_partition(context.partition_key)
    refuse_duplicate_run(context)
    round_key, env = round_and_env(context.partition_key)
    spec = env_spec(env)
    # the round's registry entry; a round added only as a partition (UI, GraphQL) is registered here
    entry = ensure_registered(round_key, settings, context.instance)
    stamp_run_tags(context.instance, context.run.run_id, round_key, settings.lake_path(), context.run, entry)
    size = entry.size()
    try:
        overrides = json.loads(config.options_json)
    except ValueError as exc:
        raise dg.Failure(f"options_json is not JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise dg.Failure("options_json must be a JSON object")
    if config.import_jsonl and not lake_path(config.import_jsonl).is_file():  # a file or an s3:// object
        raise dg.Failure(f"import_jsonl: {config.import_jsonl} is not a file")
    request = GenerationRequest(
        env=spec,
        round_key=round_key,
        num_tasks=_first(config.num_tasks, size.get("num_tasks"), spec.num_tasks),
        samples_per_task=_first(config.samples_per_task, size.get("samples_per_task"), spec.samples_per_task),
        base_seed=round_base_seed(round_index(round_key)) if config.base_seed is None else config.base_seed,
        workers=settings.workers,
        options=overrides,
        lake=settings.lake_path(),
    )
    family = family_of(spec)
    uri = _policy_uri(config, settings, entry, spec)
    policy_records = _sample_policy(context, uri, config, size, policies, request, family) if uri else []
    by_source: dict[str, int] = {}
    imported = ImportCounts()

    def batches():
        if config.generators:
            yield from family.generate(request)
        if policy_records:
            yield records_to_batch(policy_records)
        if config.import_jsonl:
            yield from import_jsonl(config.import_jsonl, env, round_key, imported)

    def counted():
        for batch in batches():
            for source, n in zip(*_value_counts(batch.column("source"))):
                by_source[source] = by_source.get(source, 0) + n
            yield batch

    context.add_output_metadata({"round": round_key, "env": env, "tasks": request.num_tasks,
                                 "samples_per_task": request.samples_per_task,
                                 "round_policy": entry.policy, "round_sizes": entry.sizes}, output_name="result")

    def summary() -> dict:
        out = {f"rows_{s}": n for s, n in sorted(by_source.items())}
        if config.import_jsonl:
            out.update(import_lines=imported.lines, import_records=imported.records,
                       import_skipped_blank=imported.skipped_blank)
        return out

    yield dg.Output(ArrowStream(RECORD_SCHEMA, counted(), summary=summary))
    yield checks.raw_samples_schema(settings.lake_path(), round_key, env)  # the file is written by now


def _value_counts(column: pa.Array) -> tuple[list[str], list[int]]:
    counts = column.value_counts()
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def _first(*values):
    return next(v for v in values if v is not None)


def _policy_uri(config: RawSamplesConfig, settings: OrbitSettings, entry: RoundEntry, spec) -> str | None:
    """The configured policy, else the round's registered policy for the envs the flywheel samples and the
    policy can play (an embedded table policy plays the game envs only)."""
    if config.policy:
        return config.policy
    if not config.generators or (settings.policy_envs is not None and spec.name not in settings.policy_envs):
        return None
    if parse_policy_uri(entry.policy).scheme == "embedded" and spec.family != "openspiel":
        return None
    return entry.policy


def _sample_policy(context: dg.AssetExecutionContext, uri: str, config: RawSamplesConfig, size: dict,
                   policies: PolicyResource, request: GenerationRequest, family) -> list[dict]:
    """Best-of-N policy samples of the partition, verified in the loop; fails before anything is written
    when the policy cannot serve."""
    if not hasattr(family, "rollout"):
        raise dg.Failure(f"env {request.env.name!r} has no policy rollouts; unset `policy` for it")
    try:
        policy = policies.load(uri)
        policy.check()
    except (InvalidPolicyURI, PolicyUnavailable) as exc:
        raise dg.Failure(f"policy {uri} is not usable: {exc}") from exc
    best_of, budget = config.best_of, config.budget
    if best_of is None and budget is None:  # the round's registered size
        best_of, budget = size.get("best_of"), size.get("budget")
    plan = SamplingPlan(best_of=best_of, budget=budget, samples_per_task=config.policy_samples_per_task,
                        dpo=config.dpo, concurrency=policies.concurrency_for(uri))
    spec = request.env
    cache = policies.request_cache(request.round_key, spec.name)
    try:
        records, stats = run_sampling(request, family, family.verifier(spec), spec.pass_threshold, policy, plan, cache)
        hits, misses = cache.hits, cache.misses
    finally:
        cache.close()
    context.add_output_metadata({
        "policy": uri, "policy_strategy": plan.strategy, "policy_budget": stats.budget,
        "policy_attempts": stats.attempts, "policy_passes": stats.passes, "policy_tasks_solved": stats.tasks_solved,
        "policy_coverage": float(stats.coverage), "request_cache_hits": hits, "request_cache_misses": misses,
        "policy_constrained": str(getattr(policy, "constrained_mode", None)),
        **{f"policy_{k}": dg.MetadataValue.float(float(v)) if isinstance(v, float) else v
           for k, v in stats.accounting.to_json().items() if v is not None},
        **({} if stats.accounting.cost is not None else {"policy_cost": dg.MetadataValue.null()}),
    }, output_name="result")
    return records
