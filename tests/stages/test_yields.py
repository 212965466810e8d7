import math

import pytest
from helpers import verified_row, verified_table

from orbit.io import lake
from orbit.stages.filter import filter_file
from orbit.stages.yields import best_of_n_coverage, odds, odds_ratio, partition_yields, wilson_interval


def test_wilson_interval_hand_computed():
    # p = 0.5, n = 100, z = 1.96: centre 0.5, half-width 1.96*sqrt(0.0025 + 0.96^2/40000... ) / (1 + 0.0384)
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (None, None)


def test_odds_g_and_coverage():
    assert odds(0.05) == pytest.approx(0.05 / 0.95)
    assert odds(1.0) is None
    assert odds_ratio(odds(0.5), odds(0.2)) == pytest.approx(1.0 / 0.25)
    assert odds_ratio(0.3, 0.0) is None
    assert best_of_n_coverage(0.05, 10) == pytest.approx(1 - 0.95**10)


def test_partition_yields_by_hand(tmp_path):
    rows = []
    # task a: 4 attempts, 1 pass; task b: 4 attempts, 0 passes; task c: 2 attempts, 2 passes (policy)
    for i in range(4):
        rows.append(verified_row(task_id="a", sample_idx=i, passed=(i == 0), score=1.0 if i == 0 else 0.0))
        rows.append(verified_row(task_id="b", sample_idx=i, passed=False, score=0.0))
    for i in range(2):
        rows.append(verified_row(task_id="c", sample_idx=i, source="policy"))
    v = lake.write_table(verified_table(rows), tmp_path / "v.parquet")
    f = tmp_path / "f.parquet"
    filter_file(v, f)
    prev = {"all": odds(0.2)}
    table = partition_yields(v, f, "r0001", "tic_tac_toe", prev)
    by = {r["source"]: r for r in table.to_pylist()}
    assert table.column("source").to_pylist()[0] == "all"
    a = by["all"]
    assert (a["attempts"], a["passes"], a["tasks"], a["tasks_solved"], a["clean_trajectories"]) == (10, 3, 3, 2, 2)
    assert a["pass_rate"] == pytest.approx(0.3)
    assert a["odds"] == pytest.approx(0.3 / 0.7)
    assert a["g"] == pytest.approx((0.3 / 0.7) / 0.25)
    assert a["coverage_observed"] == pytest.approx(2 / 3)
    expected_cov = ((1 - 0.7**4) * 2 + (1 - 0.7**2)) / 3
    assert a["coverage_predicted"] == pytest.approx(expected_cov)
    assert a["attempts_per_clean"] == pytest.approx(5.0) and a["passes_per_clean"] == pytest.approx(1.5)
    assert a["attempts_per_solved_task"] == pytest.approx(5.0)
    lo, hi = wilson_interval(3, 10)
    assert (a["pass_rate_low"], a["pass_rate_high"]) == (pytest.approx(lo), pytest.approx(hi))
    s = by["selfplay"]
    assert (s["attempts"], s["passes"], s["tasks"], s["clean_trajectories"]) == (8, 1, 2, 1)
    assert s["g"] is None  # no previous odds for this source
    assert by["policy"]["pass_rate"] == 1.0 and by["policy"]["odds"] is None
    assert not math.isnan(a["samples_per_task"])
