"""Sensors that keep the instance honest: rounds and the registry agree; killed runs end as failed."""

import dagster as dg

from orbit_assets.rounds import reconcile_rounds
from orbit_assets.runs import sweep
from resources.settings import OrbitSettings


@dg.sensor(minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers rounds added only as partitions (Add partition in the UI, GraphQL) with the "
           "default policy and size, and adds the partitions of registered rounds.")
def round_registry_sensor(context: dg.SensorEvaluationContext, settings: OrbitSettings) -> dg.SkipReason:
    changes = reconcile_rounds(context.instance, settings)
    for r in changes["registered"]:
        context.log.info(f"registered round {r} (added as a partition only)")
    return dg.SkipReason(f"registered {changes['registered']}, partitions added {changes['partitions_added']}")


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Marks runs whose worker process is gone as failed (so retries can follow) and sweeps the "
           "temporary files killed writers left in the lake.")
def run_watchdog(context: dg.SensorEvaluationContext, settings: OrbitSettings) -> dg.SkipReason:
    done = sweep(context.instance, settings.lake_path())
    return dg.SkipReason(f"failed {done['runs_failed']} dead run(s); removed {done['tmp_removed']} stale temp file(s)")
