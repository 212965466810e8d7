"""Automation conditions: adding a round materializes the whole round, once.

raw_samples runs for partitions that become missing (a new round) unless a run
or a backfill already covers them; each later stage runs when its upstream
partition updates. The round-wide exports and the reports wait until the work
above them has settled -- nothing upstream in progress, queued, in a backfill or
about to be requested -- so a round or a backfill of many partitions ends with
one report, not one per partition.
"""

import dagster as dg

UPSTREAM_DEPTH = 6  # raw -> verified -> filtered -> yields/exports -> training -> reports

new_partition = (
    dg.AutomationCondition.missing().newly_true().since_last_handled().with_label("new_partition")
    & ~dg.AutomationCondition.in_progress()
)


def _upstream_busy(depth: int = UPSTREAM_DEPTH) -> dg.AutomationCondition:
    busy = dg.AutomationCondition.in_progress() | dg.AutomationCondition.will_be_requested()
    condition = busy
    for _ in range(depth - 1):
        condition = busy | dg.AutomationCondition.any_deps_match(condition)
    return dg.AutomationCondition.any_deps_match(condition)


settled = (~_upstream_busy()).with_label("upstream_settled")
upstream_updated = dg.AutomationCondition.eager()
round_settled_updated = (dg.AutomationCondition.eager() & settled).with_label("eager_when_settled")
any_upstream_updated = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & settled
    & ~dg.AutomationCondition.in_progress()
).with_label("any_upstream_updated_when_settled")
