"""Automation conditions: adding a round materializes the whole round.

raw_samples runs for partitions that become missing (a new round); each later
stage runs when its upstream partition updates; the report follows any yield.
"""

import dagster as dg

new_partition = (
    dg.AutomationCondition.missing().newly_true().since_last_handled().with_label("new_partition")
    & ~dg.AutomationCondition.in_progress()
)
upstream_updated = dg.AutomationCondition.eager()
any_upstream_updated = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("any_upstream_updated")
