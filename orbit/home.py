"""Where Orbit keeps its state: ``ORBIT_HOME`` holds the lake and ``DAGSTER_HOME``.

Nothing here reaches the network; telemetry is switched off for every process
that goes through ``ensure_home``.
"""

import os
from pathlib import Path

DEFAULT_HOME = ".orbit"

DAGSTER_YAML = """\
# Written by Orbit. Telemetry stays off: Orbit machines have no internet.
telemetry:
  enabled: false
"""


def orbit_home() -> Path:
    return Path(os.environ.get("ORBIT_HOME", DEFAULT_HOME)).resolve()


def lake_root() -> Path:
    return Path(os.environ.get("ORBIT_LAKE", str(orbit_home() / "lake"))).resolve()


def ensure_home() -> Path:
    """Create ``ORBIT_HOME`` with a lake and a telemetry-free ``DAGSTER_HOME``; set the env vars."""
    home = orbit_home()
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    dagster_home = Path(os.environ.get("DAGSTER_HOME", str(home / "dagster"))).resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    yaml = dagster_home / "dagster.yaml"
    if not yaml.exists():
        tmp = yaml.with_suffix(".yaml.tmp")
        tmp.write_text(DAGSTER_YAML)
        os.replace(tmp, yaml)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ.setdefault("ORBIT_HOME", str(home))
    lake_root().mkdir(parents=True, exist_ok=True)
    return home
