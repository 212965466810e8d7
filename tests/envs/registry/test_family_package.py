"""A family from a package: the example package (examples/orbit-sums-family) is built and installed with
uv, its `orbit.families` entry point is found, and a round of its env runs, verified and queryable."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "examples" / "orbit-sums-family"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
UV = shutil.which("uv") or str(ROOT / ".uv" / "bin" / "uv")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example package installed (a wheel built by uv, with its entry-point metadata) into a folder the
    commands below put on their path: the project's venv itself stays as `uv sync` made it."""
    target = tmp_path_factory.mktemp("site")
    out = subprocess.run([UV, "pip", "install", "--quiet", "--no-deps", "--python", PYTHON, "--target", str(target),
                          str(PACKAGE)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
    assert out.returncode == 0, out.stderr
    assert list(target.glob("orbit_sums_family-*.dist-info/entry_points.txt"))
    return target


def _run(args, home, site, envs_text):
    (home / "envs.toml").write_text(envs_text)
    env = {k: v for k, v in os.environ.items() if k not in ("ORBIT_ENVS_FILE", "ORBIT_LAKE")}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), PYTHONPATH=str(site),
               DAGSTER_DISABLE_TELEMETRY="1")
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


SUMS = '[envs.sums]\nfamily = "sums"\nterms = 3\nmax_value = 50\nnum_tasks = 8\n'


def test_a_packaged_family_runs_a_round(site, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    orbit = str(ROOT / ".venv" / "bin" / "orbit")
    out = _run([orbit, "envs", "--format", "json"], home, site, SUMS)
    assert out.returncode == 0, out.stderr
    row = [r for r in json.loads(out.stdout) if r["env"] == "sums"][0]
    assert row["family"] == "sums" and row["status"] == "active"
    out = _run([orbit, "envs"], home, site, SUMS.replace("terms = 3", "terms = 300"))
    assert out.returncode == 2 and "[envs.sums] terms: expected a whole number from 2 to 20" in out.stderr
    out = _run([orbit, "run", "--rounds", "1", "--envs", "sums", "--samples-per-task", "2"], home, site, SUMS)
    assert out.returncode == 0, out.stderr[-3000:]
    out = _run([orbit, "sql", "select count(*) n, bool_and(passed) ok, count(distinct task_id) t from verified_samples "
                "where env = 'sums'", "--format", "json"], home, site, SUMS)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"n": 16, "ok": True, "t": 8}]
    # the same verifier is the reward: a right and a wrong completion of one exported prompt
    script = r"""
import json, sys, pyarrow.parquet as pq
from orbit.rewards import score
row = pq.read_table(sys.argv[1]).to_pylist()[0]
prompt = [m for m in row["messages"] if m["role"] != "assistant"]
answer = next(m for m in row["messages"] if m["role"] == "assistant")["content"]
right = score("sums", row["metadata"] and json.loads(row["metadata"])["task"], prompt + [{"role": "assistant", "content": answer}], task_id=row["task_id"])
wrong = score("sums", json.loads(row["metadata"])["task"], prompt + [{"role": "assistant", "content": "<answer>-1</answer>"}], task_id=row["task_id"])
print(json.dumps([right[0], wrong[0]]))
"""
    part = home / "lake" / "raw_samples" / "r0000" / "sums"
    out = _run([PYTHON, "-c", script, str(next(part.glob("*.parquet")))], home, site, SUMS)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1.0, 0.0]


def test_a_family_that_does_not_load_is_named(site, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    broken = tmp_path / "broken"
    (broken / "orbit_broken-0.1.dist-info").mkdir(parents=True)
    (broken / "orbit_broken-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: orbit-broken\nVersion: 0.1\n")
    (broken / "orbit_broken-0.1.dist-info" / "entry_points.txt").write_text("[orbit.families]\nbroken = orbit_broken\n")
    (broken / "orbit_broken.py").write_text("raise ImportError('a missing dependency')\n")
    out = _run([str(ROOT / ".venv" / "bin" / "orbit"), "envs"], home, f"{site}:{broken}",
               '[envs.b1]\nfamily = "broken"\n')
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "[envs.b1] family: family 'broken' does not load: ImportError: a missing dependency" in out.stderr
