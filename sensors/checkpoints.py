"""The checkpoint sensor: a new checkpoint registers the next round and requests its runs.

It watches the checkpoints folder (external trainers' output with a manifest
naming the served endpoint, and the embedded trainer's checkpoints). The cursor
holds the checkpoints already handled, and the round registry remembers which
checkpoint each round came from, so a restart never adds a round twice; run
keys make the run requests idempotent too. Half-written checkpoints (no
readable manifest yet) are left for a later tick.
"""

import json

import dagster as dg

from orbit.checkpoints import scan_checkpoints
from orbit.envs import ENV_NAMES
from orbit.rounds import RoundRegistry
from orbit_assets.jobs import round_job
from orbit_assets.partitions import ROUNDS, round_env_key, round_partitions
from resources.settings import OrbitSettings


@dg.sensor(job=round_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers a round for each new ready checkpoint and runs it for every env.")
def checkpoint_sensor(context: dg.SensorEvaluationContext, settings: OrbitSettings) -> dg.SensorResult:
    handled = set(json.loads(context.cursor)) if context.cursor else set()
    ready, waiting = scan_checkpoints(settings.checkpoints_path())
    for reason in waiting:
        context.log.info(f"not ready: {reason}")
    registry = RoundRegistry(settings.lake_path())
    new_rounds, run_requests = [], []
    for checkpoint in ready:
        if checkpoint.name in handled:
            continue
        entry = registry.by_checkpoint(checkpoint.name)
        if entry is not None and context.instance.has_dynamic_partition(ROUNDS, entry.round):
            handled.add(checkpoint.name)  # registered and added by someone else (e.g. `orbit run`), who runs it
            continue
        if entry is None:
            if len(registry.entries()) >= settings.max_rounds:
                context.log.info(f"{checkpoint.name}: max_rounds={settings.max_rounds} reached; not registering")
                continue
            entry = registry.add(checkpoint.policy, checkpoint=checkpoint.name, parent_round=checkpoint.parent_round,
                                 note=checkpoint.note)
            context.log.info(f"{checkpoint.name}: registered round {entry.round} with {entry.policy}")
        if not context.instance.has_dynamic_partition(ROUNDS, entry.round) and entry.round not in new_rounds:
            new_rounds.append(entry.round)
        for env in ENV_NAMES:
            run_requests.append(dg.RunRequest(
                run_key=f"{entry.round}|{env}", partition_key=round_env_key(entry.round, env),
                tags={"orbit/round": entry.round, "orbit/policy": entry.policy, "orbit/checkpoint": checkpoint.name},
            ))
        handled.add(checkpoint.name)
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[round_partitions.build_add_request(new_rounds)] if new_rounds else [],
        cursor=json.dumps(sorted(handled)),
    )
