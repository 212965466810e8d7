"""Helpers for the policy tests: a game prompt, an endpoint on the test server, a loop runner."""

import asyncio

from orbit.policies.endpoint import EndpointPolicy
from orbit.io.schema import message

GAME_PROMPT = """Tic-tac-toe. You play x.
...
.x.
...
Legal actions (answer with one ID):
0 -> x(0,0)
2 -> x(0,2)
4 -> x(1,1)
8 -> x(2,2)
"""
LEGAL = ["0", "2", "4", "8"]


def game_messages(prompt: str = GAME_PROMPT) -> list[dict]:
    return [message("system", "Answer with one action ID."), message("user", prompt)]


def endpoint(handle, **settings) -> EndpointPolicy:
    """An endpoint policy on the test server with quick retries."""
    options = {"timeout_s": 2.0, "backoff_s": 0.001, "max_backoff_s": 0.01} | settings
    return EndpointPolicy(handle.url, "embedded:uniform", **options)


def run(policy, coro):
    """Run a coroutine on a fresh loop and release the policy's client of that loop."""
    async def main():
        try:
            return await coro
        finally:
            await policy.aclose()

    return asyncio.run(main())
