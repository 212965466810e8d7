"""The flywheel report: yield over rounds per env, the fitted g, and a chart.

The flywheel's p is the policy's (source 'policy') where an env has policy
samples, else the env's overall yield. Read with DuckDB over the yield
partitions of the lake.
"""

import io
import math
from pathlib import Path

import duckdb
import pyarrow as pa

from orbit import lake
from orbit.flywheel import fit_growth, project_yield
from orbit.keys import round_index

FIT_SCHEMA = pa.schema(
    [
        ("env", pa.string()), ("source", pa.string()), ("rounds", pa.int64()),
        ("p_first", pa.float64()), ("p_last", pa.float64()),
        ("g", pa.float64()), ("g_low", pa.float64()), ("g_high", pa.float64()), ("p0_fit", pa.float64()),
        ("target", pa.float64()), ("rounds_to_target", pa.float64()),
    ]
)

PER_ROUND_SQL = """
WITH y AS (SELECT * FROM read_parquet({glob}, hive_partitioning = false)),
chosen AS (
  SELECT env, CASE WHEN bool_or(source = 'policy') THEN 'policy' ELSE 'all' END AS source FROM y GROUP BY env
)
SELECT y.env, y.source, y.round, y.attempts, y.passes, y.pass_rate, y.pass_rate_low, y.pass_rate_high,
       y.attempts_per_clean, y.passes_per_clean
FROM y JOIN chosen USING (env, source)
ORDER BY y.env, y.round
"""


def per_round(lake_root: Path | str) -> pa.Table:
    files = lake.asset_glob(lake_root, "yield_metrics", 2)
    con = duckdb.connect()
    try:
        if not list(Path(lake_root, "yield_metrics").glob("*/*/*.parquet")):
            return pa.table({"env": pa.array([], pa.string())})
        return con.sql(PER_ROUND_SQL.format(glob=lake.sql_literal(files))).to_arrow_table()
    finally:
        con.close()


def fits(rounds: pa.Table, target: float) -> pa.Table:
    rows = []
    if rounds.num_rows == 0:
        return FIT_SCHEMA.empty_table()
    by_env: dict[str, list[dict]] = {}
    for row in rounds.to_pylist():
        by_env.setdefault(row["env"], []).append(row)
    for env, rs in sorted(by_env.items()):
        fit = fit_growth([round_index(r["round"]) for r in rs], [r["passes"] for r in rs], [r["attempts"] for r in rs])
        rows.append({
            "env": env, "source": rs[0]["source"], "rounds": len(rs),
            "p_first": rs[0]["pass_rate"], "p_last": rs[-1]["pass_rate"],
            "g": fit.g, "g_low": fit.g_low, "g_high": fit.g_high, "p0_fit": fit.p0,
            "target": target, "rounds_to_target": fit.rounds_to(target),
        })
    return pa.Table.from_pylist(rows, schema=FIT_SCHEMA)


def chart_png(rounds: pa.Table, fit_table: pa.Table) -> bytes:
    """p_t with 95% intervals and the fitted log-odds curve per env; cost per clean trajectory below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    fitted = {r["env"]: r for r in fit_table.to_pylist()}
    by_env: dict[str, list[dict]] = {}
    for row in rounds.to_pylist():
        by_env.setdefault(row["env"], []).append(row)
    for env, rs in sorted(by_env.items()):
        t = [round_index(r["round"]) for r in rs]
        p = [r["pass_rate"] or 0.0 for r in rs]
        # error bars never negative: p = 0 or 1 and rounds without attempts (no interval) draw none
        err = [[max(0.0, pi - (r["pass_rate_low"] if r["pass_rate_low"] is not None else pi)) for pi, r in zip(p, rs)],
               [max(0.0, (r["pass_rate_high"] if r["pass_rate_high"] is not None else pi) - pi)
                for pi, r in zip(p, rs)]]
        line = top.errorbar(t, p, yerr=err, marker="o", capsize=3, label=f"{env} ({rs[0]['source']})")
        f = fitted.get(env)
        if f and f["g"] is not None:
            ts = [min(t) + i * (max(t) - min(t)) / 50 for i in range(51)]
            top.plot(ts, [project_yield(f["p0_fit"], f["g"], x) for x in ts], "--", color=line[0].get_color(),
                     label=f"{env} fit g={f['g']:.2f}")
        bottom.plot(t, [r["attempts_per_clean"] if r["attempts_per_clean"] is not None else math.nan for r in rs],
                    marker="o", label=env)
    top.set_ylabel("pass rate p (95% Wilson)")
    top.set_ylim(0, 1.02)
    if by_env:
        top.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    top.set_title("Yield over rounds")
    bottom.set_ylabel("attempts per clean trajectory")
    if any(r["attempts_per_clean"] for r in rounds.to_pylist()):  # log scale needs a positive value
        bottom.set_yscale("log")
    bottom.set_xlabel("round")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    if by_env:
        bottom.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
