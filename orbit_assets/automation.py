"""Automation conditions: adding a round materializes the whole round, once.

raw_samples runs for partitions that become missing (a new round) unless a run
or a backfill already covers them; each later stage runs when its upstream
partition updates. The round-wide exports and the reports wait until the work
above them has settled -- nothing upstream in progress, queued, in a backfill or
about to be requested -- so a round or a backfill of many partitions ends with
one report, not one per partition.

Every condition is and-ed with ``valid_round_key``: a partition whose round key is
not a valid round (``r5`` typed into the UI's *Add partition* dialog) is never
requested; the ``round_key_sensor`` shows it to the user instead. A condition
written in Python is evaluated in the code location's process, so the automation
sensor runs there (``use_user_code_server=True``).
"""

import dagster as dg

from orbit.io.keys import is_round_key


def partition_round(partitions_def: "dg.PartitionsDefinition | None", key: str) -> "str | None":
    """The round part of a partition key of a round or round x env asset (None when the asset has none)."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        try:
            return partitions_def.get_partition_key_from_str(key).keys_by_dimension.get("round")
        except Exception:  # a key the definition cannot split is no valid round
            return ""
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return key
    return None


class ValidRoundKey(dg.AutomationCondition):
    """True for the candidate partitions whose round key is valid (and for assets without rounds)."""

    @property
    def requires_cursor(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return "valid_round_key"

    @property
    def description(self) -> str:
        return "the round key is valid (r + four ASCII digits)"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        candidates = context.candidate_subset
        if candidates.is_empty or not candidates.is_partitioned:
            return dg.AutomationResult(context, candidates)
        pdef = candidates.partitions_def
        keys = candidates.expensively_compute_partition_keys()
        valid = {k for k in keys if (r := partition_round(pdef, k)) is None or is_round_key(r)}
        if len(valid) == len(keys):
            return dg.AutomationResult(context, candidates)
        return dg.AutomationResult(context, candidates.compute_intersection_with_partition_keys(valid))


valid_round_key = ValidRoundKey()

UPSTREAM_DEPTH = 6  # raw -> verified -> filtered -> yields/exports -> training -> reports

new_partition = (
    valid_round_key
    & dg.AutomationCondition.missing().newly_true().since_last_handled().with_label("new_partition")
    & ~dg.AutomationCondition.in_progress()
)


def _upstream_busy(depth: int = UPSTREAM_DEPTH) -> dg.AutomationCondition:
    busy = dg.AutomationCondition.in_progress() | dg.AutomationCondition.will_be_requested()
    condition = busy
    for _ in range(depth - 1):
        condition = busy | dg.AutomationCondition.any_deps_match(condition)
    return dg.AutomationCondition.any_deps_match(condition)


settled = (~_upstream_busy()).with_label("upstream_settled")
upstream_updated = (valid_round_key & dg.AutomationCondition.eager()).with_label("eager")
round_settled_updated = (valid_round_key & dg.AutomationCondition.eager() & settled).with_label("eager_when_settled")
any_upstream_updated = (
    valid_round_key
    & dg.AutomationCondition.any_deps_updated().since_last_handled()
    & settled
    & ~dg.AutomationCondition.in_progress()
).with_label("any_upstream_updated_when_settled")
