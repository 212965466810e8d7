"""Serve any ``Policy`` over the OpenAI chat-completions protocol (standard library only).

``GET /v1/models`` lists the policy's id; ``POST /v1/chat/completions``
(non-streaming) answers with the policy's next turn. Token counts in ``usage``
are the policy's own (for the embedded table policy: whitespace-separated words
of the prompt messages' contents, 1 for the answer). ``messages``, ``tools``,
``tool_choice``, ``response_format`` and ``seed`` of a request are used; without a
seed every request draws a fresh one. A request naming another model gets a 404
with an OpenAI-style error body.

It enforces what real servers enforce (``Rules``; ``LLAMA_CPP`` mimics
llama-cpp-python with ``chatml-function-calling``):

* every assistant message carries ``content`` (llama.cpp's templates answer 500
  ``'dict object' has no attribute 'content'`` otherwise; ``""`` is fine);
* ``tool_choice``: ``none`` hides the tools from the policy, ``auto`` lets it call
  them, ``required`` / a named function demand a (that) call; without ``tool_choice``
  the tools are offered (OpenAI, vLLM) or left out of the prompt (llama.cpp);
  ``tool_choice`` without tools is a 400;
* ``response_format``: ``text``, ``json_object`` (with an optional ``schema``) and
  ``json_schema`` (``{"json_schema": {"schema": ...}}``); a shape the server does not
  take is a 500 (llama.cpp's ``json_schema``). The answer is made to obey the schema,
  as grammar-constrained decoding would: a property with an ``enum`` gets the
  policy's answer when it is one of the values, else a value drawn from the seed.

``Faults`` injects latency and scripted failures (statuses, hangs, garbage,
empty choices, truncated JSON, dropped connections) so client tests run against
real HTTP on 127.0.0.1. The server binds loopback by default and can require a
bearer API key.
"""

import hmac
import json
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orbit.policies.base import Policy, Turn
from orbit.policies.table_policy import TablePolicy

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
STOP_POLL_S = 0.05
FAULT_KINDS = ("429", "500", "503", "hang", "garbage", "empty_choices", "truncated", "drop")


class Faults:
    """Latency on every chat request plus a queue of one-shot faults, consumed one per request.

    Kinds: ``"429"``/``"500"``/``"503"`` (that status, OpenAI error body), ``"hang"``
    (answer only after ``hang_s``), ``"garbage"`` (a non-JSON 200 body),
    ``"empty_choices"``, ``"truncated"`` (a 200 JSON body cut in half) and ``"drop"``
    (close the connection without answering).
    """

    def __init__(self, latency_s: float = 0.0, hang_s: float = 5.0):
        self.latency_s = latency_s
        self.hang_s = hang_s
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()

    def inject(self, *kinds: str) -> None:
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._queue.extend(kinds)

    def next(self) -> str | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None


@dataclass
class ServerStats:
    """Chat requests received and the most ever in flight at once."""

    chat_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enter(self) -> None:
        with self._lock:
            self.chat_requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


@dataclass(frozen=True)
class Rules:
    """Server behaviours that differ between real OpenAI-compatible servers."""

    tools_without_choice: str = "auto"
    """What tools sent without ``tool_choice`` do: ``auto`` (OpenAI, vLLM) or ``ignore`` (llama.cpp)."""
    response_formats: tuple[str, ...] = ("json_schema", "json_object")
    """``response_format`` types accepted besides ``text``; others answer 500."""


OPENAI = Rules()
LLAMA_CPP = Rules(tools_without_choice="ignore", response_formats=("json_object",))
TOOL_CHOICES = ("none", "auto", "required")


class _RequestError(Exception):
    def __init__(self, status: int, text: str, code: str):
        super().__init__(text)
        self.status, self.text, self.code = status, text, code


