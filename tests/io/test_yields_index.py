"""The compact yields index gives exactly the rows a scan of every yield_metrics file gives."""

import os
import subprocess
import sys

import duckdb
import pyarrow as pa

from orbit.io import lake
from orbit.query import SUMMARY_SQL, YIELD_TABLE, connect
from orbit.stages.yields import YIELD_SCHEMA, index_file, yields_table


def _write(root, rnd, env, attempts, sources=("all", "selfplay")):
    rows = [{"round": rnd, "env": env, "source": s, "attempts": attempts, "passes": attempts // 2,
             "pass_rate": 0.5, "g": None if i else 1.25} for i, s in enumerate(sources)]
    lake.write_table(pa.Table.from_pylist(rows, schema=YIELD_SCHEMA),
                     lake.partition_file(root, "yield_metrics", rnd, env))


def _full_scan(root):
    glob = lake.sql_literal(lake.asset_glob(root, "yield_metrics", 2))
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT * FROM read_parquet({glob}, hive_partitioning = false) "
                       "ORDER BY env, round, source <> 'all', source").fetchall()
    finally:
        con.close()


def _via_connect(root, views=True):
    con = connect(root, views=views)
    try:
        return con.execute(f"SELECT * FROM {YIELD_TABLE}").fetchall(), con.execute(SUMMARY_SQL).fetchall()
    finally:
        con.close()


def test_index_follows_new_changed_and_removed_partitions(tmp_path):
    root = tmp_path / "lake"
    assert yields_table(root).num_rows == 0 and not index_file(root).exists()  # an empty lake stays untouched
    for r in range(3):
        for env in ("tic_tac_toe", "kuhn_poker"):
            _write(root, f"r000{r}", env, 10 + r)
    assert _via_connect(root)[0] == _full_scan(root)
    assert index_file(root).exists()
    assert _via_connect(root, views=False) == _via_connect(root)

    _write(root, "r0001", "kuhn_poker", 99, sources=("all", "policy", "selfplay"))  # rematerialized
    _write(root, "r0003", "tic_tac_toe", 7)  # new round
    lake.partition_file(root, "yield_metrics", "r0000", "kuhn_poker").unlink()  # gone
    rows, _ = _via_connect(root)
    assert rows == _full_scan(root)
    assert [r[3] for r in rows if r[0] == "r0001" and r[1] == "kuhn_poker"] == [99, 99, 99]
    # a stale index on a read-only query is still not trusted
    stored = yields_table(root)
    _write(root, "r0002", "kuhn_poker", 55)
    assert yields_table(root, write=False).to_pylist() != stored.to_pylist()
    assert yields_table(root).to_pylist() == yields_table(root, write=False).to_pylist()


def test_query_commands_do_not_import_dagster(tmp_path):
    root = tmp_path / "lake"
    _write(root, "r0000", "tic_tac_toe", 4)
    code = ("import sys, orbit_cli.main; rc = orbit_cli.main.main(['yields', '--format', 'csv']); "
            "rc |= orbit_cli.main.main(['sql', 'SELECT count(*) AS n FROM yields']); "
            "assert 'dagster' not in sys.modules, 'dagster imported'; sys.exit(rc)")
    env = dict(os.environ, ORBIT_HOME=str(tmp_path / "home"), ORBIT_LAKE=str(root))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "r0000,tic_tac_toe,all,4,2" in out.stdout
    assert out.stdout.rstrip().endswith("n\n-\n2\n(1 rows)")
