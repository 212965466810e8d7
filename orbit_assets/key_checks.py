"""Partition keys on the Dagster side: a dynamic round key that is not a valid round is flagged and refused.

Anything can add a dynamic partition (the UI's "add partition", the instance API), so
the keys are checked where they are used:

- the automation conditions never request a partition of an invalid round
  (``orbit_assets.automation.valid_round_key``), so no asset run starts for it;
- ``refuse_invalid_partition`` at the start of a partitioned materialization raises
  ``dg.Failure`` before any path is built (a run launched by hand or by a backfill);
- the ``round_key_sensor`` shows each invalid key where users look: it launches one
  run of the ``invalid_round_key`` job per key, which fails with the key and the fix
  (``orbit round remove <key>``, or *Delete partition* in the UI); its tick names them too.

Keys are validated by ``orbit.io.keys``: ASCII ``r[0-9]{4}`` rounds and ASCII identifier
env names, matched in full.
"""

import json

import dagster as dg

from orbit.io.keys import InvalidKey, is_round_key, validate_env, validate_round
from orbit_assets.partitions import ROUNDS


def invalid_round_keys(instance: dg.DagsterInstance) -> list[str]:
    """The keys of the ``rounds`` dynamic partitions that are not valid round keys."""
    return [key for key in instance.get_dynamic_partitions(ROUNDS) if not is_round_key(key)]


def refuse_invalid_partition(partition_key: str | dg.MultiPartitionKey) -> None:
    """Raise ``dg.Failure`` unless the key's round (and env, for round x env keys) are valid."""
    try:
        if isinstance(partition_key, dg.MultiPartitionKey):
            dims = partition_key.keys_by_dimension
            validate_round(dims.get("round"))
            validate_env(dims.get("env"))
        else:
            validate_round(partition_key)
    except InvalidKey as exc:
        raise dg.Failure(f"refusing to materialize partition {str(partition_key)!r}: {exc}") from None


INVALID_KEY_TAG = "orbit/invalid_round_key"


def fix_for(key: str) -> str:
    """What the user does about an invalid round partition key."""
    return (f"remove it: `orbit round remove {key}` (with ORBIT_HOME/DAGSTER_HOME of this instance), or in the UI: "
            f"Assets > raw_samples > Partitions, select {key!r} and Delete partition; a round is added with "
            "`orbit round add`, or with Add partition and a key like r0005")


class InvalidRoundKeyConfig(dg.Config):
    key: str


@dg.op(description="Fails, naming an invalid round partition key and how to remove it (no asset runs for it).")
def report_invalid_round_key(config: InvalidRoundKeyConfig) -> None:
    raise dg.Failure(
        description=f"invalid round partition key {config.key!r}: a round key is r and four ASCII digits "
        f"(r0000..r9999); no run starts for it. Fix: {fix_for(config.key)}",
        metadata={"key": config.key, "fix": fix_for(config.key)}, allow_retries=False)


@dg.job(description="Shows an invalid round partition key to the user as a failed run (launched by "
        "round_key_sensor, one per key); it materializes nothing.", tags={"orbit/kind": "key-check"})
def invalid_round_key():
    report_invalid_round_key()


@dg.sensor(job=invalid_round_key, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Invalid dynamic round partition keys (not r + four ASCII digits, e.g. 'r5' added in the UI): "
           "the automation starts no run for them; this sensor launches one failing invalid_round_key run per key, "
           "whose message names the key and the fix (orbit round remove <key>, or Delete partition in the UI).")
def round_key_sensor(context: dg.SensorEvaluationContext):
    bad = invalid_round_keys(context.instance)
    # one run per key while it stays; a key removed and added again is shown again (a new generation)
    seen = _read_cursor(context.cursor)
    generations = {key: seen.get(key, {"gen": 0, "present": False}) for key in set(seen) | set(bad)}
    for key, state in generations.items():
        if key in bad and not state["present"]:
            state["gen"] += 1
        state["present"] = key in bad
    context.update_cursor(json.dumps(generations, sort_keys=True))
    if not bad:
        return dg.SkipReason("every round partition key is valid")
    context.log.error(f"{len(bad)} invalid round partition key(s), never run: {bad!r}")
    return [dg.RunRequest(run_key=f"invalid-round-key:{key}:{generations[key]['gen']}",
                          tags={INVALID_KEY_TAG: key[:200], "dagster/max_retries": "0"},
                          run_config={"ops": {"report_invalid_round_key": {"config": {"key": key}}}})
            for key in bad]


def _read_cursor(cursor: "str | None") -> dict:
    try:
        data = json.loads(cursor) if cursor else {}
        return {k: {"gen": int(v["gen"]), "present": bool(v["present"])} for k, v in data.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}
