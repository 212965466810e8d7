"""Partition keys on the Dagster side: a dynamic round key that is not a valid round is flagged and refused.

Anything can add a dynamic partition (the UI's "add partition", the instance API), so
the keys are checked where they are used: ``refuse_invalid_partition`` at the start of
a partitioned materialization raises ``dg.Failure`` before any path is built, and the
``round_key_sensor`` lists the invalid keys of the ``rounds`` partitions on every tick
(its skip reason, shown in the UI, names them). Keys are validated by ``orbit.io.keys``:
ASCII ``r[0-9]{4}`` rounds and ASCII identifier env names, matched in full.
"""

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


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Flags dynamic round partitions whose key is not a valid round (r + four ASCII digits); "
           "their materializations are refused.")
def round_key_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    bad = invalid_round_keys(context.instance)
    if bad:
        context.log.error(f"{len(bad)} invalid round partition key(s), refused at materialization: {bad!r}")
        return dg.SkipReason(f"invalid round partition keys (refused at materialization): {bad!r}")
    return dg.SkipReason("every round partition key is valid")
