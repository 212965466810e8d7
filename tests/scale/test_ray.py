"""Generation and verification chunks on a real Ray cluster (``ORBIT_RAY_ADDRESS``).

A one-node head (``ray start --head --num-cpus 2``, loopback only, from this venv) is started for the
session and stopped at its end (``ray_head.RayHead``, the ``ray_cluster`` fixture of conftest.py). The stages run as their assets run them: the
env's generator and ``verify_batches`` streamed into ``lake.write_batches`` (atomic). Checked:

* the same partitions, row for row, from the local process pool and from Ray (and the chunks really
  ran as Ray tasks);
* a Ray worker killed mid-partition: with no Ray retries the stage fails with ``RayWorkerDied`` and
  leaves no partition file (nor a temp file); the rerun, during which a worker is killed again and
  Ray retries its task, completes with the same rows;
* a task that raises, a task that hangs, and a cluster that does not answer end in named errors,
  never a hang.
"""

import importlib.util
import operator
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

if importlib.util.find_spec("ray") is None:  # the scale group: uv sync --group scale
    pytest.skip("ray is not installed (the scale dependency group)", allow_module_level=True)

from ray_head import RayHead, free_port  # noqa: E402

from orbit.compute import ray_backend, workers  # noqa: E402
from orbit.envs import GenerationRequest, env_spec, family_of  # noqa: E402
from orbit.io import lake  # noqa: E402
from orbit.io.schema import RECORD_SCHEMA, VERIFIED_SCHEMA  # noqa: E402
from orbit.stages.verify import PARALLEL_MIN_ROWS, VerifyCounts, verify_batches  # noqa: E402

ENV = "tic_tac_toe"
ROUND = "r0000"


def use(address: str | None, **env: str | None) -> None:
    """Where this process's chunks run from now on (None: the local pool), and the Ray knobs."""
    for key, value in {"ORBIT_RAY_ADDRESS": address, **env}.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def request(num_tasks: int, **options) -> GenerationRequest:
    spec = env_spec(ENV)
    # pool_worth_seconds=0: the chunks go to the pool (local or Ray) however small the partition is
    return GenerationRequest(env=spec, round_key=ROUND, num_tasks=num_tasks, samples_per_task=1, base_seed=0,
                             workers=2, options={"pool_worth_seconds": 0, **options})


def generate(req: GenerationRequest, path: Path) -> pa.Table:
    lake.write_batches(family_of(req.env).generate(req), RECORD_SCHEMA, path)
    return lake.read_table(path)


def verify(raw: Path, path: Path) -> tuple[pa.Table, VerifyCounts]:
    spec = env_spec(ENV)
    counts = VerifyCounts()
    lake.write_batches(verify_batches(lake.iter_batches(raw), family_of(spec).verifier(spec), spec.pass_threshold,
                                      counts, workers=2), VERIFIED_SCHEMA, path)
    return lake.read_table(path), counts


def assert_same_rows(local: pa.Table, other: pa.Table) -> None:
    assert other.schema.equals(local.schema)
    assert other.num_rows == local.num_rows
    for i, (a, b) in enumerate(zip(local.to_pylist(), other.to_pylist())):
        assert a == b, f"row {i} differs"
    assert other.equals(local)


def warm_ray(head: RayHead) -> None:
    use(head.address)
    workers.start_pool(2).result(timeout=300)  # joined and warm: every chunk of the next partition goes to Ray
    assert workers.pool_running(2)


