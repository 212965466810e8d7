"""The real-model tier (``make test-model``): SmolLM2-135M-Instruct served by llama-cpp-python on 127.0.0.1.

Collected only with ``ORBIT_MODEL_TESTS=1`` (``make test-model`` sets it, with ``ORBIT_LLAMA_PYTHON``
and ``ORBIT_TEST_GGUF``), so plain ``make test`` never needs the tool venv or the model file.
"""

import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GGUF = Path(os.environ.get("ORBIT_TEST_GGUF") or REPO / ".tools" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
ALIAS = "smollm2"
# llama-cpp-python's chatml-function-calling generates tool arguments without max_tokens (until the
# context is full): the context bounds a runaway argument (minutes on a small machine, never forever)
N_CTX = 4096

if os.environ.get("ORBIT_MODEL_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def llama():
    """One llama.cpp server for the session; ``chatml-function-calling`` serves tool calls and JSON-constrained output."""
    from orbit.policies.llama_server import TOOL_CHAT_FORMAT, start_llama_server

    # a terminated test run still stops the server (its own process group) through the fixture's teardown
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with start_llama_server(GGUF, alias=ALIAS, chat_format=TOOL_CHAT_FORMAT, n_ctx=N_CTX) as server:
        yield server
    signal.signal(signal.SIGTERM, previous)
