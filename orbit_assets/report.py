"""Report: the DuckDB file of views over the lake, the cross-round yield table, and the per-round yields.

``round_yields`` is partitioned by round, so the UI (asset page > Metadata > Plots, by partition) draws
each of its numeric metadata keys across the rounds: one plot ``p_<env>`` per env (the headline p of
``orbit.stages.yields.headline_row``: the policy's samples where the round has them, else every source),
``p_all_<env>`` (every source) and ``g_<env>``. ``yield_metrics`` is partitioned by round x env and
cannot draw one line per env.
"""

import dagster as dg
import pyarrow as pa

from orbit.envs import env_names
from orbit.io import lake
from orbit.io.keys import validate_round
from orbit.io.lakefs import is_remote
from orbit.query import SUMMARY_SQL, YIELD_TABLE, build_report_db, connect
from orbit.stages.yields import HEADLINE_QUALIFY, headline_row, markdown_table
from orbit_assets.automation import any_upstream_updated, round_settled_updated
from orbit_assets.key_checks import refuse_invalid_partition
from orbit_assets.partitions import all_envs_of_round, round_partitions
from orbit_assets.yields import yield_metrics
from resources.settings import OrbitSettings

import duckdb


@dg.asset(
    group_name="measure",
    deps=[yield_metrics],
    automation_condition=any_upstream_updated,
    description="Rebuilds <lake>/orbit.duckdb (DuckDB 1.0+ storage, absolute paths): views raw_samples, "
    "verified_samples, filtered_dataset, yields, yields_by_round, flywheel over the Parquet globs, and orbit_about.",
    kinds={"duckdb"},
)
def yield_report(settings: OrbitSettings) -> dg.MaterializeResult:
    db_path = settings.duckdb_path()
    counts = build_report_db(settings.lake_path(), db_path)
    # an object-store lake has no orbit.duckdb (build_report_db only counted): the same views in memory
    remote = is_remote(settings.lake_path())
    con = connect(settings.lake_path(), views=False) if remote else duckdb.connect(str(db_path), read_only=True)
    try:
        table = con.sql(f"{SUMMARY_SQL} {HEADLINE_QUALIFY} ORDER BY env, round").to_arrow_table()
    finally:
        con.close()
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(settings.lake_path() if remote else db_path)),
            **{f"rows_{k}": v for k, v in counts.items()},
            YIELD_TABLE: dg.MetadataValue.md(markdown_table(table, table.column_names)),
        }
    )


# p* and g: the headline row's (headline_row); *_all: every source's
ROUND_YIELDS_SCHEMA = pa.schema([("env", pa.string()), ("p", pa.float64()), ("p_source", pa.string()),
                                 ("p_low", pa.float64()), ("p_high", pa.float64()), ("p_all", pa.float64()),
                                 ("g", pa.float64()), ("g_all", pa.float64()), ("attempts", pa.int64()),
                                 ("attempts_all", pa.int64())])


def round_yield_rows(lake_root, round_key: str, envs) -> list[dict]:
    """One row per env with a ``yield_metrics`` partition in this round: the headline p (and its source,
    interval and g) beside p and g of every source ('all')."""
    rows = []
    for env in envs:
        path = lake.partition_file(lake_root, "yield_metrics", round_key, env)
        if not path.exists():
            continue
        table = lake.read_table(path).to_pylist()
        head = headline_row(table)
        every = next((r for r in table if r["source"] == "all"), None)
        if head is None or every is None:
            continue
        rows.append({"env": env, "p": head["pass_rate"], "p_source": head["source"],
                     "p_low": head["pass_rate_low"], "p_high": head["pass_rate_high"], "p_all": every["pass_rate"],
                     "g": head["g"], "g_all": every["g"], "attempts": head["attempts"],
                     "attempts_all": every["attempts"]})
    return rows


def round_yields_metadata(rows: list[dict]) -> dict:
    """``p_<env>`` (headline), ``p_all_<env>``, ``g_<env>`` (headline, where defined) and the table."""
    metadata: dict = {}
    for row in rows:
        env = row["env"]
        if row["p"] is not None:
            metadata[f"p_{env}"] = dg.MetadataValue.float(float(row["p"]))
        if row["p_all"] is not None:
            metadata[f"p_all_{env}"] = dg.MetadataValue.float(float(row["p_all"]))
        if row["g"] is not None:
            metadata[f"g_{env}"] = dg.MetadataValue.float(float(row["g"]))
    table = pa.Table.from_pylist(rows, schema=ROUND_YIELDS_SCHEMA)
    metadata["yields"] = dg.MetadataValue.md(
        "p: the headline pass rate (source `policy` where the round sampled a policy, else `all`); "
        "p_all: every source.\n\n" + markdown_table(table, ROUND_YIELDS_SCHEMA.names))
    metadata["envs"] = dg.MetadataValue.text(", ".join(row["env"] for row in rows))  # text: not plotted
    return metadata


@dg.asset(
    partitions_def=round_partitions,
    group_name="measure",
    deps=[dg.AssetDep(yield_metrics, partition_mapping=all_envs_of_round)],
    automation_condition=round_settled_updated,
    description="The yields of one round, one row per env: the headline p (the policy's samples where the round "
    "has them, else every source), p of every source and g. Metadata > Plots draws `p_<env>`, `p_all_<env>` and "
    "`g_<env>` across the rounds (x axis: the round partitions), one plot per env and number.",
)
def round_yields(context: dg.AssetExecutionContext, settings: OrbitSettings) -> dg.MaterializeResult:
    refuse_invalid_partition(context.partition_key)
    r = validate_round(context.partition_key)
    rows = round_yield_rows(settings.lake_path(), r, env_names())
    return dg.MaterializeResult(metadata=round_yields_metadata(rows))
