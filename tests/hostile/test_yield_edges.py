"""Yield math at the edges: p = 0, p = 1 and n = 0 give exact Wilson bounds and render in the report and chart."""

import pyarrow as pa
import pytest
from helpers import verified_row, verified_table

from orbit.io import lake
from orbit.stages.filter import filter_file
from orbit.flywheel.report import chart_png, fits, per_round
from orbit.stages.yields import markdown_table, partition_yields, wilson_interval


@pytest.mark.parametrize("n", list(range(1, 400)) + [10**6, 10**9])
def test_wilson_bounds_are_exact_at_the_edges(n):
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
    for k in {0, 1, n // 2, n - 1, n}:
        low, high = wilson_interval(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_without_attempts():
    assert wilson_interval(0, 0) == (None, None)


def _yield_partition(lake_root, round_key, env, passes, attempts):
    rows = [verified_row(env=env, task_id=f"t{i}", sample_idx=i, round_key=round_key, passed=i < passes,
                         score=1.0 if i < passes else 0.0) for i in range(attempts)]
    v = lake.write_table(verified_table(rows), lake_root / "tmp" / f"v-{round_key}-{env}.parquet")
    f = lake_root / "tmp" / f"f-{round_key}-{env}.parquet"
    filter_file(v, f)
    table = partition_yields(v, f, round_key, env)
    lake.write_table(table, lake.partition_file(lake_root, "yield_metrics", round_key, env))
    return table


def test_report_and_chart_render_p0_p1_and_n0(tmp_path):
    # tic_tac_toe never passes (the weak real model's first rounds), kuhn_poker always does
    for r in ("r0000", "r0001", "r0002"):
        table = _yield_partition(tmp_path, r, "tic_tac_toe", 0, 7)
        assert table.column("pass_rate_low").to_pylist()[0] == 0.0
        table = _yield_partition(tmp_path, r, "kuhn_poker", 5, 5)
        assert table.column("pass_rate_high").to_pylist()[0] == 1.0
    rounds = per_round(tmp_path)
    assert rounds.num_rows == 6
    fit_table = fits(rounds, 0.9)
    assert fit_table.num_rows == 2 and fit_table.column("g").to_pylist() == [None, None]
    assert chart_png(rounds, fit_table).startswith(b"\x89PNG")
    assert "tic_tac_toe" in markdown_table(rounds, rounds.column_names)
    # a round without attempts (n = 0): no rate, no interval, still drawn
    empty = pa.Table.from_pylist([dict(rounds.to_pylist()[0], round="r0003", attempts=0, passes=0, pass_rate=None,
                                       pass_rate_low=None, pass_rate_high=None, attempts_per_clean=None,
                                       passes_per_clean=None)], schema=rounds.schema)
    with_empty = pa.concat_tables([rounds, empty])
    assert chart_png(with_empty, fits(with_empty, 0.9)).startswith(b"\x89PNG")
    only_empty = pa.concat_tables([empty])
    assert chart_png(only_empty, fits(only_empty, 0.9)).startswith(b"\x89PNG")
    assert "–" in markdown_table(only_empty, only_empty.column_names)
