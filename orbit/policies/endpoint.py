"""OpenAI-compatible chat endpoints (vLLM, SGLang, Ollama, llama.cpp server...) as a ``Policy``.

Requests go through the official ``openai`` ``AsyncOpenAI`` client, with its own
retries switched off. The client's generic ``post`` is used: it keeps the
client's auth, timeouts and HTTP-error mapping but skips the typed ``create``'s
parameter transform (a quarter of the client's CPU per request); the body is
classified here anyway. A server's error keeps its message in the reason
(``endpoint.http_500: <first 200 chars>``; never for 401/403, whose messages may
echo part of a key).

What real servers need (llama-cpp-python, vLLM, SGLang, Ollama, OpenAI):

* Tool calls: ``tool_choice`` (default ``"auto"``) is sent with the tools (llama-cpp-python's
  ``chatml-function-calling`` leaves the tools out of the prompt without it), and assistant
  tool-call turns always carry ``content`` (``""`` when the model said nothing).
* Constrained decoding (``constrained``): when the env gives the legal answers
  (``Decoding.choices``) the request carries a ``response_format`` whose JSON schema is
  ``{"move": <one of the legal IDs>}``. ``json_schema`` is the OpenAI / vLLM / SGLang / Ollama
  shape (``{"type": "json_schema", "json_schema": {"name", "strict", "schema"}}``);
  ``json_object`` is llama-cpp-python's (``{"type": "json_object", "schema": ...}``; its
  ``json_schema`` answers 500). ``auto`` (the default) probes the server once per process (in ``check()`` or
  before the first constrained request): a one-answer schema is sent in each shape and the
  first whose reply obeys it is used; if none does, requests go unconstrained (``off``).
  A ``Decoding.grammar`` (GBNF, e.g. a reasoning-gym env's ``answer_grammar``) is sent as ``grammar``
  to llama-cpp-python (mode ``json_object``) only; other servers get the request without it.
* ``slots_dir``: with it, ``concurrency`` holds across processes too (``EndpointSlots``: lock
  files per base URL), so partitions sampled by parallel runs share the endpoint's limit.
* ``check()`` waits for a busy server: ``GET /models`` gets ``check_timeout_s`` per try and
  ``check_retries`` more tries on timeouts, connection errors and 5xx. This module retries 429, 5xx, connection errors and
timeouts itself, with exponential backoff and a jitter derived from the request
seed, so every retry is counted (``Turn.retries``). Bodies that are not a chat
completion (garbage, empty choices, truncated JSON) come back as a ``Turn`` with
a named ``error``. The API key is read from the environment variable named by
``api_key_env`` each time a client is built and is never stored on the policy,
printed or put in an error.

Async clients are bound to the event loop that created them: there is one
client (and one concurrency semaphore) per running loop. Async callers should
``await policy.aclose()`` before their loop ends.
"""

import asyncio
import contextlib
import json
import os
import random
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import openai

from orbit.policies.base import Decoding, Messages, Policy, PolicyUnavailable, Tools, Turn, accepts_decoding
from orbit.policies.bounded import map_bounded
from orbit.policies.slots import EndpointSlots
from orbit.io.schema import message, tool_call

DEFAULT_API_KEY_ENV = "ORBIT_API_KEY"
PLACEHOLDER_API_KEY = "EMPTY"
CONSTRAINED_MODES = ("auto", "json_schema", "json_object", "off")
PROBE_ORDER = ("json_schema", "json_object")
GRAMMAR_MODE = "json_object"  # llama-cpp-python: the one server shape known to take a GBNF ``grammar`` field
PROBE_CHOICE = "0"
PROBE_PROMPT = "Pick the action.\nLegal actions (answer with one ID):\n0 -> ok"
_PROBED: dict[tuple[str, str], str] = {}  # (base_url, model) -> mode, probed once per process
ERROR_MESSAGE_CHARS = 200
SECRET_STATUSES = (401, 403)
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ERROR_CODE_RE = re.compile(r"^[a-z0-9_.]{1,64}$")
JSON_LITERALS = ("true", "false", "null")


