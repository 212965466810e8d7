"""The SQLite instance Orbit writes (``orbit home``): Dagster's files with Orbit's run storage and event log
classes, which keep a connection per database file (WAL, synchronous=NORMAL). What must still hold: another
process reads every event at once, a watcher (the UI following a run) is woken by writes that only reach the
WAL file, and a new run's shard has the very tables and alembic stamp Dagster's own storage gives it."""

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest


ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


@dg.op
def say_hello(context) -> int:
    context.log.info("hello from the op")
    return 1


@dg.job
def hello_job():
    say_hello()


def _schema(path: Path) -> list:
    with sqlite3.connect(path) as con:
        tables = sorted(con.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
        stamp = con.execute("SELECT version_num FROM alembic_version").fetchall()
    return [tables, stamp]


def test_the_instance_uses_orbits_event_log_and_other_processes_see_every_event(home):
    from resources.sqlite_storage import OrbitSqliteEventLogStorage

    from resources.sqlite_storage import OrbitSqliteRunStorage

    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage) is OrbitSqliteEventLogStorage
        assert type(instance.run_storage) is OrbitSqliteRunStorage
        result = hello_job.execute_in_process(instance=instance)
        assert result.success
        mine = len(instance.all_logs(result.run_id))
        # this process still holds its connections: the run's events are in the WAL, read by another process now
        code = ("import dagster as dg, sys\n"
                "with dg.DagsterInstance.get() as i:\n"
                "    logs = i.all_logs(sys.argv[1])\n"
                "    print(len(logs), i.get_run_by_id(sys.argv[1]).status.value)\n")
        out = subprocess.run([sys.executable, "-c", code, result.run_id], capture_output=True, text=True,
                             env={**os.environ}, cwd=ROOT, check=True).stdout.split()
        assert int(out[0]) == mine > 5 and out[1] == "SUCCESS"
        shard = Path(instance.event_log_storage.path_for_shard(result.run_id))
        with sqlite3.connect(shard) as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_run_shard_matches_dagsters_own(home, tmp_path):
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    from resources.sqlite_storage import OrbitSqliteEventLogStorage

    ours = OrbitSqliteEventLogStorage(str(tmp_path / "ours"))
    theirs = SqliteEventLogStorage(str(tmp_path / "theirs"))
    for storage in (ours, theirs):
        with storage.run_connection("a-run-id") as conn:
            conn.exec_driver_sql("SELECT 1")
    try:
        assert _schema(Path(ours.path_for_shard("a-run-id"))) == _schema(Path(theirs.path_for_shard("a-run-id")))
        assert _schema(Path(ours.path_for_shard("a-run-id")))[1]  # stamped
    finally:
        ours.dispose()
        theirs.dispose()


def test_a_watcher_is_woken_by_events_that_only_reached_the_wal(home):
    """The UI follows a run through ``watch_event_logs``: events written through a kept connection land in
    ``<run>.db-wal`` (no checkpoint), and the watcher must still deliver them."""
    from dagster._core.events.log import EventLogEntry

    with dg.DagsterInstance.get() as writer, dg.DagsterInstance.get() as reader:
        run = writer.create_run_for_job(hello_job)
        seen: list[str] = []
        arrived = threading.Condition()

        def callback(entry, cursor):
            with arrived:
                seen.append(entry.user_message)
                arrived.notify_all()

        reader.watch_event_logs(run.run_id, None, callback)
        shard = Path(writer.event_log_storage.path_for_shard(run.run_id))
        for n, message in enumerate(("first", "second", "third"), 1):
            # one at a time: each write alone must wake the watcher (not a later one that happens to follow)
            writer.event_log_storage.store_event(EventLogEntry(
                error_info=None, level="INFO", user_message=message, run_id=run.run_id, timestamp=time.time()))
            assert Path(str(shard) + "-wal").stat().st_size > 0  # the writes sit in the WAL
            with arrived:
                assert arrived.wait_for(lambda: len(seen) >= n, timeout=60), f"the watcher saw {seen}"
        assert seen == ["first", "second", "third"]
        reader.end_watch_event_logs(run.run_id, callback)


