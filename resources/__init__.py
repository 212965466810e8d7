"""Dagster resources and the IO manager, chosen per deployment in ``resources_for``."""

import os

from resources.lake import LakeIOManager
from resources.settings import OrbitSettings

from orbit.home import lake_root


def resources_for(lake: str | None = None, workers: int | None = None) -> dict:
    lake = str(lake or lake_root())
    workers = workers or int(os.environ.get("ORBIT_WORKERS", "2"))
    return {"io_manager": LakeIOManager(root=lake), "settings": OrbitSettings(lake=lake, workers=workers)}


__all__ = ["LakeIOManager", "OrbitSettings", "resources_for"]
