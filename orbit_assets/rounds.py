"""A round is one thing wherever it starts: one registry entry and one dynamic partition.

Every path that creates a round -- ``orbit round add``, ``orbit run``, ``orbit
flywheel``, the checkpoint sensor -- calls ``register_round``, which writes the
registry entry (the round's policy, parent, checkpoint and size) and adds the
partition. Paths that only add the partition -- *Add partition* in the Dagster
UI, GraphQL ``addDynamicPartition``, ``instance.add_dynamic_partitions`` -- are
healed by ``reconcile_rounds`` (the ``round_registry_sensor`` runs it every tick)
and, in case a run starts before the sensor's tick, by ``raw_samples`` itself,
which registers an unregistered round through the same function before it
samples. Such a round gets the default policy: the newest ready checkpoint's
policy, else ``settings.default_policy``.

A new round's index is the next one free in both the registry and the
instance's partitions, so a new checkpoint never lands on an existing round. Partitions whose key is not a valid round are left to
``key_checks`` (flagged by its sensor, refused at materialization).
"""

import dagster as dg

from orbit.flywheel.checkpoints import MANIFEST, scan_checkpoints
from orbit.io.keys import is_round_key
from orbit.policies.uri import parse_policy_uri
from orbit.flywheel.rounds import RoundEntry, RoundRegistry
from orbit_assets.partitions import ROUNDS
from resources.settings import OrbitSettings


def instance_rounds(instance: dg.DagsterInstance) -> list[str]:
    """The instance's valid round partitions (invalid keys are flagged and refused by ``key_checks``)."""
    return [key for key in instance.get_dynamic_partitions(ROUNDS) if is_round_key(key)]


def default_policy(settings: OrbitSettings) -> str:
    """The policy of a round nobody named one for: the newest ready checkpoint's, else the configured default."""
    ready, _, _ = scan_checkpoints(settings.checkpoints_path())
    if ready:
        return max(ready, key=lambda c: ((c.path / MANIFEST).stat().st_mtime, c.name)).policy
    return settings.default_policy


def register_round(policy: str | None = None, *, key: str | None = None, checkpoint: str | None = None,
                   parent_round: str | None = None, note: str = "", sizes: dict | None = None,
                   settings: OrbitSettings | None = None, instance: dg.DagsterInstance | None = None,
                   exist_ok: bool = False) -> RoundEntry:
    """Register a round in the registry and add its partition (the one way rounds come into being).

    ``policy`` defaults to ``default_policy``; ``sizes`` to the settings' round size. With ``key`` None the
    round is the next index free in the registry and the instance; ``exist_ok`` returns an existing ``key``.
    """
    if settings is None:
        from resources import resources_for

        settings = resources_for()["settings"]
    instance = instance or dg.DagsterInstance.get()
    if policy is None:
        policy = default_policy(settings)
    parse_policy_uri(policy)
    taken = instance_rounds(instance)
    entry = RoundRegistry(settings.lake_path()).add(
        policy, key=key, checkpoint=checkpoint, parent_round=parent_round, note=note,
        sizes=settings.round_sizes() if sizes is None else sizes, taken=taken, exist_ok=exist_ok)
    if not instance.has_dynamic_partition(ROUNDS, entry.round):
        instance.add_dynamic_partitions(ROUNDS, [entry.round])
    return entry


def ensure_registered(round_key: str, settings: OrbitSettings, instance: dg.DagsterInstance,
                      how: str = "added in the Dagster UI") -> RoundEntry:
    """The round's registry entry, registering it with the default policy when only its partition exists."""
    entry = RoundRegistry(settings.lake_path()).get(round_key)
    if entry is not None:
        return entry
    return register_round(key=round_key, note=f"{how}; default policy", settings=settings, instance=instance,
                          exist_ok=True)


def reconcile_rounds(instance: dg.DagsterInstance, settings: OrbitSettings) -> dict[str, list[str]]:
    """Make the registry and the instance's partitions agree; returns what it changed."""
    partitions = instance_rounds(instance)
    registered = {e.round for e in RoundRegistry(settings.lake_path()).entries()}
    added_entries = [r for r in sorted(set(partitions) - registered)]
    for r in added_entries:
        ensure_registered(r, settings, instance)
    added_partitions = sorted(registered - set(partitions))
    if added_partitions:
        instance.add_dynamic_partitions(ROUNDS, added_partitions)
    return {"registered": added_entries, "partitions_added": added_partitions}


ROUND_TAG, POLICY_TAG = "orbit/round", "orbit/policy"


def stamp_run_tags(instance: dg.DagsterInstance, run_id: str, round_key: str, lake_root,
                   run: dg.DagsterRun | None = None, entry: RoundEntry | None = None) -> dict:
    """Give a run the ``orbit/round`` and ``orbit/policy`` tags headless runs carry, whoever launched it (the UI,
    a backfill, the automation). Tags a run already has are kept; returns the tags added. ``run``: the step's
    run as it started (a run created with both tags, as headless ones are, costs no query); ``entry``: the
    round's registry entry when the caller has read it."""
    if run is not None and ROUND_TAG in run.tags and POLICY_TAG in run.tags:
        return {}
    run = instance.get_run_by_id(run_id)
    if run is None or not is_round_key(round_key) or (ROUND_TAG in run.tags and POLICY_TAG in run.tags):
        return {}  # no run, or tagged already (headless runs from the start, others by their first output)
    tags = {ROUND_TAG: round_key}
    entry = entry if entry is not None else RoundRegistry(lake_root).get(round_key)
    if entry is not None:
        tags[POLICY_TAG] = entry.policy[:1000]
    added = {k: v for k, v in tags.items() if k not in run.tags}
    if added:
        instance.add_run_tags(run_id, added)
    return added


IN_FLIGHT = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def refuse_duplicate_run(context: dg.AssetExecutionContext) -> None:
    """Stop this step when an earlier run that is still going materializes the same asset partition (a second
    backfill of a round, a double click): ``dg.Failure`` naming that run, shown on this run's page. The run
    created first goes on, so two duplicates never both stop."""
    key = context.partition_key
    asset = context.asset_key
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=list(IN_FLIGHT), tags={"dagster/partition": str(key)}))
    others = [r for r in records if r.dagster_run.run_id != context.run.run_id and (
        r.dagster_run.asset_selection is None or asset in r.dagster_run.asset_selection)]
    own = context.instance.get_run_record_by_id(context.run.run_id) if others else None  # only to compare ages
    for record in others:
        run = record.dagster_run
        if own is not None and (record.create_timestamp, run.run_id) > (own.create_timestamp, context.run.run_id):
            continue  # the later duplicate stops, not this run
        raise dg.Failure(
            description=f"{asset.to_user_string()} {key} is already being materialized by run {run.run_id} "
            f"(status {run.status.value}); this duplicate run stops here without writing anything. When that run "
            "ends, materialize again if it was meant to run twice.",
            metadata={"running_run_id": run.run_id}, allow_retries=False)
