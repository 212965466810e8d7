"""The engine's layout: imports point down only, and nothing in ``orbit/`` reaches the Dagster layer.

Read from the source with ``ast`` (every import, lazy ones inside functions included), so a new
module that breaks a rule fails here before anyone imports it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "orbit"
OUTSIDE = ("dagster", "dagster_webserver", "orbit_assets", "orbit_cli", "resources", "sensors")

# an engine area -> the engine areas it may import (its own included)
MAY_IMPORT = {
    "io": {"io"},
    "compute": {"compute"},
    "policies": {"io", "policies"},
    "envs": {"io", "compute", "policies", "envs"},
    "stages": {"io", "compute", "policies", "envs", "stages"},
    "flywheel": {"io", "compute", "policies", "envs", "stages", "flywheel"},
    "training": {"io", "policies", "stages", "flywheel", "training"},
    "query": {"io", "stages", "flywheel"},
    "rewards": {"io", "envs", "stages"},
}


def _area(path: Path) -> str:
    rel = path.relative_to(ENGINE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


ENGINE_FILES = sorted(p for p in ENGINE.rglob("*.py") if p.name != "__init__.py" or p.parent != ENGINE)


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_modules_import_down_only(path):
    area = _area(path)
    allowed = MAY_IMPORT[area]
    for line, name in _imports(path):
        top = name.split(".")[0]
        assert top not in OUTSIDE, f"{path.relative_to(ROOT)}:{line} imports {name}: the engine never imports it"
        if top != "orbit":
            continue
        parts = name.split(".")
        target = parts[1] if len(parts) > 1 else ""
        assert target in allowed, (f"{path.relative_to(ROOT)}:{line} imports {name}: {area!r} may import "
                                   f"only {sorted(allowed)}")


def test_every_engine_area_has_its_rules_and_few_loose_modules():
    areas = {_area(p) for p in ENGINE_FILES}
    assert areas <= set(MAY_IMPORT), sorted(areas - set(MAY_IMPORT))
    loose = sorted(p.name for p in ENGINE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= 6, loose
