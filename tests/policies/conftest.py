"""Shared fixture: a real loopback server in front of the embedded uniform table policy."""

import pytest

from orbit.policies.server import Faults, start_server
from orbit.policies.table_policy import TablePolicy


@pytest.fixture
def server():
    handle = start_server(TablePolicy(), faults=Faults())
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def fresh_probes():
    """Forget the constrained-decoding probes of earlier tests (a port may be reused by another server)."""
    from orbit.policies import endpoint

    endpoint._PROBED.clear()
    yield
    endpoint._PROBED.clear()
