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

from orbit.flywheel.checkpoints import MANIFEST, scan_checkpoints, split_version
from orbit.flywheel.rounds import RoundRegistry
from orbit_assets.rounds import register_round
from resources import NEXT_ROUNDS, autonomy
from resources.settings import OrbitSettings


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Registers the next free round for each new ready checkpoint; automation runs it. "
           f"This deployment: {autonomy()}. A new version of a checkpoint a round already sampled from "
           "starts no round. Each tick says what it did (a limit reached included).")
def checkpoint_sensor(context: dg.SensorEvaluationContext, settings: OrbitSettings) -> dg.SkipReason:
    if settings.next_rounds not in NEXT_ROUNDS:
        return dg.SkipReason(f"next_rounds={settings.next_rounds!r} is not one of {NEXT_ROUNDS}; nothing registered")
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
    added, newer, at_limit, waiting_manual = [], [], [], []
    for checkpoint in ready:
        if checkpoint.name in handled:
            continue
        try:
            base = split_version(checkpoint.name)[0]
            used = [e for e in registry.entries() if e.checkpoint and split_version(e.checkpoint)[0] == base]
            if registry.by_checkpoint(checkpoint.name) is None and used:
                # a new version of a checkpoint a round already sampled from (a re-materialization upstream):
                # it starts no round by itself; the round keeps the version it used
                context.log.warning(f"{checkpoint.name}: a newer version of {used[0].checkpoint}, which round "
                                    f"{used[0].round} sampled from; not starting a round (to sample from it: "
                                    f"orbit round add --policy '{checkpoint.policy}')")
                newer.append(checkpoint.name)
            elif registry.by_checkpoint(checkpoint.name) is None:
                if settings.next_rounds == "manual":
                    waiting_manual.append(checkpoint.name)
                    continue  # looked at again every tick: listed until a user starts its round
                if len(registry.entries()) >= settings.max_rounds:
                    context.log.warning(f"{checkpoint.name}: max_rounds={settings.max_rounds} reached; not registering")
                    at_limit.append(checkpoint.name)
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
    if newer:
        parts.append(f"newer versions {newer} start no round (their rounds keep the version they sampled)")
    if at_limit:
        parts.append(f"MAX_ROUNDS REACHED: {len(registry.entries())} rounds >= max_rounds={settings.max_rounds}; "
                     f"checkpoint(s) {at_limit} start no round (raise $ORBIT_MAX_ROUNDS, or `orbit round add`)")
    if waiting_manual:
        parts.append(f"next_rounds=manual: checkpoint(s) {waiting_manual} wait for a user to start their round "
                     "(`orbit round add --policy <its policy>`)")
    return dg.SkipReason("; ".join(parts))


def _version_key(path) -> str:
    """A malformed checkpoint's cursor entry: its name and its manifest's modification time."""
    try:
        return f"{path.name}@{(path / MANIFEST).stat().st_mtime_ns}"
    except OSError:
        return f"{path.name}@gone"
