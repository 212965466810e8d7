"""Report: the DuckDB file of views over the lake and the cross-round yield table."""

import dagster as dg

from orbit.query import SUMMARY_SQL, YIELD_TABLE, build_report_db
from orbit.stages.yields import markdown_table
from orbit_assets.automation import any_upstream_updated
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
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        table = con.sql(f"{SUMMARY_SQL} WHERE source = 'all'").to_arrow_table()
    finally:
        con.close()
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(db_path)),
            **{f"rows_{k}": v for k, v in counts.items()},
            YIELD_TABLE: dg.MetadataValue.md(markdown_table(table, table.column_names)),
        }
    )
