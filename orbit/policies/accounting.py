"""What a partition's policy sampling spent: requests, tokens, seconds, throughput and cost.

``requests`` are the calls the policy answered in this run; calls answered from the request
cache are counted apart (``cached``) and add no tokens, seconds or cost. ``tokens_per_s`` is
completion tokens per second of wall time. ``cost`` is None unless the policy priced a request
(set prices with ``prompt_price_per_mtok`` / ``completion_price_per_mtok``).
"""

from dataclasses import dataclass

from orbit.policies.base import Turn


def call_usage(turn: Turn) -> dict:
    """The ``metadata.usage`` of a record made from one policy call (summed by the yield stage)."""
    return {"prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens, "calls": 1,
            "cost": turn.cost}


@dataclass
class Accounting:
    requests: int = 0
    cached: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    seconds: float = 0.0

    def add(self, turn: Turn, *, cached: bool = False) -> None:
        if cached:
            self.cached += 1
            return
        self.requests += 1
        self.failures += not turn.ok
        self.prompt_tokens += turn.prompt_tokens
        self.completion_tokens += turn.completion_tokens
        if turn.cost is not None:
            self.cost = (self.cost or 0.0) + turn.cost

    @property
    def requests_per_s(self) -> float | None:
        return self.requests / self.seconds if self.seconds > 0 else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.completion_tokens / self.seconds if self.seconds > 0 else None

    def to_json(self) -> dict:
        return {"requests": self.requests, "cached": self.cached, "failures": self.failures,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "seconds": round(self.seconds, 3), "requests_per_s": _round(self.requests_per_s),
                "tokens_per_s": _round(self.tokens_per_s), "cost": self.cost}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
