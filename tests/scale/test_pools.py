"""Endpoint concurrency by Dagster pools, not lock files: with the `orbit_sampling` pool at 1, two rounds
backfilled through the UI's GraphQL never sample the same endpoint at once, counted by the server.

Everything is real and on loopback: PostgreSQL (tests/scale/pg_server.py) holds the instance, `dagster dev`
runs the webserver, the daemon (run queue, two runs at a time) and the code server, and the endpoint is Orbit's
OpenAI-compatible policy server behind a counting front server. The two rounds are registered with the same
endpoint under two model names (round-a, round-b), so the front server knows which round each request is
for; it records the most rounds ever in flight at once. The front server holds every request until both
runs are in progress at once (read from the instance), so the round that samples first is still sampling
while the other run is up: only the pool keeps the other's sampling step waiting. The endpoint's lock-file
slots are not what keeps them apart: each run may take up to 8 slots of the same endpoint at once.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from dagster_ui import free_port, gql, wait_for_location
from orbit.envs.registry import BUILTIN_SPECS
from orbit.policies.server import start_server
from orbit.policies.table_policy import TablePolicy

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("round-a", "round-b")
ENV = "tic_tac_toe"
POOL = "orbit_sampling"
HOLD_S = 0.02  # each request is held a little at the front server, so that overlapping rounds would show
GATE_S = 600  # the most the front server holds requests waiting for both runs to be in progress


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = {m: 0 for m in MODELS}
        self.requests = {m: 0 for m in MODELS}
        self.max_rounds_at_once = 0
        self.max_requests_at_once = 0

    def enter(self, model: str) -> None:
        with self.lock:
            self.in_flight[model] += 1
            self.requests[model] += 1
            self.max_rounds_at_once = max(self.max_rounds_at_once, sum(1 for n in self.in_flight.values() if n))
            self.max_requests_at_once = max(self.max_requests_at_once, sum(self.in_flight.values()))

    def leave(self, model: str) -> None:
        with self.lock:
            self.in_flight[model] -= 1


def front_server(upstream: str, upstream_model: str, counter: Counter, gate: threading.Event) -> ThreadingHTTPServer:
    """Serves both model names by forwarding to the policy server (as that model), counting per model; a
    request is answered only once ``gate`` is set."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") != "/v1/models":
                return self._send(404, b"{}")
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in MODELS]
            self._send(200, json.dumps({"object": "list", "data": data}).encode())

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            model = body.get("model")
            if model not in MODELS:
                return self._send(404, b'{"error": {"message": "unknown model"}}')
            counter.enter(model)
            try:
                gate.wait(GATE_S)
                time.sleep(HOLD_S)
                body["model"] = upstream_model
                req = urllib.request.Request(f"{upstream}/chat/completions", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        status, data = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
            finally:
                counter.leave(model)
            self._send(status, data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.mark.timeout(1800)
def test_two_backfilled_rounds_never_sample_one_endpoint_at_once_with_a_pool_of_one(postgres_server, tmp_path):
    pg = postgres_server
    counter = Counter()
    gate = threading.Event()  # set when both runs are in progress at once
    upstream = start_server(TablePolicy())
    front = front_server(upstream.url, TablePolicy().id, counter, gate)
    base_url = f"http://127.0.0.1:{front.server_address[1]}/v1"
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBIT_", "DAGSTER_HOME"))}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1",
               ORBIT_POSTGRES_PASSWORD=pg.password, ORBIT_ENVS_FILE=str(home / "envs.toml"),
               ORBIT_ROUND_TASKS="6", ORBIT_ROUND_BUDGET="12", ORBIT_AUTOMATION_INTERVAL_S="5",
               ORBIT_MAX_ROUNDS="2", ORBIT_MAX_CONCURRENT_RUNS="2")
    home.mkdir()
    (home / "envs.toml").write_text("".join(f"[envs.{s.name}]\nenabled = false\n\n" for s in BUILTIN_SPECS
                                            if s.name != ENV))

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done

    orbit = [sys.executable, "-m", "orbit_cli.commands"]
    cli(*orbit, "home", "--postgres", pg.tcp_url(pg.create_database(), password=False),
        "--password-env", "ORBIT_POSTGRES_PASSWORD")
    for r, model in zip(("r0000", "r0001"), MODELS):  # each round samples "its" model of the one endpoint
        cli(*orbit, "round", "add", "--round", r, "--policy", f"openai:{base_url}#{model}")
    cli(sys.executable, "-m", "dagster", "instance", "concurrency", "set", POOL, "1")

    port = free_port()
    log = open(tmp_path / "dagster-dev.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    os.environ["ORBIT_POSTGRES_PASSWORD"] = pg.password  # this process reads the instance too
    try:
        wait_for_location(port, proc, tmp_path / "dagster-dev.log")
        partitions = [f"{ENV}|r0000", f"{ENV}|r0001"]
        launched = gql(port, """mutation($params: LaunchBackfillParams!) {
            launchPartitionBackfill(backfillParams: $params) {
              __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
                       {"params": {"partitionNames": partitions, "assetSelection": [
                           {"path": [a]} for a in ("raw_samples", "verified_samples", "filtered_dataset",
                                                   "yield_metrics")]}})
        assert launched["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", launched

        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            assert instance.event_log_storage.get_concurrency_info(POOL).slot_count == 1
            deadline = time.time() + 1200
            while time.time() < deadline:
                if not gate.is_set():
                    running = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
                    if {r.tags.get("dagster/partition") for r in running} >= set(partitions):
                        gate.set()  # both runs are up; one of them holds the pool's slot, the other waits
                mats = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_samples")),
                                                       limit=10).records
                busy = instance.get_runs(filters=dg.RunsFilter(statuses=[
                    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED]))
                if len({m.asset_materialization.partition for m in mats}) == 2 and not busy:
                    break
                time.sleep(2)
            assert gate.is_set(), "the two runs were never in progress at once"
            runs = [r for r in instance.get_runs() if r.tags.get("dagster/partition") in partitions]
            failed = [r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            assert not failed, (failed, (tmp_path / "dagster-dev.log").read_text()[-3000:])
            assert sorted({m.asset_materialization.partition for m in mats}) == sorted(partitions)
            # the two sampling steps were in different runs that the queue let run side by side
            sampled_by = {r.tags["dagster/partition"]: r.run_id for r in runs
                          if r.status == dg.DagsterRunStatus.SUCCESS}
            assert len(set(sampled_by.values())) == 2
            print(f"server-side counter: requests {counter.requests}, most rounds in flight at once "
                  f"{counter.max_rounds_at_once}, most requests in flight at once {counter.max_requests_at_once}")
            assert all(counter.requests[m] > 0 for m in MODELS), counter.requests  # both rounds sampled it
            assert counter.max_rounds_at_once == 1  # ... never both at once
            # no slot is left claimed once the runs are over
            assert not instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
    finally:
        gate.set()  # nothing stays held
        os.environ.pop("ORBIT_POSTGRES_PASSWORD", None)
        os.killpg(proc.pid, signal.SIGKILL)  # dagster dev ignores SIGTERM in the background: end its group
        proc.wait(timeout=60)
        log.close()
        front.shutdown()
        front.server_close()
        upstream.stop()
