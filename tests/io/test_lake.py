import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import row_group_sizes

from orbit.io import lake


def test_layout_has_bare_partition_values(tmp_path):
    path = lake.partition_file(tmp_path, "raw_samples", "r0003", "tic_tac_toe")
    assert path == tmp_path / "raw_samples" / "r0003" / "tic_tac_toe" / "part-0.parquet"
    assert lake.partition_file(tmp_path, "sft_export", "r0003", None).parent.name == "r0003"
    assert lake.report_file(tmp_path, "flywheel.png") == tmp_path / "reports" / "flywheel.png"


def test_write_streams_row_groups_and_uses_zstd(tmp_path):
    schema = pa.schema([("x", pa.int64())])
    batches = (pa.record_batch([pa.array(range(i * 10, i * 10 + 10))], schema=schema) for i in range(5))
    path = lake.write_batches(batches, schema, tmp_path / "a" / "part-0.parquet", group_rows=25)
    meta = pq.ParquetFile(path).metadata
    # small batches gather into row groups of at least group_rows rows; the rest closes the file
    assert meta.num_rows == 50 and row_group_sizes(path) == [30, 20]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(path).column("x").to_pylist() == list(range(50))


def test_a_generators_small_batches_make_full_row_groups(tmp_path):
    """Batches of a few hundred rows (a generator's chunks) are not a row group each; a batch of
    ROW_GROUP_ROWS rows stays one row group, so big streams keep their layout."""
    schema = pa.schema([("x", pa.int64()), ("s", pa.string())])

    def batch(start, n):
        return pa.record_batch([pa.array(range(start, start + n)), pa.array([f"v{i % 7}" for i in range(n)])],
                               schema=schema)

    full = -(-lake.ROW_GROUP_ROWS // 187)  # small batches that fill a row group
    sizes = [187] * (full + 6) + [lake.ROW_GROUP_ROWS, lake.ROW_GROUP_ROWS, 5]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    path = lake.write_batches((batch(a, n) for a, n in zip(starts, sizes)), schema, tmp_path / "part-0.parquet")
    assert row_group_sizes(path) == [187 * full, 187 * 6 + lake.ROW_GROUP_ROWS, lake.ROW_GROUP_ROWS, 5]
    assert pq.read_table(path).column("x").to_pylist() == list(range(sum(sizes)))


def test_wide_rows_close_a_row_group_at_its_byte_limit(tmp_path):
    schema = pa.schema([("text", pa.string())])
    wide = pa.record_batch([pa.array(["y" * 1000] * 10)], schema=schema)  # ~10 KB a batch
    path = lake.write_batches(iter([wide] * 7), schema, tmp_path / "part-0.parquet", group_bytes=25_000)
    assert row_group_sizes(path) == [30, 30, 10]


def test_empty_stream_writes_empty_file_with_schema(tmp_path):
    schema = pa.schema([("x", pa.int64())])
    path = lake.write_batches(iter([]), schema, tmp_path / "part-0.parquet")
    assert pq.read_table(path).schema.equals(schema) and lake.row_count(path) == 0


def test_atomic_replacement_keeps_old_partition_on_crash(tmp_path):
    schema = pa.schema([("x", pa.int64())])
    path = tmp_path / "p" / "part-0.parquet"
    lake.write_table(pa.table({"x": [1, 2, 3]}, schema=schema), path)

    def exploding():
        yield pa.record_batch([pa.array([7, 8])], schema=schema)
        raise RuntimeError("generator crashed mid-partition")

    with pytest.raises(RuntimeError):
        lake.write_batches(exploding(), schema, path)
    assert pq.read_table(path).column("x").to_pylist() == [1, 2, 3]
    assert os.listdir(path.parent) == ["part-0.parquet"], "no temporary file is left behind"

    lake.write_table(pa.table({"x": [9]}, schema=schema), path)
    assert pq.read_table(path).column("x").to_pylist() == [9]
    assert os.listdir(path.parent) == ["part-0.parquet"]


def _five_readers(folder):
    """Row count and column set each of the five readers sees when it opens ``folder`` as one table."""
    import datasets
    import duckdb
    import pandas as pd
    import polars as pl

    datasets.disable_progress_bars()
    seen = {
        "pandas": pd.read_parquet(folder),
        "pyarrow": pq.read_table(folder),
        "polars": pl.scan_parquet(str(folder / "**" / "*.parquet"), hive_partitioning=True).collect(),
        "datasets": datasets.load_dataset("parquet", data_dir=str(folder), split="train",
                                          cache_dir=str(folder.parent.parent / ".hf")),
        "duckdb": duckdb.sql(f"SELECT * FROM read_parquet({lake.sql_literal(folder / '**' / '*.parquet')})").to_arrow_table(),
    }
    out = {}
    for name, t in seen.items():
        columns = list(t.column_names) if hasattr(t, "column_names") else list(t.columns)
        out[name] = (len(t) if name != "duckdb" else t.num_rows, frozenset(columns))
    return out


def test_every_reader_opens_every_asset_folder(tmp_path):
    from tests.trainers.real_lake import build_lake

    root = build_lake(tmp_path / "home", liveweb_tasks=2, game_tasks=3)
    # the other layouts: round-only (training_set), unpartitioned (cfr_policies, flywheel_report), two rounds
    t = lake.read_table(lake.partition_file(root, "verified_samples", "r0000", "tic_tac_toe"))
    r1 = t.set_column(t.schema.get_field_index("round"), t.schema.field("round"), pa.array(["r0001"] * t.num_rows))
    lake.write_table(r1, lake.partition_file(root, "verified_samples", "r0001", "tic_tac_toe"))
    lake.write_table(t, lake.partition_file(root, "training_set", "r0000"))
    lake.write_table(pa.table({"env": ["tic_tac_toe"], "g": [1.5]}), lake.partition_file(root, "flywheel_report"))
    lake.write_bytes(b"png", lake.report_file(root, "flywheel.png"))
    for asset in ("verified_samples", "filtered_dataset", "training_set", "flywheel_report"):
        folder = root / asset
        expected = sum(lake.row_count(p) for p in folder.rglob("*.parquet"))
        assert not [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".parquet"], asset
        seen = _five_readers(folder)
        assert {name: rows for name, (rows, _) in seen.items()} == dict.fromkeys(seen, expected), asset
        columns = {cols for _, cols in seen.values()}
        assert len(columns) == 1, (asset, seen)  # every reader sees the same columns, round/env once
        if asset != "flywheel_report":
            assert {"round", "env"} <= next(iter(columns))
    rounds = __import__("pandas").read_parquet(root / "verified_samples")["round"]
    assert str(rounds.dtype) in ("object", "str", "string") and set(rounds) == {"r0000", "r0001"}


def test_moved_home_keeps_working(tmp_path, monkeypatch):
    import shutil

    import duckdb

    from orbit.flywheel.checkpoints import read_checkpoint, train_embedded
    from orbit.query import build_report_db, open_report_db
    from orbit.flywheel.rounds import RoundRegistry
    from tests.trainers.real_lake import build_lake

    home = tmp_path / "home"
    monkeypatch.setenv("ORBIT_HOME", str(home))
    root = build_lake(home, liveweb_tasks=1, game_tasks=4)
    build_report_db(root)
    games = lake.read_table(lake.partition_file(root, "filtered_dataset", "r0000", "tic_tac_toe"))
    checkpoint = train_embedded(games, home / "checkpoints", "embedded-r0001", parent_round="r0000")[0].checkpoint
    assert checkpoint.policy == "embedded:checkpoints/embedded-r0001/policy.parquet"
    RoundRegistry(root).add(checkpoint.policy, key="r0001", checkpoint=checkpoint.name)
    con = duckdb.connect(str(root / "orbit.duckdb"), read_only=True)
    views = con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall()
    con.close()
    # the report database's views name the lake absolutely (any working directory); a moved home rebuilds
    # them on the next Orbit command that opens it (tests/io/test_duckdb_cli.py runs the DuckDB CLI on it)
    assert views and all(str(root.resolve()) in v for (v,) in views)

    moved = tmp_path / "moved"
    shutil.copytree(home, moved)
    shutil.rmtree(home)  # nothing may still point into the old home
    monkeypatch.setenv("ORBIT_HOME", str(moved))
    con = open_report_db(moved / "lake")
    n = con.execute("SELECT count(*) FROM verified_samples").fetchall()[0][0]
    con.close()
    assert n == sum(lake.row_count(p) for p in (moved / "lake" / "verified_samples").rglob("*.parquet")) > 0
    entry = RoundRegistry(moved / "lake").get("r0001")
    from orbit.policies.uri import load_policy

    assert load_policy(entry.policy) is not None
    assert read_checkpoint(moved / "checkpoints" / "embedded-r0001").policy == entry.policy
