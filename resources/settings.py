"""Run-wide settings shared by the stage assets."""

from pathlib import Path
from typing import List

import dagster as dg

from orbit.envs import ENVS
from orbit.home import lake_root, orbit_home

GAME_ENVS = tuple(name for name, spec in ENVS.items() if spec.family == "openspiel")


class OrbitSettings(dg.ConfigurableResource):
    """Where the lake and checkpoints live, how many worker processes generation may use, and how
    far the flywheel turns."""

    lake: str = str(lake_root())
    workers: int = 2
    checkpoints: str = str(orbit_home() / "checkpoints")
    """The folder the checkpoint sensor watches (external trainers write here too)."""
    max_rounds: int = 8
    """The checkpoint sensor registers no round beyond this many."""
    policy_envs: List[str] = list(GAME_ENVS)
    """Envs whose partitions sample the round's registered policy (an explicit `policy` config applies anywhere)."""

    def lake_path(self) -> Path:
        return Path(self.lake)

    def duckdb_path(self) -> Path:
        return self.lake_path() / "orbit.duckdb"

    def checkpoints_path(self) -> Path:
        return Path(self.checkpoints)
