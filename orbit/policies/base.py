"""The one policy interface: given a conversation, return the next assistant turn.

A policy is anything with an ``id`` (the model id written to records' ``policy``
column) that turns a list of OpenAI chat messages (plus optional OpenAI function
schemas) into the next assistant message. Failures of a single request are not
exceptions: they come back as a ``Turn`` whose ``error`` is a named reason
(``endpoint.timeout``, ``policy.no_legal_actions``...), so the sample is recorded
as failed and the run goes on. Only ``check()`` raises, with ``PolicyUnavailable``,
before any partition is written.
"""

import inspect
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from orbit.io.schema import message

Messages = Sequence[Mapping[str, Any]]
Tools = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Decoding:
    """What the env asks of one request, beyond the messages.

    ``max_tokens``: the env's answer budget (an endpoint sends the smaller of it and its own cap).
    ``choices``: the legal answers (game move IDs); an endpoint with constrained decoding sends a
    JSON schema ``{"<choice_key>": <one of choices>}`` as ``response_format``, others ignore it.
    ``grammar``: a GBNF grammar the whole reply must match (e.g. ``<answer>`` and an integer); an endpoint
    whose constrained decoding is llama-cpp-python's (``json_object``) sends it as ``grammar``, others
    ignore it. The verifier never relies on it: it grades the reply as written.
    """

    max_tokens: int | None = None
    choices: tuple[str, ...] | None = None
    choice_key: str = "move"
    grammar: str | None = None

    def to_json(self) -> dict:
        out = {"max_tokens": self.max_tokens, "choices": list(self.choices) if self.choices else None,
               "choice_key": self.choice_key}
        if self.grammar is not None:  # only when set: the cache keys of requests without one are unchanged
            out["grammar"] = self.grammar
        return out


_ACCEPTS_DECODING: dict = {}  # acomplete's function -> whether it takes ``decoding`` (asked once per request)


def accepts_decoding(policy: Any) -> bool:
    """Does ``policy.acomplete`` take the ``decoding`` keyword (policies written before it do not)? Remembered
    per function: reading a signature cost about 0.1 ms, once per sampled turn."""
    method = getattr(policy, "acomplete", None)
    function = getattr(method, "__func__", method)
    try:
        return _ACCEPTS_DECODING[function]
    except (KeyError, TypeError):  # not seen yet, or not hashable (then never remembered)
        pass
    try:
        answer = "decoding" in inspect.signature(method).parameters
    except (TypeError, ValueError, AttributeError):
        answer = False
    try:
        _ACCEPTS_DECODING[function] = answer
    except TypeError:
        pass
    return answer


class PolicyUnavailable(RuntimeError):
    """The policy cannot serve at all: endpoint unreachable, model not served, checkpoint unreadable."""


@dataclass
class Turn:
    """One assistant turn and what it cost.

    ``message`` has the record's message shape (role, content, tool_calls,
    tool_call_id, name). When ``error`` is set the turn failed with that named
    reason (``reason`` or ``reason:detail``) and ``message`` has no content.
    """

    message: dict
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    error: str | None = None
    finish_reason: str | None = None
    retries: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, reason: str, *, retries: int = 0) -> "Turn":
        return cls(message=message("assistant", None), error=reason, retries=retries)


@runtime_checkable
class Policy(Protocol):
    id: str

    async def acomplete(self, messages: Messages, tools: Tools | None = None, *, seed: int,
                        decoding: Decoding | None = None) -> Turn:
        """The next assistant turn; never raises for a failed request (see ``Turn.error``).

        ``decoding`` is optional for implementers: callers pass it only to policies that accept it."""

    def complete(self, messages: Messages, tools: Tools | None = None, *, seed: int) -> Turn:
        """Synchronous ``acomplete`` for callers without an event loop."""

    def check(self) -> None:
        """Raise ``PolicyUnavailable`` with a readable cause if the policy cannot serve."""

    async def aclose(self) -> None:
        """Release resources opened from the running event loop (the policy stays usable)."""

    def close(self) -> None:
        """Release resources; call from synchronous code once done."""
