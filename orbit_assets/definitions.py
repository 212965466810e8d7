"""The Orbit code location: the round DAG as Dagster software-defined assets."""

import dagster as dg

from orbit_assets import checks
from orbit_assets.jobs import ALL_ASSETS, JOBS
from orbit_assets.key_checks import round_key_sensor
from resources import resources_for
from sensors import SENSORS


def build_defs(resources: dict | None = None) -> dg.Definitions:
    """The code location with the given resources (the deployment's defaults when None)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=dg.load_asset_checks_from_modules([checks]),
        jobs=JOBS,
        sensors=[*SENSORS, round_key_sensor],
        resources=resources if resources is not None else resources_for(),
    )


defs = build_defs()
