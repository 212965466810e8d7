"""The checkpoint sensor: each new ready checkpoint becomes a new round.

It watches the checkpoints folder (external trainers' output with a manifest
naming the served endpoint, and the embedded trainer's checkpoints). A new
checkpoint is registered through ``register_round`` as the next free round
(never an existing one), which adds the round's partition; the automation
sensor then materializes the round like any other, so nothing runs twice. The
cursor holds the checkpoints already handled, and the registry remembers which
checkpoint each round came from, so a restart never adds a round twice.
Half-written checkpoints (no manifest yet) are left for a later tick; a malformed manifest (or a
checkpoint that cannot be registered) is skipped with a warning in the tick's log and the cursor moves
on, so later checkpoints still register; a rewritten manifest is read again.
"""

import json

import dagster as dg

from orbit.flywheel.checkpoints import MANIFEST, scan_checkpoints
from orbit.flywheel.rounds import RoundRegistry
from orbit_assets.rounds import register_round
from resources.settings import OrbitSettings


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers the next free round for each new ready checkpoint; automation runs it.")
def checkpoint_sensor(context: dg.SensorEvaluationContext, settings: OrbitSettings) -> dg.SkipReason:
    handled = set(json.loads(context.cursor)) if context.cursor else set()
    ready, waiting, malformed = scan_checkpoints(settings.checkpoints_path())
    for reason in waiting:
        context.log.info(f"not ready: {reason}")
    skipped = []
    for path, reason in malformed:  # skipped once per version of the manifest: a rewritten one is read again
        key = _version_key(path)
        if key not in handled:
            context.log.warning(f"skipped checkpoint {path.name}: {reason}")
            skipped.append(path.name)
            handled.add(key)
    registry = RoundRegistry(settings.lake_path())
    added = []
    for checkpoint in ready:
        if checkpoint.name in handled:
            continue
        try:
            if registry.by_checkpoint(checkpoint.name) is None:
                if len(registry.entries()) >= settings.max_rounds:
                    context.log.info(f"{checkpoint.name}: max_rounds={settings.max_rounds} reached; not registering")
                    continue
                entry = register_round(checkpoint.policy, checkpoint=checkpoint.name,
                                       parent_round=checkpoint.parent_round, note=checkpoint.note,
                                       settings=settings, instance=context.instance)
                context.log.info(f"{checkpoint.name}: registered round {entry.round} with {entry.policy}")
                added.append(entry.round)
        except (ValueError, OSError) as exc:  # one checkpoint that cannot be registered never stops the others
            context.log.warning(f"skipped checkpoint {checkpoint.name}: {str(exc)[:300]}")
            skipped.append(checkpoint.name)
        handled.add(checkpoint.name)
    context.update_cursor(json.dumps(sorted(handled)))
    parts = [f"registered rounds {added}" if added else "no new checkpoint"]
    if skipped:
        parts.append(f"skipped {skipped} (see the tick's log)")
    return dg.SkipReason("; ".join(parts))


def _version_key(path) -> str:
    """A malformed checkpoint's cursor entry: its name and its manifest's modification time."""
    try:
        return f"{path.name}@{(path / MANIFEST).stat().st_mtime_ns}"
    except OSError:
        return f"{path.name}@gone"
