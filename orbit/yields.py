"""Yield: the pass rate p per round and env, the system's fundamental metric.

Cost per clean trajectory is 1/p; the flywheel multiplies the odds p/(1-p) by g
each round. Metrics are computed in DuckDB over one partition's verified and
filtered files, overall (source 'all') and per source.
"""

import math
from pathlib import Path

import duckdb
import pyarrow as pa

Z95 = 1.959963984540054

YIELD_SCHEMA = pa.schema(
    [
        ("round", pa.string()),
        ("env", pa.string()),
        ("source", pa.string()),
        ("attempts", pa.int64()),
        ("passes", pa.int64()),
        ("pass_rate", pa.float64()),
        ("pass_rate_low", pa.float64()),
        ("pass_rate_high", pa.float64()),
        ("tasks", pa.int64()),
        ("tasks_solved", pa.int64()),
        ("samples_per_task", pa.float64()),
        ("coverage_observed", pa.float64()),
        ("coverage_predicted", pa.float64()),
        ("clean_trajectories", pa.int64()),
        ("passes_per_clean", pa.float64()),
        ("attempts_per_clean", pa.float64()),
        ("attempts_per_solved_task", pa.float64()),
        ("budget", pa.int64()),
        ("odds", pa.float64()),
        ("g", pa.float64()),
        # accounting of the policy calls behind the records (null for sources without calls):
        # metadata.usage summed; seconds = the partition's sampling wall time (metadata.sampling.seconds)
        ("requests", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("seconds", pa.float64()),
        ("requests_per_s", pa.float64()),
        ("tokens_per_s", pa.float64()),
        ("cost", pa.float64()),
    ]
)


def wilson_interval(passes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return None, None
    p = passes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def odds(p: float | None) -> float | None:
    """p / (1 - p); undefined (None) at p = 1 or without data."""
    if p is None or p >= 1.0:
        return None
    return p / (1.0 - p)


def odds_ratio(current: float | None, previous: float | None) -> float | None:
    """g: this round's odds over the previous round's; None where either is undefined or zero."""
    if current is None or previous is None or previous == 0:
        return None
    return current / previous


def best_of_n_coverage(p: float, n: int) -> float:
    """Probability that N samples at pass rate p contain at least one pass: 1-(1-p)^N."""
    return 1.0 - (1.0 - p) ** n


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def partition_yields(verified_path: Path | str, filtered_path: Path | str, round_key: str, env: str,
                     previous_odds: dict[str, float | None] | None = None) -> pa.Table:
    """Yield rows (source 'all' first, then each source) for one round x env partition."""
    con = duckdb.connect(config={"threads": 2})
    try:
        con.execute(
            "CREATE TEMP TABLE per_task AS "
            "SELECT source, task_id, count(*)::BIGINT AS n, count(*) FILTER (WHERE passed)::BIGINT AS passes "
            "FROM read_parquet(?) GROUP BY source, task_id",
            [str(verified_path)],
        )
        con.execute("INSERT INTO per_task SELECT 'all', task_id, sum(n), sum(passes) FROM per_task GROUP BY task_id")
        stats = con.execute(
            "SELECT source, sum(n), sum(passes), count(*), count(*) FILTER (WHERE passes > 0), avg(n) "
            "FROM per_task GROUP BY source ORDER BY source <> 'all', source"
        ).fetchall()
        clean = dict(
            con.execute(
                "SELECT source, count(*) FROM read_parquet(?) GROUP BY source "
                "UNION ALL SELECT 'all', count(*) FROM read_parquet(?)",
                [str(filtered_path), str(filtered_path)],
            ).fetchall()
        )
        budgets = dict(
            con.execute(
                "SELECT source, max(TRY_CAST(json_extract(metadata, '$.sampling.budget') AS BIGINT)) "
                "FROM read_parquet(?) GROUP BY source",
                [str(verified_path)],
            ).fetchall()
        )
        budgets["all"] = sum(b for b in budgets.values() if b) or None
        usage = {row[0]: row[1:] for row in con.execute(
            "WITH u AS (SELECT source, TRY_CAST(json_extract(metadata, '$.usage.calls') AS BIGINT) AS calls, "
            "TRY_CAST(json_extract(metadata, '$.usage.prompt_tokens') AS BIGINT) AS pt, "
            "TRY_CAST(json_extract(metadata, '$.usage.completion_tokens') AS BIGINT) AS ct, "
            "TRY_CAST(json_extract(metadata, '$.usage.cost') AS DOUBLE) AS cost, "
            "TRY_CAST(json_extract(metadata, '$.sampling.seconds') AS DOUBLE) AS s FROM read_parquet(?)) "
            "SELECT source, sum(calls), sum(pt), sum(ct), max(s), sum(cost) FROM u GROUP BY source "
            "UNION ALL SELECT 'all', sum(calls), sum(pt), sum(ct), max(s), sum(cost) FROM u",
            [str(verified_path)]).fetchall()}
        rows = []
        for source, attempts, passes, tasks, solved, mean_n in stats:
            p = passes / attempts if attempts else None
            coverage_predicted = None
            if p is not None:
                coverage_predicted = con.execute(
                    "SELECT avg(1 - pow(1 - ?, n)) FROM per_task WHERE source = ?", [p, source]
                ).fetchall()[0][0]
            low, high = wilson_interval(passes, attempts)
            o = odds(p)
            n_clean = int(clean.get(source, 0))
            rows.append(
                {
                    "round": round_key, "env": env, "source": source,
                    "attempts": attempts, "passes": passes, "pass_rate": p,
                    "pass_rate_low": low, "pass_rate_high": high,
                    "tasks": tasks, "tasks_solved": solved, "samples_per_task": mean_n,
                    "coverage_observed": _ratio(solved, tasks), "coverage_predicted": coverage_predicted,
                    "clean_trajectories": n_clean,
                    "passes_per_clean": _ratio(passes, n_clean), "attempts_per_clean": _ratio(attempts, n_clean),
                    "attempts_per_solved_task": _ratio(attempts, solved),
                    "budget": budgets.get(source),
                    "odds": o, "g": odds_ratio(o, (previous_odds or {}).get(source)),
                    **_accounting(*usage.get(source, (None,) * 5)),
                }
            )
    finally:
        con.close()
    return pa.Table.from_pylist(rows, schema=YIELD_SCHEMA)


def _accounting(requests, prompt_tokens, completion_tokens, seconds, cost) -> dict:
    return {"requests": requests, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "seconds": seconds, "requests_per_s": _ratio(requests or 0, seconds) if requests else None,
            "tokens_per_s": _ratio(completion_tokens or 0, seconds) if completion_tokens else None, "cost": cost}


def markdown_table(table: pa.Table, columns: list[str]) -> str:
    def fmt(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table.select(columns).to_pylist():
        lines.append("| " + " | ".join(fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)
