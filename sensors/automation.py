"""The automation sensor: evaluates the assets' automation conditions, on by default."""

import dagster as dg

from orbit.io.home import int_setting

# how often the automation sensor ticks (seconds, 1 to a day); tests shorten it
INTERVAL_S = int_setting("ORBIT_AUTOMATION_INTERVAL_S", 15, 1, 86400)

orbit_automation = dg.AutomationConditionSensorDefinition(
    "orbit_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=INTERVAL_S,
    use_user_code_server=True,  # the conditions skip invalid round keys in Python (orbit_assets.automation)
    description="Adding a round materializes it: raw -> verified -> filtered -> yields -> exports and reports, "
    "each partition once, with nothing started that a run or a backfill already covers.",
)
