"""What real servers enforce, on the loopback server, and how the endpoint policy meets it."""

import socket
import threading
import time

import pytest

from orbit.policies.base import Decoding, PolicyUnavailable, Turn
from orbit.policies.endpoint import EndpointPolicy, response_format
from orbit.policies.server import LLAMA_CPP, OPENAI, start_server
from orbit.policies.table_policy import TablePolicy
from orbit.io.schema import message, tool_call

from policy_fixtures import LEGAL, endpoint, game_messages
from test_policy_server import http

TOOLS = [{"type": "function", "function": {"name": "goto", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "stop", "parameters": {"type": "object"}}}]


class CallsFirstTool:
    """Calls the first tool it is shown; answers in prose when it is shown none. Remembers what it saw."""

    id = "caller"

    def __init__(self):
        self.seen_tools = []

    def complete(self, messages, tools=None, *, seed):
        self.seen_tools.append([t["function"]["name"] for t in tools or []])
        if not tools:
            return Turn(message=message("assistant", "no tools here"), prompt_tokens=1, completion_tokens=3)
        call = tool_call(f"call_{seed}", tools[0]["function"]["name"], {"url": "http://a.test/"})
        return Turn(message=message("assistant", None, tool_calls=[call]), prompt_tokens=1, completion_tokens=2)

    async def acomplete(self, messages, tools=None, *, seed):
        return self.complete(messages, tools, seed=seed)

    def check(self): ...
    async def aclose(self): ...
    def close(self): ...


def chat(handle, **body):
    return http(f"{handle.url}/chat/completions", {"model": handle.policy_uri.split("#")[1], "seed": 1, **body})


# -- content on tool-call turns -------------------------------------------------------------------

def test_assistant_turn_without_content_is_a_500_with_the_servers_message():
    call = tool_call("c1", "goto", {"url": "http://a.test/"})
    history = [message("user", "go"), {"role": "assistant", "tool_calls": [call]},
               message("tool", "page", tool_call_id="c1", name="goto")]
    with start_server(CallsFirstTool(), rules=LLAMA_CPP) as handle:
        status, body = chat(handle, messages=history, tools=TOOLS, tool_choice="auto")
        assert status == 500 and body["error"]["message"] == "'dict object' has no attribute 'content'"
        status, _ = chat(handle, messages=[*history[:1], {**history[1], "content": ""}, history[2]],
                         tools=TOOLS, tool_choice="auto")
        assert status == 200


def test_the_endpoint_sends_empty_content_on_tool_call_turns_and_keeps_server_errors():
    with start_server(CallsFirstTool(), rules=LLAMA_CPP) as handle:
        policy = EndpointPolicy(handle.url, "caller", backoff_s=0.001, max_retries=1)
        first = policy.complete([message("user", "go")], TOOLS, seed=1)
        assert first.ok and first.message["content"] is None and first.message["tool_calls"]
        history = [message("user", "go"), first.message,
                   message("tool", "page", tool_call_id=first.message["tool_calls"][0]["id"], name="goto")]
        assert policy.complete(history, TOOLS, seed=2).ok
        handle.faults.inject("500", "500")
        failed = policy.complete(history, TOOLS, seed=3)
    assert failed.error == "endpoint.http_500: injected 500" and failed.retries == 1


# -- tool_choice ----------------------------------------------------------------------------------

def test_tool_choice_semantics():
    policy = CallsFirstTool()
    with start_server(policy, rules=LLAMA_CPP) as handle:
        status, body = chat(handle, messages=[message("user", "go")], tools=TOOLS)
        assert status == 200 and body["choices"][0]["message"]["content"] == "no tools here"  # llama.cpp: ignored
        status, body = chat(handle, messages=[message("user", "go")], tools=TOOLS, tool_choice="auto")
        assert body["choices"][0]["finish_reason"] == "tool_calls"
        status, body = chat(handle, messages=[message("user", "go")], tools=TOOLS, tool_choice="none")
        assert status == 200 and "tool_calls" not in body["choices"][0]["message"]
        status, body = chat(handle, messages=[message("user", "go")], tools=TOOLS,
                            tool_choice={"type": "function", "function": {"name": "stop"}})
        assert status == 500 and "names 'stop'" in body["error"]["message"]
        status, body = chat(handle, messages=[message("user", "go")], tool_choice="auto")
        assert status == 400 and "only allowed when tools" in body["error"]["message"]
        status, body = chat(handle, messages=[message("user", "go")], tools=TOOLS, tool_choice="sometimes")
        assert status == 400
    assert policy.seen_tools[:3] == [[], ["goto", "stop"], []]
    with start_server(CallsFirstTool(), rules=OPENAI) as handle:
        status, body = chat(handle, messages=[message("user", "go")], tools=TOOLS)
        assert body["choices"][0]["finish_reason"] == "tool_calls"  # OpenAI / vLLM: absent means auto