@dataclass
class _LoopClient:
    client: openai.AsyncOpenAI
    limit: asyncio.Semaphore


class EndpointPolicy:
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint; ``id`` is the model name."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str = DEFAULT_API_KEY_ENV,
                 temperature: float = 1.0, top_p: float = 1.0, max_tokens: int = 1024,
                 concurrency: int = 16, timeout_s: float = 120.0, max_retries: int = 4,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 prompt_price_per_mtok: float | None = None, completion_price_per_mtok: float | None = None,
                 constrained: str = "auto", tool_choice: str | None = "auto",
                 check_timeout_s: float = 30.0, check_retries: int = 4, check_backoff_s: float = 2.0,
                 slots_dir: str | None = None):
        if not ENV_NAME_RE.match(api_key_env or ""):
            raise ValueError("api_key_env must be the NAME of an environment variable "
                             "(letters, digits and '_'), not the key itself")
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise ValueError("concurrency must be >= 1, max_retries >= 0 and timeout_s > 0")
        if constrained not in CONSTRAINED_MODES:
            raise ValueError(f"constrained must be one of {', '.join(CONSTRAINED_MODES)}, got {constrained!r}")
        if tool_choice not in (None, "", "auto", "required", "none"):
            raise ValueError(f"tool_choice must be 'auto', 'required', 'none' or unset, got {tool_choice!r}")
        if check_timeout_s <= 0 or check_retries < 0:
            raise ValueError("check_timeout_s must be > 0 and check_retries >= 0")
        if (prompt_price_per_mtok is None) != (completion_price_per_mtok is None):
            raise ValueError("set both prompt_price_per_mtok and completion_price_per_mtok, or neither")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.id = model
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.prompt_price_per_mtok = prompt_price_per_mtok
        self.completion_price_per_mtok = completion_price_per_mtok
        self.constrained = constrained
        self.tool_choice = tool_choice or None
        self.check_timeout_s = check_timeout_s
        self.check_retries = check_retries
        self.check_backoff_s = check_backoff_s
        self.slots = EndpointSlots(slots_dir, self.base_url, concurrency) if slots_dir else None
        self._mode: str | None = None if constrained == "auto" else constrained
        self._mode_lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary())

    def __repr__(self) -> str:
        return (f"EndpointPolicy(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})")

    def _api_key(self) -> str:
        return os.environ.get(self.api_key_env) or PLACEHOLDER_API_KEY

    def _loop_client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        current = self._clients.get(loop)
        if current is None:
            client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key(),
                                        timeout=self.timeout_s, max_retries=0)
            current = self._clients[loop] = _LoopClient(client, asyncio.Semaphore(self.concurrency))
        return current

    # -- requests ---------------------------------------------------------------------------------

    async def acomplete(self, messages: Messages, tools: Tools | None = None, *, seed: int,
                        decoding: Decoding | None = None) -> Turn:
        loop_client = self._loop_client()
        await self._aresolve(decoding)
        request = self._request(messages, tools, seed, decoding)
        for attempt in range(self.max_retries + 1):
            async with loop_client.limit, (self.slots.slot() if self.slots else _nothing()):
                outcome = await self._attempt(loop_client.client, request)
            if isinstance(outcome, Turn):
                outcome.retries = attempt
                return outcome
            if attempt < self.max_retries:
                await asyncio.sleep(self.backoff(seed, attempt))
        return Turn.failed(outcome, retries=self.max_retries)

    def complete(self, messages: Messages, tools: Tools | None = None, *, seed: int,
                 decoding: Decoding | None = None) -> Turn:
        async def once() -> Turn:
            try:
                return await self.acomplete(messages, tools, seed=seed, decoding=decoding)
            finally:
                await self.aclose()

        return asyncio.run(once())

    def backoff(self, seed: int, attempt: int) -> float:
        """Seconds to wait before retry ``attempt + 1``: exponential, half of it jittered from the seed."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
        return ceiling * (0.5 + 0.5 * random.Random(f"{seed}:{attempt}").random())

    def _request(self, messages: Messages, tools: Tools | None, seed: int,
                 decoding: Decoding | None = None) -> dict[str, Any]:
        max_tokens = self.max_tokens
        if decoding is not None and decoding.max_tokens:
            max_tokens = min(max_tokens, decoding.max_tokens)
        request = {"model": self.model, "messages": [_wire_message(m) for m in messages],
                   "temperature": self.temperature, "top_p": self.top_p, "max_tokens": max_tokens,
                   "seed": seed}
        if tools:
            request["tools"] = list(tools)
            if self.tool_choice:
                request["tool_choice"] = self.tool_choice
        if decoding is not None and decoding.choices and self._mode in PROBE_ORDER:
            request["response_format"] = response_format(self._mode, decoding.choice_key, decoding.choices)
        elif decoding is not None and decoding.grammar and self._mode == GRAMMAR_MODE:
            request["grammar"] = decoding.grammar  # llama-cpp-python's GBNF field
        return request

    async def arequest_identity(self, messages: Messages, tools: Tools | None, seed: int,
                                decoding: Decoding | None = None) -> dict[str, Any]:
        """Everything that changes the answer (for cache keys): base URL plus the request body as sent."""
        await self._aresolve(decoding)
        return {"base_url": self.base_url, **self._request(messages, tools, seed, decoding)}

    # -- constrained decoding ---------------------------------------------------------------------

    @property
    def constrained_mode(self) -> str | None:
        """The ``response_format`` shape in use (``json_schema``, ``json_object``, ``off``); None until probed."""
        return self._mode

    async def _aresolve(self, decoding: Decoding | None) -> None:
        if self._mode is None and decoding is not None and (decoding.choices or decoding.grammar):
            await asyncio.to_thread(self.resolve_constrained)

    def resolve_constrained(self) -> str:
        """Probe the server once (``constrained="auto"``) for the ``response_format`` shape it obeys."""
        with self._mode_lock:
            if self._mode is None:
                key = (self.base_url, self.model)
                if key not in _PROBED:
                    _PROBED[key] = next((m for m in PROBE_ORDER if self._probe(m)), "off")
                self._mode = _PROBED[key]
            return self._mode

    def _probe(self, mode: str) -> bool:
        body = {"model": self.model, "messages": [{"role": "user", "content": PROBE_PROMPT}],
                "temperature": 0.0, "max_tokens": 24, "seed": 0,
                "response_format": response_format(mode, "answer", (PROBE_CHOICE,))}
        with openai.OpenAI(base_url=self.base_url, api_key=self._api_key(), max_retries=0,
                           timeout=self.timeout_s) as client:
            for attempt in range(self.check_retries + 1):
                try:
                    text = client.post("/chat/completions", body=body, cast_to=str)
                    break
                except (openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError) as exc:
                    if isinstance(exc, openai.InternalServerError) or attempt == self.check_retries:
                        return False  # a 500 is llama-cpp-python refusing the shape; busy: give up after retries
                    time.sleep(self.check_backoff_s)
                except openai.APIStatusError:
                    return False
        turn = self._turn_from_body(text)
        return turn.ok and parse_choice(turn.message.get("content"), "answer") == PROBE_CHOICE

    async def _attempt(self, client: openai.AsyncOpenAI, request: dict[str, Any]) -> Turn | str:
        """A final ``Turn`` (success or non-retryable failure) or the reason of a retryable failure."""
        try:
            text = await client.post("/chat/completions", body=request, cast_to=str)
        except openai.APITimeoutError:
            return "endpoint.timeout"
        except openai.APIConnectionError:
            return "endpoint.connection_error"
        except openai.APIStatusError as exc:
            reason = f"endpoint.http_{exc.status_code}"
            code = exc.code if isinstance(exc.code, str) and ERROR_CODE_RE.match(exc.code) else None
            if code and exc.status_code < 500:
                reason = f"{reason}:{code}"
            detail = server_message(exc)
            if detail:
                reason = f"{reason}: {detail}"
            if exc.status_code == 429 or exc.status_code >= 500:
                return reason
            return Turn.failed(reason)
        return self._turn_from_body(text)

    def _turn_from_body(self, text: str) -> Turn:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            return Turn.failed("endpoint.truncated_json" if _is_truncated(text, exc) else "endpoint.garbage_body")
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            return Turn.failed("endpoint.malformed_body")
        if not body["choices"]:
            return Turn.failed("endpoint.empty_choices")
        choice = body["choices"][0]
        reply = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(reply, dict) or not isinstance(reply.get("content"), (str, type(None))):
            return Turn.failed("endpoint.malformed_body")
        try:
            calls = [tool_call(c.get("id") or f"call_{i}", c["function"]["name"], c["function"]["arguments"])
                     for i, c in enumerate(reply.get("tool_calls") or [])]
        except (AttributeError, KeyError, TypeError):
            return Turn.failed("endpoint.malformed_tool_calls")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        prompt_tokens = _count(usage.get("prompt_tokens"))
        completion_tokens = _count(usage.get("completion_tokens"))
        return Turn(message=message("assistant", reply.get("content"), tool_calls=calls or None),
                    prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                    cost=self.cost(prompt_tokens, completion_tokens), finish_reason=choice.get("finish_reason"))

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.prompt_price_per_mtok is None:
            return None
        return (prompt_tokens * self.prompt_price_per_mtok
                + completion_tokens * self.completion_price_per_mtok) / 1_000_000

    # -- availability and lifetime ----------------------------------------------------------------

    def check(self) -> None:
        """Raise ``PolicyUnavailable`` unless ``GET /models`` answers and lists ``model``; then probe
        the constrained-decoding shape (``constrained="auto"``).

        A busy server (llama.cpp answers only between generations) gets ``check_timeout_s`` per try
        and ``check_retries`` more tries, ``check_backoff_s`` apart, on timeouts, connection errors and 5xx.
        """
        where = f"the endpoint at {self.base_url}"
        with openai.OpenAI(base_url=self.base_url, api_key=self._api_key(), max_retries=0,
                           timeout=self.check_timeout_s) as client:
            for attempt in range(self.check_retries + 1):
                try:
                    served = [m.id for m in client.models.list()]
                    break
                except (openai.APIConnectionError, openai.InternalServerError) as exc:
                    if attempt < self.check_retries:
                        time.sleep(self.check_backoff_s)
                        continue
                    what = "timed out" if isinstance(exc, openai.APITimeoutError) else "failed"
                    cause = f"HTTP {exc.status_code}" if isinstance(exc, openai.APIStatusError) else (exc.__cause__ or exc)
                    raise PolicyUnavailable(f"cannot reach {where}: GET /models {what} {self.check_retries + 1} "
                                            f"times (timeout {self.check_timeout_s:g}s): {cause}") from exc
                except openai.AuthenticationError as exc:
                    raise PolicyUnavailable(f"{where} rejected the API key read from ${self.api_key_env} "
                                            f"(HTTP {exc.status_code})") from exc
                except openai.APIStatusError as exc:
                    raise PolicyUnavailable(f"{where} answered GET /models with HTTP {exc.status_code}; "
                                            "is it an OpenAI-compatible server?") from exc
                except Exception as exc:
                    raise PolicyUnavailable(f"{where} answered GET /models with an unreadable body "
                                            f"({type(exc).__name__})") from exc
        if self.model not in served:
            raise PolicyUnavailable(f"model {self.model!r} is not served by {where}; "
                                    f"it serves: {', '.join(map(repr, served)) or 'nothing'}")
        self.resolve_constrained()

    async def aclose(self) -> None:
        current = self._clients.pop(asyncio.get_running_loop(), None)
        if current is not None:
            await current.client.close()

    def close(self) -> None:
        """Close the clients of event loops that are still open; forget those of finished loops."""
        for loop, current in list(self._clients.items()):
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(current.client.close())
        self._clients.clear()


@contextlib.asynccontextmanager
async def _nothing():
    yield


def _wire_message(m: Mapping[str, Any]) -> dict[str, Any]:
    """A record-shaped message without its unset keys, as OpenAI-compatible servers expect.

    An assistant turn always carries ``content`` (``""`` on a tool-call turn without text): llama.cpp's
    chat templates read it and answer 500 when it is missing."""
    wire = {k: v for k, v in m.items() if v is not None and not (k == "tool_calls" and not v)}
    if wire.get("role") == "assistant" and wire.get("content") is None:
        wire["content"] = ""
    return wire


def choice_schema(key: str, choices: Sequence[str]) -> dict[str, Any]:
    """JSON schema of ``{"<key>": <one of choices>}``."""
    return {"type": "object", "properties": {key: {"type": "string", "enum": list(choices)}},
            "required": [key], "additionalProperties": False}


def response_format(mode: str, key: str, choices: Sequence[str]) -> dict[str, Any]:
    """The ``response_format`` constraining the answer to ``{"<key>": <one of choices>}`` in a server's shape."""
    schema = choice_schema(key, choices)
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": key, "strict": True, "schema": schema}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    raise ValueError(f"no response_format for mode {mode!r}")