def test_same_rows_on_ray_as_on_the_local_pool(ray_cluster, tmp_path):
    head = ray_cluster
    req = request(600)
    use(None)
    local_raw = generate(req, tmp_path / "local" / "raw.parquet")
    # verify goes parallel from PARALLEL_MIN_ROWS rows: the raw partition repeated to a partition that big
    big = pa.concat_tables([local_raw] * (PARALLEL_MIN_ROWS // local_raw.num_rows + 1))
    lake.write_table(big, tmp_path / "big_raw.parquet")
    local_verified, local_counts = verify(tmp_path / "big_raw.parquet", tmp_path / "local" / "verified.parquet")
    workers.shutdown_pool()

    warm_ray(head)
    tasks = ray_backend.STATS["tasks"]
    ray_raw = generate(req, tmp_path / "ray" / "raw.parquet")
    generated_on_ray = ray_backend.STATS["tasks"] - tasks
    assert generated_on_ray >= 16, "the generation chunks did not run as Ray tasks"
    assert_same_rows(local_raw, ray_raw)

    tasks = ray_backend.STATS["tasks"]
    ray_verified, ray_counts = verify(tmp_path / "big_raw.parquet", tmp_path / "ray" / "verified.parquet")
    assert ray_backend.STATS["tasks"] - tasks >= 4, "the verify batches did not run as Ray tasks"
    assert_same_rows(local_verified, ray_verified)
    assert ray_counts == local_counts and local_counts.rows == big.num_rows


def _kill_a_chunk_worker(head: RayHead, done: threading.Event, function: str = "_play_chunk_ipc") -> int | None:
    """Kill (SIGKILL) the first worker seen running a chunk; its pid, or None if the partition ended first."""
    while not done.is_set():
        running = head.workers_running(function)
        if running:
            running[0].kill()
            return running[0].pid
        time.sleep(0.02)
    return None


def _in_thread(fn, *args):
    """Run ``fn(*args)`` in a thread; (done event, outcome dict with 'value' or 'error')."""
    done, outcome = threading.Event(), {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 -- checked by the test
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, outcome


def test_killed_worker_leaves_no_partial_partition_and_the_retry_completes(ray_cluster, tmp_path):
    head = ray_cluster
    # slower games (a stronger learner): the partition lasts long enough to kill a worker in it
    req = request(1200, learner={"kind": "mcts", "simulations": 1000})
    use(None)
    reference = generate(req, tmp_path / "local.parquet")
    workers.shutdown_pool()

    path = lake.partition_file(tmp_path / "lake", "raw_samples", ROUND, ENV)
    warm_ray(head)
    use(head.address, ORBIT_RAY_TASK_RETRIES="0")  # a dead worker fails its task, and so the stage
    done, outcome = _in_thread(generate, req, path)
    killed = _kill_a_chunk_worker(head, done)
    assert done.wait(300), "the stage hangs after its Ray worker died"
    assert killed is not None, "no chunk was seen running on a Ray worker"
    assert isinstance(outcome.get("error"), ray_backend.RayWorkerDied), outcome
    assert not path.exists(), "a partial partition was left behind"
    assert not list(path.parent.glob(".*.tmp")), "a temp file was left behind"

    # the retry (the stage run again), with Ray's retries: a worker killed again is retried by Ray
    use(head.address, ORBIT_RAY_TASK_RETRIES=None)
    warm_ray(head)
    done, outcome = _in_thread(generate, req, path)
    killed_again = _kill_a_chunk_worker(head, done)
    assert done.wait(300), "the retry hangs"
    assert "error" not in outcome, outcome
    assert killed_again is not None, "no chunk was seen running on a Ray worker in the retry"
    assert_same_rows(reference, lake.read_table(path))


def test_failures_on_ray_are_named_errors_never_hangs(ray_cluster):
    head = ray_cluster
    warm_ray(head)
    pool = workers.worker_pool(2)

    failed = pool.submit(operator.truediv, 1, 0)
    with pytest.raises(ray_backend.RayTaskFailed, match="ZeroDivisionError") as info:
        failed.result(timeout=120)
    assert isinstance(info.value.cause, ZeroDivisionError)

    use(head.address, ORBIT_RAY_STALL_SECONDS="2")
    try:
        stuck = pool.submit(time.sleep, 600)
        with pytest.raises(ray_backend.RayTaskTimeout, match="ORBIT_RAY_STALL_SECONDS"):
            stuck.result(timeout=120)  # the watchdog ends it, not this timeout
    finally:
        use(head.address, ORBIT_RAY_STALL_SECONDS=None)

    workers.shutdown_pool()
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    use(closed)
    try:
        with pytest.raises(ray_backend.RayUnavailable, match="does not answer"):
            workers.start_pool(2).result(timeout=60)
        assert not workers.pool_running(2)
    finally:
        use(head.address)
