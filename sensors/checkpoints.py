"""The checkpoint sensor: each new ready checkpoint becomes a new round.

It watches the checkpoints folder (external trainers' output with a manifest
naming the served endpoint, and the embedded trainer's checkpoints). A new
checkpoint is registered through ``register_round`` as the next free round
(never an existing one), which adds the round's partition; the automation
sensor then materializes the round like any other, so nothing runs twice. The
cursor holds the checkpoints already handled, and the registry remembers which
checkpoint each round came from, so a restart never adds a round twice.
Half-written checkpoints (no readable manifest yet) are left for a later tick.
"""

import json

import dagster as dg

from orbit.flywheel.checkpoints import scan_checkpoints
from orbit.flywheel.rounds import RoundRegistry
from orbit_assets.rounds import register_round
from resources.settings import OrbitSettings


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers the next free round for each new ready checkpoint; automation runs it.")
def checkpoint_sensor(context: dg.SensorEvaluationContext, settings: OrbitSettings) -> dg.SkipReason:
    handled = set(json.loads(context.cursor)) if context.cursor else set()
    ready, waiting = scan_checkpoints(settings.checkpoints_path())
    for reason in waiting:
        context.log.info(f"not ready: {reason}")
    registry = RoundRegistry(settings.lake_path())
    added = []
    for checkpoint in ready:
        if checkpoint.name in handled:
            continue
        if registry.by_checkpoint(checkpoint.name) is None:
            if len(registry.entries()) >= settings.max_rounds:
                context.log.info(f"{checkpoint.name}: max_rounds={settings.max_rounds} reached; not registering")
                continue
            entry = register_round(checkpoint.policy, checkpoint=checkpoint.name,
                                   parent_round=checkpoint.parent_round, note=checkpoint.note,
                                   settings=settings, instance=context.instance)
            context.log.info(f"{checkpoint.name}: registered round {entry.round} with {entry.policy}")
            added.append(entry.round)
        handled.add(checkpoint.name)
    context.update_cursor(json.dumps(sorted(handled)))
    return dg.SkipReason(f"registered rounds {added}" if added else "no new checkpoint")
