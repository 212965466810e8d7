"""An invalid round key added as the UI adds it (GraphQL addDynamicPartition) starts no asset run in a real
`dagster dev`; the round-key sensor shows it as one failed run naming the key and the fix, and
`orbit round remove` takes it away."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from dagster_ui import REPO, gql

ROOT = Path(__file__).resolve().parents[2]


def _add(port: int, key: str) -> None:
    added = gql(port, """mutation($repo: RepositorySelector!, $key: String!) {
        addDynamicPartition(repositorySelector: $repo, partitionsDefName: "rounds", partitionKey: $key) {
          __typename ... on PythonError { message } } }""", {"repo": REPO, "key": key})
    assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added


@pytest.mark.timeout(900)
def test_an_invalid_round_key_starts_no_run_and_is_shown_as_a_failed_run(dagster_dev):
    port, home = dagster_dev
    _add(port, "r5")
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        deadline = time.time() + 300
        runs = []
        while time.time() < deadline:
            runs = instance.get_runs()
            if runs and all(r.is_finished for r in runs):
                break
            time.sleep(2)
        (run,) = [r for r in runs if r.job_name == "invalid_round_key"]
        assert run.status == dg.DagsterRunStatus.FAILURE and run.tags["orbit/invalid_round_key"] == "r5"
        time.sleep(12)  # two more automation ticks (5 s here): still no asset run for r5
        runs = instance.get_runs()
        assert [r.job_name for r in runs] == ["invalid_round_key"], [(r.job_name, r.tags) for r in runs]

        # what the user reads on the run's page: the key and the fix
        data = gql(port, """query($id: ID!) { runOrError(runId: $id) { ... on Run { status
            eventConnection { events { __typename ... on ExecutionStepFailureEvent { error { message } } } } } } }""",
                   {"id": run.run_id})
        messages = [e["error"]["message"] for e in data["runOrError"]["eventConnection"]["events"]
                    if e["__typename"] == "ExecutionStepFailureEvent"]
        assert messages and "'r5'" in messages[0] and "orbit round remove r5" in messages[0], messages

        env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBIT_", "DAGSTER_HOME"))}
        env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1")
        out = subprocess.run([sys.executable, "-m", "orbit_cli.commands", "round", "remove", "r5"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "r5" not in instance.get_dynamic_partitions("rounds")
    finally:
        instance.dispose()
