import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orbit import lake


def test_hive_layout(tmp_path):
    path = lake.partition_file(tmp_path, "raw_samples", "r0003", "tic_tac_toe")
    assert path == tmp_path / "raw_samples" / "round=r0003" / "env=tic_tac_toe" / "part-0.parquet"
    assert lake.partition_file(tmp_path, "sft_export", "r0003", None).parent.name == "round=r0003"


def test_write_streams_row_groups_and_uses_zstd(tmp_path):
    schema = pa.schema([("x", pa.int64())])
    batches = (pa.record_batch([pa.array(range(i * 10, i * 10 + 10))], schema=schema) for i in range(5))
    path = lake.write_batches(batches, schema, tmp_path / "a" / "part-0.parquet")
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 50 and meta.num_row_groups == 5
    assert meta.row_group(0).column(0).compression == "ZSTD"


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
