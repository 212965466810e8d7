"""The lake on object storage: one headless round through Dagster on ``s3://`` (moto's server on 127.0.0.1,
``s3_server.S3Server``) and the same round on a local folder give the same rows; ``orbit yields`` gives the
same numbers; an interrupted write leaves no object; exports are readable from s3 by pandas and pyarrow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orbit.io import lake
from orbit.io.lakefs import S3Path, arrow_fs, lake_path, s3
from orbit.query import SUMMARY_SQL, connect
from orbit_assets.runner import raw_samples_config, run_rounds
from resources import resources_for
from s3_server import S3Server

ROOT = Path(__file__).resolve().parents[2]
ENV = "tic_tac_toe"
STAGES = {"raw_samples": ["record_id"], "verified_samples": ["record_id"], "filtered_dataset": ["record_id"],
          "yield_metrics": ["round", "env", "source"]}
BUCKET = "orbit-lake"


@pytest.fixture(scope="module")
def server():
    with S3Server() as srv, pytest.MonkeyPatch.context() as mp:
        for key, value in srv.client_env.items():
            mp.setenv(key, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        srv.bucket(BUCKET)
        yield srv


def _round(home: Path, lake_root: str) -> None:
    (home / "dagster").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        mp.setenv("ORBIT_HOME", str(home))
        run_rounds(["r0000"], [ENV], instance=instance,
                   resources=resources_for(lake=lake_root, home=str(home), workers=2),
                   run_config=raw_samples_config(num_tasks=24, samples_per_task=2), log=lambda m: None)


@pytest.fixture(scope="module")
def lakes(server, tmp_path_factory):
    """(local lake, s3 lake) after the same round, each with its own home and Dagster instance."""
    local_home, s3_home = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("s3")
    remote = f"s3://{BUCKET}/lakes/one"
    _round(local_home, str(local_home / "lake"))
    _round(s3_home, remote)
    return local_home / "lake", lake_path(remote), s3_home


# Wall-clock measures differ between any two runs, on one lake as on two: a record's sampling time
# (metadata.sampling.seconds) and the yields' seconds and rates derived from it. Only those are blanked.
WALL_CLOCK = ("seconds", "requests_per_s", "tokens_per_s")


def _no_wall_clock(value: str | None) -> str | None:
    if value is None:
        return None
    meta = json.loads(value)
    if isinstance(meta, dict) and isinstance(meta.get("sampling"), dict) and "seconds" in meta["sampling"]:
        meta["sampling"]["seconds"] = None if meta["sampling"]["seconds"] is None else "<wall clock>"
    return json.dumps(meta, sort_keys=True)


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    """Sorted by ``keys`` (every row kept), wall-clock measures blanked."""
    for name in table.column_names:
        i = table.column_names.index(name)
        if name == "metadata":
            table = table.set_column(i, table.field(i), pa.array(
                [_no_wall_clock(v) for v in table.column(i).to_pylist()], table.field(i).type))
        elif name in WALL_CLOCK:
            values = ["<set>" if v is not None else None for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(name, pa.string()), pa.array(values, pa.string()))
    return table.sort_by([(k, "ascending") for k in keys])


def _differing(a: pa.Table, b: pa.Table) -> list[str]:
    """Columns whose values differ, with the first differing row's values (for the failure message)."""
    out = []
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if x != y:
            i = next(i for i, (u, v) in enumerate(zip(x, y)) if u != v)
            out.append(f"{name}[{i}]: {str(x[i])[:300]} != {str(y[i])[:300]}")
    return out


def test_same_rows_on_s3_as_on_a_folder(lakes):
    local, remote, _ = lakes
    assert isinstance(remote, S3Path)
    for asset, keys in STAGES.items():
        path = lake.partition_file(remote, asset, "r0000", ENV)
        assert str(path) == f"s3://{BUCKET}/lakes/one/{asset}/r0000/{ENV}/part-0.parquet"
        mine = _sorted(lake.read_table(path), keys)
        theirs = _sorted(pq.read_table(lake.partition_file(local, asset, "r0000", ENV)), keys)
        assert mine.num_rows == theirs.num_rows > 0, asset
        assert mine.schema.equals(theirs.schema), asset
        assert mine.equals(theirs), f"{asset}: rows differ between the s3 and the local lake: {_differing(mine, theirs)}"
    for asset in ("training_set",):
        mine = lake.read_table(lake.partition_file(remote, asset, "r0000"))
        theirs = pq.read_table(lake.partition_file(local, asset, "r0000"))
        assert _sorted(mine, ["record_id"]).equals(_sorted(theirs, ["record_id"]))
    # the same layout, object for file: the report database only exists beside a folder lake, and the yields
    # index is a cache written by the first yields query (on s3 the report asset's in-memory query)
    keys = sorted(k[len(f"{BUCKET}/lakes/one/"):] for k in s3().find(remote.key))
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert [k for k in keys if not k.startswith("yields_index/")] == [
        f for f in files if f != "orbit.duckdb" and not f.endswith(".lock") and not f.startswith("yields_index/")]
    assert not any("/." in k or k.endswith(".tmp") for k in keys)


