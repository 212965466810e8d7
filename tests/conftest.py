import os
from pathlib import Path

import pytest

os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"


@pytest.fixture
def orbit_home(tmp_path, monkeypatch) -> Path:
    """A fresh ORBIT_HOME (lake + DAGSTER_HOME) for one test."""
    home = tmp_path / "orbit_home"
    monkeypatch.setenv("ORBIT_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("ORBIT_LAKE", raising=False)
    from orbit.io.home import ensure_home

    ensure_home()
    return home


# The tests run against the built-in envs unless a test declares its own: an envs file in the developer's
# home (./.orbit/envs.toml) must not change what they see. A test that declares envs sets ORBIT_ENVS_FILE.
os.environ["ORBIT_ENVS_FILE"] = str(Path(__file__).resolve().parent / "no-envs-file.toml")