def parse_choice(content: str | None, key: str) -> str | None:
    """The value of ``key`` in a JSON-object answer (a string, or an integer as its decimal string)."""
    try:
        value = json.loads(content or "")
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != {key}:
        return None
    got = value[key]
    if isinstance(got, bool):
        return None
    return str(got) if isinstance(got, (str, int)) else None


def server_message(exc: "openai.APIStatusError") -> str:
    """The first 200 characters of a server's error message (one line, printable); never for 401/403."""
    if exc.status_code in SECRET_STATUSES:
        return ""
    body = exc.body
    if isinstance(body, dict):
        text = body.get("message") if isinstance(body.get("message"), str) else json.dumps(body, sort_keys=True)
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = exc.response.text
        except Exception:
            text = ""
    text = " ".join("".join(c if c.isprintable() else " " for c in (text or "")).split())
    return text[:ERROR_MESSAGE_CHARS]


def _is_truncated(text: str, exc: json.JSONDecodeError) -> bool:
    """Did the body fail to parse only because it ended early (a prefix of a JSON document)?"""
    if not text.lstrip().startswith(("{", "[")):
        return False
    rest = text[exc.pos:].rstrip()
    return (not rest or exc.msg.startswith("Unterminated string")
            or any(word.startswith(rest) for word in JSON_LITERALS))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


