"""The real-LLM flywheel of ``make flywheel-llm`` on a tiny budget: SmolLM2 behind llama.cpp answers a
reasoning-gym task under a grammar, the verified rows train a LoRA checkpoint, the held-out set is scored
every round and never trained on, and a second run resumes without redoing a finished stage."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orbit.flywheel.heldout import compare, two_proportion_z
from orbit.training.llm import prepare_verified

REPO = Path(__file__).resolve().parents[2]
ENVS_FILE = REPO / "flywheel_llm" / "envs.toml"


def _row(env, q, a, source="policy", passed=True, r="r0000"):
    return {"env": env, "round": r, "task_id": q, "source": source, "passed": passed,
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": q},
                         {"role": "assistant", "content": f"<answer>{a}</answer>", "tool_calls": None}]}


def test_prepare_verified_counts_every_row():
    rows = [_row("gcd_20", "gcd 4 6", 2), _row("gcd_20", "gcd 4 6", 2, r="r0001"),  # a repeat of the same chat
            _row("gcd_20", "gcd 3 9", 3, r="r0001"), _row("gcd_20", "gcd 5 7", 1),
            _row("gcd_20", "gcd 8 12", 3, passed=False), _row("gcd_20", "gcd 8 12", 4, source="teacher"),
            _row("gcd_20", "held out", 1), _row("other", "x", 1), _row("gcd_20", "y", 1, source="self_play"),
            {"env": "gcd_20", "source": "policy", "passed": True, "messages": None}]
    heldout = {"gcd_20": {"held out"}}
    examples, counts = prepare_verified(rows, ["gcd_20"], max_examples=2, heldout=heldout)
    assert len(examples) == 2 and counts["used"] == 2 == counts["used.gcd_20"]
    assert counts["skipped.duplicate"] == 1 and counts["skipped.heldout_question"] == 1
    assert counts["skipped.teacher_off"] == 1 == counts["teacher.passed"]
    assert counts["skipped.failed_verification.policy"] == 1 and counts["skipped.other_env"] == 1
    assert counts["skipped.source_self_play"] == 1 and counts["skipped.not_plain_chat"] == 1
    assert counts["skipped.over_max_examples"] == 1
    assert counts["rows"] == sum(v for k, v in counts.items() if k.startswith(("used.", "skipped.")))
    assert all(m.keys() == {"role", "content"} for e in examples for m in e["messages"])
    assert prepare_verified(rows, ["gcd_20"], 2, heldout=heldout)[0] == examples  # deterministic
    with_teacher, counts = prepare_verified(rows, ["gcd_20"], 10, teacher_rows=True, heldout=heldout)
    assert counts["trained.source.teacher"] == 1 and len(with_teacher) == 4


def test_heldout_comparison():
    z, p = two_proportion_z(30, 100, 10, 100)
    assert z > 3 and p < 0.001
    rows = [{"env": "e", "round": "r0000", "n": 100, "passes": 10, "p": .1, "p_low": .055, "p_high": .174},
            {"env": "e", "round": "r0001", "n": 100, "passes": 30, "p": .3, "p_low": .219, "p_high": .396}]
    (out,) = compare(rows)
    assert out["rose_non_overlapping"] and not out["fell_non_overlapping"] and out["p_last"] == .3


@pytest.mark.timeout(1800)
def test_short_flywheel_resumes_without_redoing(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ORBIT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "ORBIT_ENVS_FILE": str(ENVS_FILE)}
    cmd = [sys.executable, "-m", "orbit_cli", "flywheel", "--policy", "llm", "--rounds", "2", "--envs", "gcd_20",
           "--tasks", "4", "--best-of", "2", "--heldout-items", "4", "--llm-json",
           json.dumps({"rows": "verified", "teacher_rows": True, "max_examples": 8, "max_length": 256,
                       "max_steps": 1, "batch_size": 4, "learning_rate": 1e-3, "threads": 2})]
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1700)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    lake_root = home / "lake"
    progress = json.loads((lake_root / "reports" / "flywheel_llm.json").read_text())
    assert set(progress["rounds"]) == {"r0000", "r0001"} and all(s["sampled"] for s in progress["rounds"].values())
    for r in ("r0000", "r0001"):
        result = json.loads((lake_root / "reports" / "heldout" / f"{r}.json").read_text())
        assert result["envs"]["gcd_20"]["n"] == 4
        replies = [json.loads(line)["reply"] for line in
                   (lake_root / "reports" / "heldout" / f"{r}-records.jsonl").read_text().splitlines()]
        assert all(x.startswith("<answer>") and x.endswith("</answer>") for x in replies)  # the grammar held
    counts = progress["rounds"]["r0000"]["examples"]
    assert counts["rows"] == sum(v for k, v in counts.items() if k.startswith(("used.", "skipped.")))
    assert counts["used"] >= 1 and counts.get("teacher.passed", 0) == 4  # a teacher row per task, kept apart
    checkpoint = home / "checkpoints" / "smollm2-r0001"
    assert (checkpoint / "orbit_checkpoint.json").is_file() and (checkpoint / "model.gguf").is_file()
    summary = json.loads((lake_root / "reports" / "heldout" / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == ["r0000", "r0001"]
    stamp = (checkpoint / "model.gguf").stat().st_mtime_ns
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1700)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "r0000: sampled and evaluated already (resumed)" in again.stdout
    assert "r0001: sampled and evaluated already (resumed)" in again.stdout
    assert "trained already (resumed)" in again.stdout
    assert (checkpoint / "model.gguf").stat().st_mtime_ns == stamp  # not trained again
    assert json.loads((lake_root / "reports" / "flywheel_llm.json").read_text())["rounds"] == progress["rounds"]
