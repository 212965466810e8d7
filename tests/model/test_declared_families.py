"""The task families beyond games, through the real model: a reasoning-gym task and a TextArena game
declared in envs.toml, and the built-in math_sample and code_sample, one round each with SmolLM2-135M
behind llama.cpp as the policy (`orbit run --policy`), as a user runs it. Any p is fine for a 135M model; what must hold is that every policy row was recorded in the
env's format and that the verifier agrees with the recording (an answer may be wrong or missing, a move
may lose, but the record is never one the replay contradicts)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import ALIAS

ROOT = Path(__file__).resolve().parents[2]
ENVS = """
[envs.leg_counting]
family = "reasoning_gym"
task = "leg_counting"
config = { min_animals = 2, max_animals = 3 }

[envs.tictactoe_ta]
family = "textarena"
env_id = "TicTacToe-v0"
max_turns = 12
"""
TASKS = 4
NAMES = ("leg_counting", "tictactoe_ta", "math_sample", "code_sample")
# reasons that would mean the recording and its replay disagree (not merely a wrong answer or a lost game)
CONTRADICTIONS = ("prompt.", "task.", "record.", "actions.", "observation.", "trajectory.")

pytestmark = pytest.mark.timeout(3600)


def test_declared_envs_play_through_the_real_model(llama, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "envs.toml").write_text(ENVS)
    env = {k: v for k, v in os.environ.items() if k not in ("ORBIT_ENVS_FILE", "ORBIT_LAKE")}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1")
    out = subprocess.run([sys.executable, "-m", "orbit_cli", "run", "--rounds", "1", "--envs",
                          ",".join(NAMES), "--tasks", str(TASKS), "--best-of", "1", "--concurrency", "1",
                          "--policy", llama.policy_uri], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]
    con = duckdb.connect()
    lake = home / "lake"
    for name in NAMES:
        rows = con.execute(
            "SELECT messages, passed, score, reasons, metadata FROM read_parquet(?) WHERE source = 'policy'",
            [str(lake / "verified_samples" / "r0000" / name / "part-0.parquet")]).fetchall()
        assert len(rows) == TASKS, (name, len(rows))
        for messages, passed, score, reasons, metadata in rows:
            meta = json.loads(metadata)
            assert meta.get("usage", {}).get("completion_tokens", 0) > 0, meta
            assert [m["role"] for m in messages][:2] == ["system", "user"]
            assert any(m["role"] == "assistant" and isinstance(m["content"], str) for m in messages)
            assert not [r for r in reasons if r.startswith(CONTRADICTIONS)], (name, reasons)
            assert passed == (score == 1.0)
        p = sum(r[1] for r in rows) / len(rows)
        print(f"{name}: SmolLM2-135M through llama.cpp p = {p:.2f} over {TASKS} tasks; reasons "
              f"{sorted({r for row in rows for r in row[3]})}")
