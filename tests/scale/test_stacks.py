"""The same round on the one-machine stack and on the stack beyond one machine gives identical rows.

One machine: the Dagster instance on SQLite (the ``dagster.yaml`` ``orbit home`` writes), the lake in a local
folder, the generation chunks on the local process pool. Beyond: the instance on PostgreSQL
(``orbit home --postgres``), the lake on ``s3://`` (moto's server on 127.0.0.1), the chunks on a Ray head
(``ray start --head``, loopback). Every server is real and started here. Both rounds run through the same
headless runner (round x env runs, the export run, the report run); the partitions of every stage, the
cumulative training set and the SFT export are compared row for row (wall-clock measures blanked, as in
test_s3).
"""

import importlib.util
import os
from pathlib import Path

import dagster as dg
import pytest

if importlib.util.find_spec("ray") is None:  # the scale dependency group: uv sync --group scale
    pytest.skip("ray is not installed (the scale dependency group)", allow_module_level=True)

from s3_server import S3Server  # noqa: E402
from test_s3 import STAGES, _differing, _sorted  # noqa: E402

from orbit.compute import ray_backend, workers  # noqa: E402
from orbit.io import lake  # noqa: E402
from orbit.io.home import ensure_home, use_postgres  # noqa: E402
from orbit.io.lakefs import S3Path, lake_path  # noqa: E402
from orbit_assets.runner import raw_samples_config, run_rounds  # noqa: E402
from resources import resources_for  # noqa: E402

pytestmark = pytest.mark.timeout(1200)

ENVS = ["tic_tac_toe", "kuhn_poker"]
ROUNDS = ["r0000", "r0001"]
BUCKET = "orbit-stacks"
SAVED = ("ORBIT_HOME", "DAGSTER_HOME", "ORBIT_LAKE", "ORBIT_RAY_ADDRESS", "ORBIT_POSTGRES_PASSWORD",
         "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "ORBIT_S3_ENDPOINT", "AWS_ENDPOINT_URL",
         "AWS_PROFILE")


def _round(home: Path, lake_root: str, postgres: tuple | None = None) -> list[str]:  # [event log class]
    """Two rounds of ENVS through the headless runner on the instance of ``home``; every chunk on the pool."""
    os.environ["ORBIT_HOME"], os.environ["DAGSTER_HOME"] = str(home), str(home / "dagster")
    ensure_home()
    if postgres is not None:
        url, password = postgres
        os.environ["ORBIT_POSTGRES_PASSWORD"] = password
        use_postgres(url, "ORBIT_POSTGRES_PASSWORD")
    config = raw_samples_config(num_tasks=30, samples_per_task=2, options={"pool_worth_seconds": 0})
    with dg.DagsterInstance.get() as instance:
        kind = type(instance.event_log_storage).__name__
        run_ids = run_rounds(ROUNDS, ENVS, instance=instance, run_config=config, log=lambda m: None,
                             resources=resources_for(lake=lake_root, home=str(home), workers=2))
        assert all(instance.get_run_by_id(r).is_success for r in run_ids)
    return [kind]


@pytest.fixture(scope="module")
def stacks(postgres_server, ray_cluster, tmp_path_factory):
    saved = {k: os.environ.get(k) for k in SAVED}
    s3 = S3Server().start()
    head = ray_cluster  # the session's head (conftest.py): its client settings are in the environment
    try:
        for k in SAVED:
            if k.startswith(("AWS_", "ORBIT_S3")):
                os.environ.pop(k, None)
        os.environ.pop("ORBIT_RAY_ADDRESS", None)
        os.environ.pop("ORBIT_LAKE", None)

        # one machine: SQLite, a folder, the local process pool
        local_home = tmp_path_factory.mktemp("one-machine")
        (local_kind,) = _round(local_home, str(local_home / "lake"))
        workers.shutdown_pool()

        # beyond: PostgreSQL, s3://, Ray
        os.environ.update(s3.client_env)
        s3.bucket(BUCKET)
        os.environ["ORBIT_RAY_ADDRESS"] = head.address
        # joined and warm before the round: a step plays its first chunks itself while its pool is starting
        # (orbit/compute/workers.py), and a partition this small could be done before Ray is
        workers.start_pool(2).result(timeout=300)
        assert workers.pool_running(2)
        tasks = ray_backend.STATS["tasks"]
        remote = f"s3://{BUCKET}/lake"
        db = postgres_server.create_database("stacks")
        (remote_kind,) = _round(tmp_path_factory.mktemp("beyond"), remote,
                                (postgres_server.tcp_url(db, password=False), postgres_server.password))
        ray_tasks = ray_backend.STATS["tasks"] - tasks
        yield {"local": local_home / "lake", "remote": lake_path(remote), "kinds": (local_kind, remote_kind),
               "ray_tasks": ray_tasks}
    finally:
        ray_backend.disconnect()
        workers.shutdown_pool()
        s3.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_the_stacks_are_what_they_say(stacks):
    assert stacks["kinds"] == ("OrbitSqliteEventLogStorage", "OrbitPostgresEventLogStorage")
    assert isinstance(stacks["remote"], S3Path)
    assert stacks["ray_tasks"] >= 2 * len(ENVS), "the generation chunks did not run as Ray tasks"


def test_identical_rows_on_both_stacks(stacks):
    local, remote = stacks["local"], stacks["remote"]
    for r in ROUNDS:
        for env in ENVS:
            for asset, keys in STAGES.items():
                mine = _sorted(lake.read_table(lake.partition_file(remote, asset, r, env)), keys)
                theirs = _sorted(lake.read_table(lake.partition_file(local, asset, r, env)), keys)
                assert mine.num_rows == theirs.num_rows > 0, (asset, r, env)
                assert mine.schema.equals(theirs.schema), (asset, r, env)
                assert mine.equals(theirs), f"{asset} {r}|{env} differs: {_differing(mine, theirs)}"
        mine = _sorted(lake.read_table(lake.partition_file(remote, "training_set", r)), ["record_id"])
        theirs = _sorted(lake.read_table(lake.partition_file(local, "training_set", r)), ["record_id"])
        assert mine.num_rows == theirs.num_rows > 0 and mine.equals(theirs), _differing(mine, theirs)


def test_identical_sft_exports_on_both_stacks(stacks):
    local, remote = stacks["local"], stacks["remote"]
    local_dir = lake.partition_dir(local, "sft_export", ROUNDS[-1])
    remote_dir = lake.partition_dir(remote, "sft_export", ROUNDS[-1])
    names = sorted(p.name for p in local_dir.iterdir() if p.is_file())
    assert names and sorted(p.name for p in remote_dir.iterdir() if p.is_file()) == names
    for name in names:
        assert (remote_dir / name).read_bytes() == (local_dir / name).read_bytes(), name
