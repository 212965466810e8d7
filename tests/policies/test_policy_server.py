"""The OpenAI-protocol server: response shapes, errors, and tool calls end to end."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from orbit.policies.base import Turn
from orbit.policies.endpoint import EndpointPolicy
from orbit.policies.server import start_server
from orbit.io.schema import message, tool_call

from policy_fixtures import game_messages


def http(url: str, payload: dict | None = None) -> tuple[int, dict]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class ToolCallingPolicy:
    """Calls the first offered tool with the last user message as its argument."""

    id = "tool-caller"

    def complete(self, messages, tools=None, *, seed):
        name = tools[0]["function"]["name"]
        call = tool_call(f"call_{seed}", name, {"query": messages[-1]["content"]})
        return Turn(message=message("assistant", None, tool_calls=[call]), prompt_tokens=3, completion_tokens=2)

    async def acomplete(self, messages, tools=None, *, seed):
        return self.complete(messages, tools, seed=seed)

    def check(self): ...
    async def aclose(self): ...
    def close(self): ...


def test_models_and_completion_shape(server):
    status, models = http(f"{server.url}/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["embedded:uniform"]
    status, body = http(f"{server.url}/chat/completions",
                        {"model": "embedded:uniform", "messages": game_messages(), "seed": 3})
    assert status == 200 and body["object"] == "chat.completion" and body["model"] == "embedded:uniform"
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] and usage["completion_tokens"] == 1


@pytest.mark.parametrize(("path", "payload", "status", "code"), [
    ("/chat/completions", {"model": "gpt-x", "messages": []}, 404, "model_not_found"),
    ("/chat/completions", {"model": "embedded:uniform", "messages": "hi"}, 400, "invalid_request"),
    ("/completions", {"model": "embedded:uniform", "prompt": "hi"}, 404, "not_found"),
])
def test_errors_have_openai_bodies(server, path, payload, status, code):
    got, body = http(f"{server.url}{path}", payload)
    assert got == status and body["error"]["code"] == code and body["error"]["message"]


def test_tool_calls_round_trip_through_the_endpoint():
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    with start_server(ToolCallingPolicy()) as handle:
        turn = EndpointPolicy(handle.url, "tool-caller").complete([message("user", "weather in Oslo")], tools, seed=5)
    assert turn.ok and turn.finish_reason == "tool_calls" and turn.message["content"] is None
    assert turn.message["tool_calls"] == [tool_call("call_5", "search", {"query": "weather in Oslo"})]


def test_close_releases_clients_of_open_loops(server):
    policy = EndpointPolicy(server.url, "embedded:uniform")
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(policy.acomplete(game_messages(), seed=0)).ok
        policy.close()
        assert loop.run_until_complete(policy.acomplete(game_messages(), seed=1)).ok
        policy.close()
    finally:
        loop.close()
