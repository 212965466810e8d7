"""Install the reward (``packaging/orbit-reward``) into trainer venvs and prove it changes nothing else.

For each venv: ``pip freeze`` before and after ``pip install ./packaging/orbit-reward``; every package the
venv had keeps its version (only new ones are added), ``orbit.rewards`` imports, and Dagster is not there.

Usage: python3 tests/trainers/install_reward.py VENV_PYTHON [VENV_PYTHON ...]
"""

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "packaging" / "orbit-reward"


def freeze(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True).stdout
    pins = {}
    for line in out.splitlines():
        name, sep, version = line.partition("==")
        if not sep:
            name, _, version = line.partition(" @ ")
        pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def install(python: str) -> None:
    before = freeze(python)
    pip = [python, "-m", "pip", "install", "--quiet", "--no-cache-dir"]
    subprocess.run([*pip, "--force-reinstall", "--no-deps", str(PACKAGE)], check=True)  # this checkout's code
    subprocess.run([*pip, str(PACKAGE)], check=True)  # and what it needs that the venv lacks
    after = freeze(python)
    changed = {k: (v, after.get(k)) for k, v in before.items() if k != "orbit-reward" and after.get(k) != v}
    assert not changed, f"{python}: installing orbit-reward changed {changed}"
    added = sorted(set(after) - set(before))
    probe = ("import importlib.util, orbit.rewards; assert importlib.util.find_spec('dagster') is None; "
             "print(orbit.rewards.__file__)")
    where = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, cwd="/").stdout.strip()
    print(f"{python}: orbit-reward installed ({where}); added {added or 'nothing'}; nothing else changed")


if __name__ == "__main__":
    for venv_python in sys.argv[1:]:
        install(venv_python)