def test_runs_of_dagsters_own_run_storage_are_kept_and_seen_by_other_processes(home):
    """A home whose runs.db Dagster's own class wrote opens with Orbit's: the same runs and tags. A run this
    process writes through its kept connection (in the WAL) is seen by another process at once, with its
    status, and a migration check answered no is asked again (only yes is remembered)."""
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    from resources.sqlite_storage import OrbitSqliteEventLogStorage, OrbitSqliteRunStorage

    base = str(Path(os.environ["DAGSTER_HOME"]) / "history")
    theirs = SqliteRunStorage.from_local(base)  # Dagster's own class writes the first run
    first = theirs.add_run(dg.DagsterRun(job_name="hello_job", tags={"orbit/round": "r0000"}))
    theirs.dispose()
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage) is OrbitSqliteRunStorage
        assert instance.get_run_by_id(first.run_id).tags["orbit/round"] == "r0000"
        result = hello_job.execute_in_process(instance=instance, tags={"orbit/round": "r0001"})
        assert result.success
        code = ("import dagster as dg, sys\n"
                "with dg.DagsterInstance.get() as i:\n"
                "    run = i.get_run_by_id(sys.argv[1])\n"
                "    print(run.status.value, run.tags['orbit/round'], len(i.get_runs()))\n")
        out = subprocess.run([sys.executable, "-c", code, result.run_id], capture_output=True, text=True,
                             env={**os.environ}, cwd=ROOT, check=True).stdout.split()
        assert out == ["SUCCESS", "r0001", "2"]
        with sqlite3.connect(Path(base) / "runs.db") as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        runs, events = instance.run_storage, instance.event_log_storage
        assert runs.has_run_stats_index_cols() and "run_stats_index_cols" in runs._known()
        assert not runs.has_built_index("no such migration") and "index:no such migration" not in runs._known()
        plan = instance.get_run_by_id(result.run_id).execution_plan_snapshot_id
        assert runs.has_execution_plan_snapshot(plan) and not runs.has_execution_plan_snapshot("0" * 40)
        assert isinstance(events, OrbitSqliteEventLogStorage)
        assert events.has_table("dynamic_partitions") and "dynamic_partitions" in events._known()
        assert not events.has_table("no_such_table") and "no_such_table" not in events._known()


def test_a_shard_another_process_made_first_is_kept(home, tmp_path):
    """A run's shard is placed from the template only where no file is: a shard Dagster's own class (another
    process) created first keeps its bytes and events, and the template's copy is never half written over it."""
    from dagster._core.events.log import EventLogEntry
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    from resources.sqlite_storage import OrbitSqliteEventLogStorage

    base = str(tmp_path / "shared")
    theirs = SqliteEventLogStorage(base)
    theirs.store_event(EventLogEntry(error_info=None, level="INFO", user_message="theirs first", run_id="run-a",
                                     timestamp=time.time()))
    theirs.dispose()
    ours = OrbitSqliteEventLogStorage(base)
    try:
        assert ours._place_new_shard(ours.path_for_shard("run-a")) is False  # the file is there: left alone
        ours.store_event(EventLogEntry(error_info=None, level="INFO", user_message="ours next", run_id="run-a",
                                       timestamp=time.time()))
        assert [e.user_message for e in ours.get_logs_for_run("run-a")] == ["theirs first", "ours next"]
        # a new shard: placed once, then refused (no temporary file is left beside it)
        path = ours.path_for_shard("run-b")
        assert ours._place_new_shard(path) is True and ours._place_new_shard(path) is False
        assert "run-b.db" in os.listdir(base) and not [n for n in os.listdir(base) if n.endswith(".tmp")]
    finally:
        ours.dispose()


