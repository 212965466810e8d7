"""The scale tier (``make test-scale``): the Dagster instance on a real PostgreSQL, Dagster pools, and the
compute beyond one machine.

Collected only with ORBIT_TEST_SCALE=1 (``make test-scale`` sets it), like tests/llm, so ``make test`` needs no
PostgreSQL server. The server comes from Debian's packages (``apt-get install postgresql``; ``.ci/run`` installs
it): ``pg_server.PostgresServer`` runs initdb in a temp dir (as the ``postgres`` user when the tests run as
root), listens on 127.0.0.1 and a socket in that dir, and is stopped by its pid when the session ends.
"""

import os

import pytest

collect_ignore_glob = [] if os.environ.get("ORBIT_TEST_SCALE") == "1" else ["test_*.py"]


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session; each test makes its own database (``create_database``)."""
    from pg_server import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    """One Ray head for the session (``ray start --head --num-cpus 2``, loopback, token auth): a process that
    joined one token-authenticated head keeps its token and cannot join a second one."""
    from ray_head import RayHead

    from orbit.compute import ray_backend, workers

    head = RayHead(num_cpus=2).start()
    saved = {k: os.environ.get(k) for k in ("ORBIT_RAY_ADDRESS", "ORBIT_RAY_TASK_RETRIES", "ORBIT_RAY_STALL_SECONDS",
                                            "RAY_AUTH_TOKEN", *head.client_env)}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(head.client_env)
    try:
        yield head
    finally:
        ray_backend.disconnect()
        workers.shutdown_pool()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        head.stop()
    assert not head.processes(), "a process of the Ray head outlived its stop"
