"""Partitions: round (dynamic, ``r0000``...) x env (static: the envs declared when the code location loads; a reload reads the envs file again)."""

from pathlib import Path

import dagster as dg

from orbit.envs import env_names
from orbit.io import lake
from orbit.io.keys import validate_env, validate_round

ROUNDS = "rounds"

round_partitions = dg.DynamicPartitionsDefinition(name=ROUNDS)
env_partitions = dg.StaticPartitionsDefinition(list(env_names()))
round_env_partitions = dg.MultiPartitionsDefinition({"round": round_partitions, "env": env_partitions})

# Round-only assets (exports) read every env of their round.
all_envs_of_round = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="round")


def round_env_key(round_key: str, env: str) -> dg.MultiPartitionKey:
    """Build a round x env key; never spell the joined string by hand (dimensions sort by name)."""
    return dg.MultiPartitionKey({"round": validate_round(round_key), "env": validate_env(env, env_names())})


def round_and_env(partition_key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(round, env) of a round x env partition key, both validated."""
    if not isinstance(partition_key, dg.MultiPartitionKey):
        partition_key = round_env_partitions.get_partition_key_from_str(partition_key)
    dims = partition_key.keys_by_dimension
    return validate_round(dims["round"]), validate_env(dims["env"], env_names())


def upstream_file(lake_root: Path, asset: str, round_key: str, env: str) -> Path:
    """The partition file of an upstream asset of the same round x env (a ``deps`` edge: the stage streams the
    file itself, no IO-manager input to load); a missing one fails the step naming it."""
    path = lake.partition_file(lake_root, asset, round_key, env)
    if not path.exists():
        raise dg.Failure(f"upstream partition file {path} does not exist; materialize {asset} "
                         f"{round_key}|{env} first")
    return path
