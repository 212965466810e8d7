"""Registering a round: a row in the lake's round registry and a partition of ``rounds``."""

import dagster as dg

from orbit.home import ensure_home, lake_root
from orbit.policies.uri import parse_policy_uri
from orbit.rounds import RoundEntry, RoundRegistry
from orbit_assets.partitions import ROUNDS


def register_round(policy: str, *, note: str = "", key: str | None = None, checkpoint: str | None = None,
                   lake: str | None = None, instance: dg.DagsterInstance | None = None) -> RoundEntry:
    """Register a round and add its dynamic partition; the automation sensor then materializes it."""
    parse_policy_uri(policy)
    ensure_home()
    entry = RoundRegistry(lake or lake_root()).add(policy, key=key, checkpoint=checkpoint, note=note)
    instance = instance or dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(ROUNDS, entry.round):
        instance.add_dynamic_partitions(ROUNDS, [entry.round])
    return entry
