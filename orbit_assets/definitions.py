"""The Orbit code location: the round DAG as Dagster software-defined assets."""

import os
import sys

import dagster as dg

from orbit.io.home import dagster_process_env
from orbit_assets.jobs import ALL_ASSETS, JOBS
from resources import resources_for
from sensors import SENSORS


def build_defs(resources: dict | None = None) -> dg.Definitions:
    """The code location with the given resources (the deployment's defaults when None)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=JOBS,
        sensors=SENSORS,
        resources=resources if resources is not None else resources_for(),
        # one process per run: a step subprocess costs seconds of imports, and the run queue already
        # keeps the machine's cores busy with whole runs
        executor=dg.in_process_executor,
    )


dagster_process_env()  # a webserver or daemon started without `orbit home --shell` batches events too
if not os.environ.get("DAGSTER_HOME"):
    # the plain dagster CLI would use an ephemeral instance that has none of Orbit's rounds
    print("orbit: DAGSTER_HOME is not set, so dagster uses an empty ephemeral instance without Orbit's rounds "
          "(DagsterUnknownPartitionError); run: eval \"$(orbit home --shell)\"  (or use make ui / make run)",
          file=sys.stderr)

defs = build_defs()
