"""Endpoint client throughput against a loopback server with a fixed latency.

The server (the embedded uniform table policy behind ``orbit.policies.server``,
answering every chat request after ``LATENCY_S``) runs in its own process so
the client is not measured against the server's share of the GIL. With
``c`` requests in flight the best possible rate is ``c / latency``; the table
prints the measured rate and its ratio to that bound (goal: >= 90%).

    .venv/bin/python bench/bench_client.py
"""

import asyncio
import multiprocessing
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orbit.policies.endpoint import EndpointPolicy, Request, run_many  # noqa: E402
from orbit.policies.server import Faults, start_server  # noqa: E402
from orbit.policies.table_policy import TablePolicy  # noqa: E402
from orbit.io.schema import message  # noqa: E402

LATENCY_S = 0.05
CONCURRENCY = (16, 32)
SECONDS_PER_LEVEL = 3.0
PROMPT = "Tic-tac-toe, you play x.\n...\n.o.\n...\nLegal actions (answer with one ID):\n0 -> x(0,0)\n4 -> x(1,1)\n"


def _serve(latency_s: float, url_out, stop) -> None:
    handle = start_server(TablePolicy(), faults=Faults(latency_s=latency_s))
    url_out.send(handle.url)
    stop.wait()
    handle.stop()


async def measure(url: str, concurrency: int, count: int) -> tuple[float, int]:
    """Requests per second over ``count`` requests (after one warm-up wave) and the failure count."""
    policy = EndpointPolicy(url, "embedded:uniform", concurrency=concurrency, timeout_s=10.0)
    requests = [Request([message("user", PROMPT)], seed=i) for i in range(count)]
    try:
        await run_many(policy, requests[:concurrency], concurrency)
        _, stats = await run_many(policy, requests, concurrency)
    finally:
        await policy.aclose()
    return stats.requests_per_s, stats.failures


def main() -> None:
    ctx = multiprocessing.get_context("spawn")
    url_in, url_out = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(LATENCY_S, url_out, stop), daemon=True)
    server.start()
    try:
        url = url_in.recv()
        print(f"client throughput, server latency {LATENCY_S * 1000:.0f} ms, server in its own process\n")
        print(f"{'concurrency':>11}{'requests':>10}{'failures':>10}{'req/s':>10}{'bound':>10}{'ratio':>8}")
        for concurrency in CONCURRENCY:
            bound = concurrency / LATENCY_S
            count = int(bound * SECONDS_PER_LEVEL)
            rate, failures = asyncio.run(measure(url, concurrency, count))
            print(f"{concurrency:>11}{count:>10}{failures:>10}{rate:>10.1f}{bound:>10.1f}{rate / bound:>8.1%}")
    finally:
        stop.set()
        server.join(timeout=5)


if __name__ == "__main__":
    main()
