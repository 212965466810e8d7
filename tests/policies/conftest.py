"""Shared fixture: a real loopback server in front of the embedded uniform table policy."""

import pytest

from orbit.policies.server import Faults, start_server
from orbit.policies.table_policy import TablePolicy


@pytest.fixture
def server():
    handle = start_server(TablePolicy(), faults=Faults())
    yield handle
    handle.stop()