class _PolicyHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], policy: Policy, faults: Faults, api_key: str | None,
                 rules: Rules = OPENAI):
        super().__init__(address, _Handler)
        self.policy = policy
        self.rules = rules
        self.faults = faults
        self.api_key = api_key
        self.stats = ServerStats()
        self.stopping = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _PolicyHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: one line per request would drown the run's logs."""

    def _authorized(self) -> bool:
        expected = self.server.api_key
        if expected is None:
            return True
        given = self.headers.get("Authorization") or ""
        if hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return True
        self._send_error(401, "invalid API key", "invalid_api_key", kind="authentication_error")
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/models":
            return self._send_error(404, f"no route GET {self.path}", "not_found")
        model = {"id": self.server.policy.id, "object": "model", "created": 0, "owned_by": "orbit"}
        self._send_json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send_error(404, f"no route POST {self.path}", "not_found")
        stats = self.server.stats
        stats.enter()
        try:
            self._chat(body)
        finally:
            stats.leave()

    def _chat(self, body: bytes) -> None:
        server = self.server
        if server.faults.latency_s:
            server.stopping.wait(server.faults.latency_s)
        fault = server.faults.next()
        if fault in ("429", "500", "503"):
            return self._send_error(int(fault), f"injected {fault}", "injected_fault", kind="server_error")
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "hang":
            server.stopping.wait(server.faults.hang_s)
        if fault == "garbage":
            return self._send_bytes(200, b"<html>502 Bad Gateway</html>")
        try:
            request = json.loads(body)
            messages, model = request["messages"], request["model"]
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise TypeError("messages must be a list of objects")
        except (ValueError, KeyError, TypeError):
            return self._send_error(400, "body must be JSON with 'model' and a list of 'messages'",
                                    "invalid_request")
        if model != server.policy.id:
            return self._send_error(404, f"The model `{model}` does not exist; this server serves "
                                         f"`{server.policy.id}`.", "model_not_found", param="model")
        seed = request.get("seed")
        if not isinstance(seed, int):
            seed = random.SystemRandom().randrange(2**31)
        try:
            check_messages(messages)
            tools, choice = offered_tools(request, server.rules)
            schema = requested_schema(request.get("response_format"), server.rules)
        except _RequestError as exc:
            kind = "server_error" if exc.status >= 500 else "invalid_request_error"
            return self._send_error(exc.status, exc.text, exc.code, kind=kind)
        try:
            turn = server.policy.complete(messages, tools, seed=seed)
        except Exception as exc:
            return self._send_error(500, f"the policy failed: {type(exc).__name__}", "policy.exception",
                                    kind="server_error")
        if turn.error:
            return self._send_error(400, f"the policy could not answer: {turn.error}", turn.error)
        try:
            turn = obey(turn, tools, choice, schema, seed)
        except _RequestError as exc:
            return self._send_error(exc.status, exc.text, exc.code, kind="server_error")
        payload = completion_body(model, turn)
        if fault == "empty_choices":
            payload["choices"] = []
        data = json.dumps(payload).encode()
        if fault == "truncated":
            data = data[: len(data) // 2]
        self._send_bytes(200, data)

    def _send_error(self, status: int, text: str, code: str, *, kind: str = "invalid_request_error",
                    param: str | None = None) -> None:
        self._send_json(status, {"error": {"message": text, "type": kind, "param": param, "code": code}})

    def _send_json(self, status: int, payload: dict) -> None:
        self._send_bytes(status, json.dumps(payload).encode())

    def _send_bytes(self, status: int, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def check_messages(messages: list[dict]) -> None:
    """Assistant messages must carry ``content`` (a string, ``""`` on tool-call turns) as llama.cpp's templates read it."""
    for m in messages:
        if m.get("role") == "assistant" and not isinstance(m.get("content"), str):
            raise _RequestError(500, "'dict object' has no attribute 'content'", "template_error")


def offered_tools(request: dict, rules: Rules) -> tuple[list | None, Any]:
    """(tools the policy sees, the effective tool_choice) under the request's ``tool_choice``."""
    tools = request.get("tools") or None
    choice = request.get("tool_choice")
    if choice is None:
        if tools and rules.tools_without_choice == "ignore":
            return None, "none"
        return tools, "auto" if tools else "none"
    if not tools:
        raise _RequestError(400, "tool_choice is only allowed when tools are specified", "invalid_request")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if name not in {(t.get("function") or {}).get("name") for t in tools}:
            raise _RequestError(400, f"tool_choice names no offered function: {json.dumps(choice)}", "invalid_request")
        return tools, choice
    if choice not in TOOL_CHOICES:
        raise _RequestError(400, f"tool_choice must be one of {TOOL_CHOICES} or a function, got {choice!r}",
                            "invalid_request")
    return (None if choice == "none" else tools), choice


def requested_schema(fmt: Any, rules: Rules) -> dict | None:
    """The JSON schema the answer must obey ({} for any JSON object), None for free text."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind not in ("json_object", "json_schema"):
        raise _RequestError(400, f"response_format.type must be text, json_object or json_schema, got {kind!r}",
                            "invalid_request")
    if kind not in rules.response_formats:
        raise _RequestError(500, f"response_format type {kind!r} is not supported by this server", "unsupported")
    schema = fmt.get("schema") if kind == "json_object" else (fmt.get("json_schema") or {}).get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise _RequestError(400, "response_format schema must be an object", "invalid_request")
    return schema or {}


def obey(turn: Turn, tools: list | None, choice: Any, schema: dict | None, seed: int) -> Turn:
    """The turn as a server enforcing ``tool_choice`` and ``response_format`` would return it."""
    calls = turn.message.get("tool_calls") or []
    if calls and not tools:
        calls = []  # tools hidden from the model: it cannot call them
    if choice == "required" and not calls:
        raise _RequestError(500, "tool_choice is 'required' but the model produced no tool call", "tool_choice")
    if isinstance(choice, dict):
        wanted = choice["function"]["name"]
        if not calls or any(c["function"]["name"] != wanted for c in calls):
            raise _RequestError(500, f"tool_choice names {wanted!r} but the model called something else", "tool_choice")
    content = turn.message.get("content")
    if schema is not None and not calls:
        content = json.dumps(conform(content, schema, seed))
    reply = dict(turn.message, content=content, tool_calls=calls or None)
    return Turn(message=reply, prompt_tokens=turn.prompt_tokens, completion_tokens=turn.completion_tokens,
                cost=turn.cost, finish_reason=turn.finish_reason, retries=turn.retries)


def conform(content: str | None, schema: dict, seed: int) -> dict:
    """A JSON object obeying ``schema`` (objects whose properties have an ``enum`` or a type), built from the answer."""
    try:
        given = json.loads(content or "")
    except ValueError:
        given = None
    props = schema.get("properties") or {}
    if not props:
        return given if isinstance(given, dict) else {"answer": content or ""}
    out = {}
    for key, spec in props.items():
        value = given.get(key) if isinstance(given, dict) else (content or "").strip()
        enum = spec.get("enum") if isinstance(spec, dict) else None
        if enum is not None and value not in enum:
            value = random.Random(f"{seed}:{key}").choice(enum)
        out[key] = value
    return out


def completion_body(model: str, turn: Turn) -> dict:
    """An OpenAI ``chat.completion`` object for one turn."""
    reply: dict[str, Any] = {"role": "assistant", "content": turn.message.get("content")}
    if turn.message.get("tool_calls"):
        reply["tool_calls"] = turn.message["tool_calls"]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": reply,
                     "finish_reason": "tool_calls" if reply.get("tool_calls") else (turn.finish_reason or "stop")}],
        "usage": {"prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens,
                  "total_tokens": turn.prompt_tokens + turn.completion_tokens},
    }


class ServerHandle:
    """A running server: ``url`` is its OpenAI base URL (ending in ``/v1``)."""

    def __init__(self, server: _PolicyHTTPServer, thread: threading.Thread):
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}/v1"
        self.policy_uri = f"openai:{self.url}#{server.policy.id}"

    @property
    def stats(self) -> ServerStats:
        return self._server.stats

    @property
    def faults(self) -> Faults:
        return self._server.faults

    def wait(self) -> None:
        """Block until the server stops."""
        self._thread.join()

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_server(policy: Policy, host: str = DEFAULT_HOST, port: int = 0, faults: Faults | None = None,
                 api_key: str | None = None, rules: Rules = OPENAI) -> ServerHandle:
    """Serve ``policy`` from a background thread (``port=0`` picks a free port).

    With ``api_key`` set, requests must carry ``Authorization: Bearer <api_key>``. ``rules`` picks
    the server behaviours that differ between real servers (``OPENAI``, ``LLAMA_CPP``).
    """
    server = _PolicyHTTPServer((host, port), policy, faults or Faults(), api_key, rules)
    thread = threading.Thread(target=server.serve_forever, args=(STOP_POLL_S,), name=f"orbit-policy-server-{port}", daemon=True)
    thread.start()
    return ServerHandle(server, thread)


def serve(checkpoint: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the embedded table policy (uniform without a checkpoint) until interrupted."""
    policy = TablePolicy.load(checkpoint) if checkpoint else TablePolicy()
    handle = start_server(policy, host, port)
    print(f"serving {policy.id} at {handle.url}\npolicy uri: {handle.policy_uri}", flush=True)
    try:
        handle.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