def test_yields_query_on_s3_equals_local(lakes):
    local, remote, _ = lakes
    answers = []
    for root in (local, remote):
        con = connect(root)
        try:
            answers.append(con.execute(f"{SUMMARY_SQL} ORDER BY env, round, source").fetchall())
            assert con.execute("SELECT count(*) FROM filtered_dataset").fetchall()[0][0] > 0
            loaded = con.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()
            assert ("httpfs",) not in loaded
        finally:
            con.close()
    assert answers[0] == answers[1] and answers[0]
    # the yields index was written to the object store
    assert lake.partition_file(remote, "yields_index").exists()


def test_orbit_yields_command_on_s3(lakes, server, tmp_path):
    local, remote, s3_home = lakes
    outputs = []
    for env in ({"ORBIT_HOME": str(local.parent)},
                {"ORBIT_HOME": str(tmp_path / "elsewhere"), "ORBIT_LAKE": str(remote)}):
        proc = subprocess.run([sys.executable, "-m", "orbit_cli", "yields", "--format", "csv"], cwd=ROOT,
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
        assert server.client_env["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr
    assert outputs[0] == outputs[1]
    assert "tic_tac_toe" in outputs[0]


def test_interrupted_write_leaves_no_object(server):
    target = lake.partition_file(f"s3://{BUCKET}/interrupted", "raw_samples", "r0000", ENV)
    schema = pa.schema([("x", pa.int64())])

    def batches(fail: bool):
        for i in range(4):
            if fail and i == 2:
                raise RuntimeError("killed mid-stream")
            yield pa.record_batch([pa.array(range(i * 50_000, (i + 1) * 50_000))], schema=schema)

    with pytest.raises(RuntimeError, match="killed mid-stream"):
        lake.write_batches(batches(True), schema, target, group_rows=50_000)
    assert not target.exists()
    assert s3().find(f"{BUCKET}/interrupted") == []
    lake.write_batches(batches(False), schema, target, group_rows=50_000)  # a whole write
    assert lake.row_count(target) == 200_000
    with pytest.raises(RuntimeError):  # a failed rewrite keeps the old object whole
        lake.write_batches(batches(True), schema, target, group_rows=50_000)
    assert lake.row_count(target) == 200_000 and lake.read_table(target).column("x").to_pylist()[-1] == 199_999
    assert s3().find(f"{BUCKET}/interrupted") == [target.key]


def test_exports_readable_from_s3(lakes, server):
    import pandas as pd

    local, remote, _ = lakes
    storage = {"client_kwargs": {"endpoint_url": server.endpoint}}
    for kind in ("sft_export", "dpo_export", "grpo_export"):
        folder = lake.partition_dir(remote, kind, "r0000")
        for flavour, split in (("swift", "train"), ("trl", "train")):
            url = f"{folder}/{flavour}/{split}.jsonl"
            theirs = (local / kind / "r0000" / flavour / f"{split}.jsonl").read_text(encoding="utf-8")
            assert (folder / flavour / f"{split}.jsonl").read_text() == theirs
            if theirs.strip():
                frame = pd.read_json(url, lines=True, storage_options=storage)
                assert len(frame) == len(theirs.splitlines())
        assert "configs:" in (folder / "README.md").read_text()
    # the Parquet assets: pandas through fsspec, pyarrow datasets through the lake's file system
    frame = pd.read_parquet(f"{remote}/filtered_dataset", storage_options=storage)
    table = pq.read_table(f"{remote.key}/filtered_dataset", filesystem=arrow_fs())
    expected = pq.read_table(str(local / "filtered_dataset"))
    assert len(frame) == table.num_rows == expected.num_rows > 0
    assert sorted(table.column("record_id").to_pylist()) == sorted(expected.column("record_id").to_pylist())


def test_no_credentials_in_the_lake(lakes, server):
    _, remote, s3_home = lakes
    secret = server.client_env["AWS_SECRET_ACCESS_KEY"].encode()
    key_id = server.client_env["AWS_ACCESS_KEY_ID"].encode()
    fs = s3()
    for key in fs.find(remote.key):
        body = fs.cat_file(key)
        assert secret not in body and key_id not in body, key
    for path in s3_home.rglob("*"):
        if path.is_file():
            body = path.read_bytes()
            assert secret not in body and key_id not in body, path
    # the run's metadata names the object, never a credential
    assert json.dumps(str(remote)).find("@") == -1
