"""A full round through real Dagster on a temporary instance and lake."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from orbit.io import lake
from orbit.query import SUMMARY_SQL, open_report_db
from orbit_assets.partitions import ROUNDS, round_and_env, round_env_key
from orbit_assets.runner import raw_samples_config, run_rounds
from resources import resources_for

ENVS = ["tic_tac_toe", "kuhn_poker"]
STAGES = ["raw_samples", "verified_samples", "filtered_dataset", "yield_metrics"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def round_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    lake_root = home / "lake"
    (home / "dagster").mkdir()
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        mp.setenv("ORBIT_HOME", str(home))
        config = raw_samples_config(num_tasks=30, samples_per_task=2)
        # generators only: the round policy's samples are covered by tests/flywheel/test_rounds.py
        run_ids = run_rounds(["r0000", "r0001"], ENVS, instance=instance,
                             resources=resources_for(lake=str(lake_root), workers=2, policy_envs=[]), run_config=config,
                             log=lambda m: None)
        yield instance, lake_root, run_ids


def test_partition_keys_are_built_not_spelled():
    key = round_env_key("r0002", "tic_tac_toe")
    assert str(key) == "tic_tac_toe|r0002"
    assert round_and_env(key) == ("r0002", "tic_tac_toe")
    assert round_and_env("tic_tac_toe|r0002") == ("r0002", "tic_tac_toe")


def test_every_stage_written_in_lake_layout(round_run):
    _, lake_root, _ = round_run
    for stage in STAGES:
        for r in ("r0000", "r0001"):
            for env in ENVS:
                path = lake_root / stage / r / env / "part-0.parquet"
                assert path.exists(), path
                # a generator's small batches are gathered: a partition this small is one row group
                assert pq.ParquetFile(path).metadata.num_row_groups == 1, path
    assert (lake_root / "cfr_policies" / "part-0.parquet").exists()
    assert (lake_root / "orbit.duckdb").exists()


def test_runs_and_checks_recorded_in_instance(round_run):
    instance, _, run_ids = round_run
    assert len(run_ids) == 1 + 2 * (len(ENVS) + 1) + 1
    for run_id in run_ids:
        assert instance.get_run_by_id(run_id).is_success
    for name in ("raw_samples_schema", "verified_conservation", "filtered_unique"):
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(STAGES[0] if name == "raw_samples_schema" else
                                         "verified_samples" if name == "verified_conservation" else "filtered_dataset"),
                             name), limit=10)
        assert len(records) == 4
        for rec in records:
            assert rec.event.dagster_event.event_specific_data.passed
    assert set(instance.get_dynamic_partitions(ROUNDS)) == {"r0000", "r0001"}
    mats = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("yield_metrics")), limit=10).records
    meta = mats[0].asset_materialization.metadata
    assert isinstance(meta["p"].value, float) and "yields" in meta
    # generators only: the headline p is every source's p, and says so
    assert meta["p_source"].value == "all" and meta["p"].value == meta["p_all"].value


def test_round_yields_has_one_p_per_env_and_round(round_run):
    """The per-round report: p_<env> (headline), p_all_<env> per env, the same number as yield_metrics' p."""
    from orbit.stages.yields import headline_row

    instance, lake_root, _ = round_run
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("round_yields")), limit=10).records
    by_round = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}
    assert set(by_round) == {"r0000", "r0001"}
    for r, meta in by_round.items():
        for env in ENVS:
            rows = pq.read_table(lake.partition_file(lake_root, "yield_metrics", r, env)).to_pylist()
            assert meta[f"p_{env}"].value == pytest.approx(headline_row(rows)["pass_rate"])
            assert meta[f"p_all_{env}"].value == pytest.approx(rows[0]["pass_rate"])  # 'all' first
        assert "yields" in meta
    assert f"g_{ENVS[1]}" in by_round["r0001"] and f"g_{ENVS[1]}" not in by_round["r0000"]


def test_counts_add_up_and_filtered_is_deduplicated(round_run):
    _, lake_root, _ = round_run
    for env in ENVS:
        raw = lake.partition_file(lake_root, "raw_samples", "r0000", env)
        ver = lake.partition_file(lake_root, "verified_samples", "r0000", env)
        fil = lake.partition_file(lake_root, "filtered_dataset", "r0000", env)
        assert lake.row_count(raw) == lake.row_count(ver) == 60
        t = pq.read_table(fil)
        keys = list(zip(t.column("env").to_pylist(), t.column("task_id").to_pylist()))
        assert len(keys) == len(set(keys)) and all(t.column("passed").to_pylist())


def test_yields_in_duckdb_with_g_for_second_round(round_run):
    _, lake_root, _ = round_run
    con = open_report_db(lake_root)
    rows = con.execute(f"{SUMMARY_SQL} WHERE source = 'all' ORDER BY env, round").fetchall()
    assert len(rows) == 4
    cols = [d[0] for d in con.description]
    by = {(r[cols.index("env")], r[cols.index("round")]): dict(zip(cols, r)) for r in rows}
    assert by[("tic_tac_toe", "r0000")]["g"] is None
    assert by[("kuhn_poker", "r0001")]["g"] is not None
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'raw_samples'").fetchall())
    assert types["round"] == "VARCHAR"
    n = con.execute("SELECT count(*) FROM raw_samples WHERE round = 'r0001' AND env = 'kuhn_poker'").fetchall()[0][0]
    assert n == 60
    con.close()


def test_rematerializing_reproduces_rows(round_run, tmp_path):
    instance, lake_root, _ = round_run
    before = pq.read_table(lake.partition_file(lake_root, "raw_samples", "r0000", "kuhn_poker"))
    run_rounds(["r0000"], ["kuhn_poker"], instance=instance, resources=resources_for(lake=str(lake_root), policy_envs=[]),
               run_config=raw_samples_config(num_tasks=30, samples_per_task=2), log=lambda m: None)
    after = pq.read_table(lake.partition_file(lake_root, "raw_samples", "r0000", "kuhn_poker"))
    assert before.equals(after)


def test_adding_a_round_requests_the_whole_round():
    from orbit_assets.definitions import defs

    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert result.total_requested == 0
        instance.add_dynamic_partitions(ROUNDS, ["r0000"])
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        requested = {k for k in result.get_requested_partitions(dg.AssetKey("raw_samples"))}
        assert requested == {str(round_env_key("r0000", env)) for env in _all_envs()}


def _all_envs():
    from orbit.envs import env_names

    return env_names()


def test_definitions_validate():
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Validation successful" in proc.stderr + proc.stdout


def test_cli_queries_the_lake(round_run, monkeypatch, capsys):
    import json as _json

    from orbit_cli.commands import main

    _, lake_root, _ = round_run
    monkeypatch.setenv("ORBIT_HOME", str(lake_root.parent))
    assert main(["yields"]) == 0
    out = capsys.readouterr().out
    assert "tic_tac_toe" in out and "(4 rows)" in out
    assert main(["sql", "SELECT env, count(*) AS n FROM raw_samples GROUP BY env ORDER BY env", "--format", "json"]) == 0
    rows = _json.loads(capsys.readouterr().out)
    assert rows == [{"env": "kuhn_poker", "n": 120}, {"env": "tic_tac_toe", "n": 120}]
    assert main(["sql", "SELECT 1 AS a, 'x' AS b", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a,b", "1,x"]
    assert main(["sql", "SELECT * FROM no_such_table"]) == 2
