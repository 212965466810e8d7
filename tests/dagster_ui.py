"""Talking to a running Dagster webserver over GraphQL, as the UI does."""

import json
import socket
import urllib.request

from orbit.envs.registry import BUILTIN_SPECS


# The UI tests run the first five built-in envs: the envs file of their home switches the others off (a round
# of every built-in env through the daemon would take most of `make test`'s budget).
UI_ENVS = ("tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker", "liveweb")
UI_ENVS_TOML = "".join(f"[envs.{spec.name}]\nenabled = false\n\n" for spec in BUILTIN_SPECS
                       if spec.name not in UI_ENVS)
REPO = {"repositoryLocationName": "orbit_assets", "repositoryName": "__repository__"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        out = json.loads(resp.read())
    assert "errors" not in out, out
    return out["data"]


def wait_for_location(port: int, proc, log_path, timeout_s: float = 300.0) -> None:
    """Wait until `dagster dev` on ``port`` has loaded the code location; fail with its log's tail if the
    process ends or the time runs out."""
    import time
    from pathlib import Path

    deadline = time.time() + timeout_s
    while True:
        try:
            data = gql(port, "{ workspaceOrError { ... on Workspace { locationEntries { name "
                             "locationOrLoadError { __typename } } } } }")
            entries = data["workspaceOrError"]["locationEntries"]
            if entries and (entries[0]["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation":
                return
        except OSError:
            pass
        assert proc.poll() is None and time.time() < deadline, Path(log_path).read_text()[-3000:]
        time.sleep(1)
