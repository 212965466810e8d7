"""Endpoint slots cap the requests in flight to one endpoint across processes."""

import multiprocessing as mp
import time

import pytest

from orbit.policies.slots import EndpointSlots


def _worker(root, limit, log_path, hold_s):
    slots = EndpointSlots("http://127.0.0.1:8080/v1", limit, root)
    with slots.slot():
        start = time.monotonic()
        time.sleep(hold_s)
        end = time.monotonic()
    with open(log_path, "a") as fh:
        fh.write(f"{start} {end}\n")


@pytest.mark.parametrize("limit", [1, 2])
def test_at_most_limit_holders_at_once_across_processes(tmp_path, limit):
    log = tmp_path / "log.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "slots"), limit, str(log), 0.3)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    spans = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(spans) == 4
    # at every holder's start, at most `limit` holders (itself included) were inside
    for start, _ in spans:
        inside = sum(1 for s, e in spans if s <= start < e)
        assert inside <= limit


def test_other_endpoints_do_not_share_slots(tmp_path):
    a = EndpointSlots("http://127.0.0.1:1/v1", 1, tmp_path)
    b = EndpointSlots("http://127.0.0.1:2/v1", 1, tmp_path)
    with a.slot(), b.slot(timeout_s=1):
        with pytest.raises(TimeoutError):
            with a.slot(timeout_s=0.2):
                pass