def _dagsters_own_instance(folder: Path) -> dg.DagsterInstance:
    """An instance on Dagster's own SQLite run storage and event log, in ``folder``."""
    folder.mkdir(parents=True)
    (folder / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        f"run_storage:\n  module: dagster._core.storage.runs\n  class: SqliteRunStorage\n"
        f"  config:\n    base_dir: {folder / 'history'}\n"
        f"event_log_storage:\n  module: dagster._core.storage.event_log\n  class: SqliteEventLogStorage\n"
        f"  config:\n    base_dir: {folder / 'history' / 'runs'}\n")
    return dg.DagsterInstance.from_config(str(folder))


def test_planned_events_are_one_batch_and_record_what_dagsters_own_storage_does(home, tmp_path, monkeypatch):
    """A run's planned materializations and check (one batch from Dagster) are written with one insert into the
    run's shard, and every answer the instance gives afterwards (the runs' events, asset records, planned and
    materialized partitions, check executions) is the one Dagster's own event log gives for the same runs."""
    from storage_runs import run_and_record

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "100")  # what Orbit's processes run with (orbit.io.home)
    with _dagsters_own_instance(tmp_path / "theirs") as theirs:
        expected = run_and_record(theirs)
    with dg.DagsterInstance.get() as ours:
        storage = ours.event_log_storage
        batches = []
        insert_run_rows = storage._insert_run_rows
        storage._insert_run_rows = lambda rows: (batches.append([r["dagster_event_type"] for r in rows]),
                                                 insert_run_rows(rows))[1]
        got = run_and_record(ours)
    assert batches == [["ASSET_MATERIALIZATION_PLANNED", "ASSET_MATERIALIZATION_PLANNED",
                        "ASSET_CHECK_EVALUATION_PLANNED"]] * 3
    assert got == expected
    assert got["checks"] == [("run2", "PLANNED", "b|r1"), ("run1", "SUCCEEDED", "b|r1"), ("run0", "SUCCEEDED", "a|r1")]
    assert got["records"]["made"]["last_run"] == got["records"]["made"]["latest_planned_b"] == "run2"
    assert got["records"]["made"]["materialized"] == ["a|r1", "b|r1"]


def test_a_round_partition_found_is_remembered_for_a_second_and_a_delete_is_seen(home, monkeypatch):
    """A dynamic partition found to exist is not asked again within RECENT_PARTITION_S; one deleted through the
    same storage is gone at once, one deleted by another process is gone once that time has passed; a no is
    never remembered. The asset-key columns and secondary indexes Dagster asks about are remembered once yes."""
    import resources.storage_checks as checks

    monkeypatch.setattr(checks, "RECENT_PARTITION_S", 0.5)
    with dg.DagsterInstance.get() as ours, dg.DagsterInstance.get() as other:
        storage = ours.event_log_storage
        assert not ours.has_dynamic_partition("rounds", "r7")
        other.add_dynamic_partitions("rounds", ["r7", "r8"])
        assert ours.has_dynamic_partition("rounds", "r7")  # a no was not remembered
        other.delete_dynamic_partition("rounds", "r7")
        assert ours.has_dynamic_partition("rounds", "r7")  # still remembered...
        time.sleep(0.6)
        assert not ours.has_dynamic_partition("rounds", "r7")  # ...for RECENT_PARTITION_S only
        assert ours.has_dynamic_partition("rounds", "r8")
        ours.delete_dynamic_partition("rounds", "r8")
        assert not ours.has_dynamic_partition("rounds", "r8")  # its own delete: at once
        assert storage.has_asset_key_col("cached_status_data") and "asset_keys.cached_status_data" in storage._known()
        assert not storage.has_asset_key_col("no_such_column") and "asset_keys.no_such_column" not in storage._known()
        assert storage.has_secondary_index("asset_key_index_columns")
        assert "index:asset_key_index_columns" in storage._known()
