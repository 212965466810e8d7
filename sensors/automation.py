"""The automation sensor: evaluates the assets' automation conditions, on by default."""

import dagster as dg

orbit_automation = dg.AutomationConditionSensorDefinition(
    "orbit_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Adding a round materializes it: raw -> verified -> filtered -> yields -> report.",
)
