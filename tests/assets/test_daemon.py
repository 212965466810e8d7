"""The UI path, for real: `dagster dev` (webserver, daemon, code server) on loopback, driven over GraphQL
exactly as the Dagster UI drives it.

A round is added with *Add partition* (GraphQL ``addDynamicPartition``) and, at the same time, a
backfill of that round is launched (``launchPartitionBackfill``). The round must end registered with
its default policy and size, with policy samples for the policy envs, every partition materialized
exactly once (the automation never duplicates the backfill), and the reports rebuilt once after the
round settled.

The instance is SQLite under DAGSTER_HOME in `make test`; `make test-scale` (ORBIT_TEST_SCALE=1) runs the same
test with the instance on a real PostgreSQL server instead (tests/scale/pg_server.py, over its Unix socket),
webserver, daemon and run workers sharing it through the dagster.yaml `orbit home --postgres` writes.
"""

import json
import os
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from orbit.io import lake
from dagster_ui import REPO, UI_ENVS, gql as _gql
from orbit.flywheel.rounds import RoundRegistry

ROOT = Path(__file__).resolve().parents[2]
ROUND_ASSETS = ["raw_samples", "verified_samples", "filtered_dataset", "yield_metrics"]
STORAGES = ["postgres"] if os.environ.get("ORBIT_TEST_SCALE") == "1" else ["sqlite"]


@pytest.fixture(scope="module")
def _postgres():
    sys.path.insert(0, str(ROOT / "tests" / "scale"))
    from pg_server import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=STORAGES)
def instance_storage(request, tmp_path, monkeypatch) -> str:
    """Chooses the instance's storage before `dagster_dev` writes the home (it keeps the choice)."""
    if request.param == "postgres":
        from orbit.io.home import use_postgres

        server = request.getfixturevalue("_postgres")
        monkeypatch.setenv("ORBIT_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
        use_postgres(server.socket_url(server.create_database()))
    return request.param


def _materializations(instance, asset: str) -> list[str]:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1000).records
    return [r.asset_materialization.partition for r in records]


@pytest.mark.timeout(1800)
def test_ui_round_plus_backfill_materializes_each_partition_once(instance_storage, dagster_dev):
    port, home = dagster_dev
    added = _gql(port, """mutation($repo: RepositorySelector!) {
        addDynamicPartition(repositorySelector: $repo, partitionsDefName: "rounds", partitionKey: "r0000") {
          __typename ... on PythonError { message } } }""", {"repo": REPO})
    assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added
    partitions = [f"{env}|r0000" for env in UI_ENVS]  # the envs the home declares (conftest)
    launched = _gql(port, """mutation($params: LaunchBackfillParams!) {
        launchPartitionBackfill(backfillParams: $params) {
          __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
                    {"params": {"partitionNames": partitions,
                                "assetSelection": [{"path": [a]} for a in ROUND_ASSETS]}})
    assert launched["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", launched

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    assert type(instance.run_storage).__name__ == {"sqlite": "OrbitSqliteRunStorage",
                                                   "postgres": "OrbitPostgresRunStorage"}[instance_storage]
    deadline = time.time() + 900
    while time.time() < deadline:
        busy = instance.get_runs(filters=dg.RunsFilter(statuses=[
            dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED]))
        reports = _materializations(instance, "flywheel_report")
        if not busy and reports and len(_materializations(instance, "sft_export")) >= 1:
            time.sleep(12)  # two more automation ticks: nothing else may start
            if not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED,
                                                                     dg.DagsterRunStatus.STARTED])):
                break
        time.sleep(2)
    failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert not failed, [r.run_id for r in failed]

    # the round is registered once, with the default policy and the settings' size
    (entry,) = RoundRegistry(home / "lake").entries()
    assert (entry.round, entry.policy, entry.size()) == ("r0000", "embedded:uniform", {"num_tasks": 6, "budget": 6})
    for env in ("tic_tac_toe", "kuhn_poker"):
        sources = pq.read_table(lake.partition_file(home / "lake", "raw_samples", "r0000", env)).column("source")
        assert sources.to_pylist().count("policy") == 6, env

    # every round x env partition of every stage exactly once: the automation did not repeat the backfill
    for asset in ROUND_ASSETS:
        mats = _materializations(instance, asset)
        assert sorted(mats) == sorted(partitions), (asset, mats)
    # the round-wide exports and the reports once, after the round settled
    for asset in ("sft_export", "training_set", "yield_report", "flywheel_report"):
        assert len(_materializations(instance, asset)) == 1, asset
    instance.dispose()