def test_the_endpoint_sends_tool_choice_auto_by_default_and_unset_on_request():
    with start_server(CallsFirstTool(), rules=LLAMA_CPP) as handle:
        assert EndpointPolicy(handle.url, "caller").complete([message("user", "go")], TOOLS, seed=1).message["tool_calls"]
        bare = EndpointPolicy(handle.url, "caller", tool_choice=None).complete([message("user", "go")], TOOLS, seed=1)
        assert bare.message["content"] == "no tools here" and not bare.message["tool_calls"]


# -- response_format and constrained decoding -----------------------------------------------------

def test_response_format_shapes_per_server():
    schema_fmt = response_format("json_schema", "move", LEGAL)
    object_fmt = response_format("json_object", "move", LEGAL)
    with start_server(TablePolicy(), rules=LLAMA_CPP) as handle:
        status, body = chat(handle, messages=game_messages(), response_format=schema_fmt)
        assert status == 500 and "not supported" in body["error"]["message"]
        status, body = chat(handle, messages=game_messages(), response_format=object_fmt)
        assert status == 200 and body["choices"][0]["message"]["content"].startswith('{"move": "')
        status, _ = chat(handle, messages=game_messages(), response_format={"type": "xml"})
        assert status == 400
    with start_server(TablePolicy(), rules=OPENAI) as handle:
        status, body = chat(handle, messages=game_messages(), response_format=schema_fmt)
        assert status == 200 and body["choices"][0]["message"]["content"].startswith('{"move": "')


@pytest.mark.parametrize(("rules", "mode"), [(OPENAI, "json_schema"), (LLAMA_CPP, "json_object")])
def test_auto_probes_the_shape_the_server_obeys(rules, mode):
    decoding = Decoding(max_tokens=8, choices=tuple(LEGAL))
    with start_server(TablePolicy(), rules=rules) as handle:
        policy = endpoint(handle)
        assert policy.constrained_mode is None
        policy.check()
        assert policy.constrained_mode == mode
        turn = policy.complete(game_messages(), seed=3, decoding=decoding)
        forced = endpoint(handle, constrained="off").complete(game_messages(), seed=3, decoding=decoding)
    assert turn.ok and turn.message["content"] in {f'{{"move": "{a}"}}' for a in LEGAL}
    assert forced.message["content"] in LEGAL


class IgnoresFormats(TablePolicy):
    """A server that takes response_format but does not obey it (answers prose): the probe sees through it."""

    def complete(self, messages, tools=None, *, seed, decoding=None):
        return Turn(message=message("assistant", "I think 0"), prompt_tokens=1, completion_tokens=3)


def test_auto_falls_back_to_off_when_no_shape_is_obeyed():
    from orbit.policies import server as server_module

    with start_server(IgnoresFormats(), rules=server_module.Rules(response_formats=())) as handle:
        policy = endpoint(handle)
        policy.check()
        assert policy.constrained_mode == "off"
        sent = policy._request(game_messages(), None, 1, Decoding(max_tokens=8, choices=("0",)))
    assert "response_format" not in sent and sent["max_tokens"] == 8


def test_max_tokens_is_the_smaller_of_the_envs_and_the_cap():
    policy = EndpointPolicy("http://127.0.0.1:1/v1", "m", max_tokens=100, constrained="json_object")
    assert policy._request(game_messages(), None, 1, Decoding(max_tokens=48))["max_tokens"] == 48
    assert policy._request(game_messages(), None, 1, Decoding(max_tokens=500))["max_tokens"] == 100
    assert policy._request(game_messages(), None, 1)["max_tokens"] == 100


# -- availability check ---------------------------------------------------------------------------

def test_check_waits_for_a_server_that_comes_up_late():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = []

    def later():
        time.sleep(0.4)
        started.append(start_server(TablePolicy(), port=port))

    thread = threading.Thread(target=later)
    thread.start()
    try:
        policy = EndpointPolicy(f"http://127.0.0.1:{port}/v1", "embedded:uniform", check_timeout_s=1.0,
                                check_retries=20, check_backoff_s=0.1, constrained="off")
        policy.check()
    finally:
        thread.join()
        for handle in started:
            handle.stop()


def test_check_names_the_timeout_of_a_server_that_never_answers():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        policy = EndpointPolicy(f"http://127.0.0.1:{port}/v1", "m", check_timeout_s=0.2, check_retries=1,
                                check_backoff_s=0.01)
        with pytest.raises(PolicyUnavailable, match=r"GET /models timed out 2 times \(timeout 0.2s\)"):
            policy.check()


def test_settings_are_validated():
    with pytest.raises(ValueError, match="constrained"):
        EndpointPolicy("http://127.0.0.1:1/v1", "m", constrained="grammar")
    with pytest.raises(ValueError, match="tool_choice"):
        EndpointPolicy("http://127.0.0.1:1/v1", "m", tool_choice="always")