# -- many requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    messages: Messages
    seed: int
    tools: Tools | None = None
    decoding: Decoding | None = None


@dataclass
class RunStats:
    requests: int = 0
    retries: int = 0
    failures: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    seconds: float = 0.0

    @classmethod
    def of(cls, turns: Iterable[Turn], seconds: float) -> "RunStats":
        stats = cls(seconds=seconds)
        for turn in turns:
            stats.requests += 1
            stats.retries += turn.retries
            stats.prompt_tokens += turn.prompt_tokens
            stats.completion_tokens += turn.completion_tokens
            if turn.cost is not None:
                stats.cost = (stats.cost or 0.0) + turn.cost
            if turn.error:
                stats.failures += 1
                reason = turn.error.split(":", 1)[0]
                stats.failure_reasons[reason] = stats.failure_reasons.get(reason, 0) + 1
        return stats

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


async def run_many(policy: Policy, requests: Sequence[Request], concurrency: int = 16) -> tuple[list[Turn], RunStats]:
    """Run every request with at most ``concurrency`` in flight; turns come back in input order."""
    async def one(r: Request) -> Turn:
        if r.decoding is not None and accepts_decoding(policy):
            return await policy.acomplete(r.messages, r.tools, seed=r.seed, decoding=r.decoding)
        return await policy.acomplete(r.messages, r.tools, seed=r.seed)

    start = time.perf_counter()
    turns = await map_bounded(one, requests, concurrency)
    return turns, RunStats.of(turns, time.perf_counter() - start)
