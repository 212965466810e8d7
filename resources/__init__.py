"""Dagster resources and the IO manager, chosen per deployment in ``resources_for``."""

import os
from pathlib import Path

from resources.lake import LakeIOManager
from resources.policies import PolicyResource
from resources.settings import OrbitSettings

from orbit.home import lake_root, orbit_home


def resources_for(lake: str | None = None, workers: int | None = None, home: str | None = None) -> dict:
    """Resources of one deployment: the lake, worker count, and where request caches live."""
    lake = str(lake or lake_root())
    home = Path(home) if home else (Path(lake).parent if lake else orbit_home())
    workers = workers or int(os.environ.get("ORBIT_WORKERS", "2"))
    return {
        "io_manager": LakeIOManager(root=lake),
        "settings": OrbitSettings(lake=lake, workers=workers, checkpoints=str(home / "checkpoints")),
        "policies": PolicyResource(cache_root=str(home / "cache" / "requests")),
    }


__all__ = ["LakeIOManager", "OrbitSettings", "PolicyResource", "resources_for"]
