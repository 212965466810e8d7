"""Run-wide settings shared by the stage assets."""

from pathlib import Path

import dagster as dg

from orbit.home import lake_root


class OrbitSettings(dg.ConfigurableResource):
    """Where the lake lives and how many worker processes generation and verification may use."""

    lake: str = str(lake_root())
    workers: int = 2

    def lake_path(self) -> Path:
        return Path(self.lake)

    def duckdb_path(self) -> Path:
        return self.lake_path() / "orbit.duckdb"
