"""Policy URIs: syntax, settings and what they load."""

import pytest

from orbit.policies.endpoint import EndpointPolicy
from orbit.policies.table_policy import TablePolicy
from orbit.policies.uri import InvalidPolicyURI, PolicyURI, load_policy, parse_policy_uri


def test_parse_valid_uris(tmp_path):
    assert parse_policy_uri("openai:http://127.0.0.1:8000/v1#qwen2.5-7b") == PolicyURI(
        "openai", base_url="http://127.0.0.1:8000/v1", model="qwen2.5-7b")
    assert parse_policy_uri("embedded:uniform") == PolicyURI("embedded")
    assert parse_policy_uri(f"embedded:{tmp_path}/x.parquet").checkpoint == tmp_path / "x.parquet"


@pytest.mark.parametrize(("uri", "message"), [
    ("", "expected 'openai:"),
    ("qwen2.5-7b", "expected 'openai:"),
    ("openai:http://127.0.0.1:8000/v1", "name the model after '#'"),
    ("openai:127.0.0.1:8000#m", "not an http"),
    ("openai:http://h/v1#two words", "name the model"),
    ("hf:Qwen/Qwen2.5-7B", "unknown policy scheme 'hf'"),
    ("embedded:/does/not/exist.parquet", "is not a file"),
    ("openai:http://[::1:80/v1#m", "invalid policy URI"),
    ("openai:http://127.0.0.1:99999/v1#m", "invalid policy URI"),
    ("openai:http://127.0.0.1:-1/v1#m", "invalid policy URI"),
    ("openai:http://127.0.0.1:0/v1#m", "port 0 is not in 1-65535"),
    ("openai:http://:8000/v1#m", "not an http"),
    ("openai:http://user:secret@127.0.0.1:8000/v1#m", "credentials do not belong"),
])
def test_invalid_uris_fail_clearly(uri, message):
    with pytest.raises(InvalidPolicyURI, match=message):
        load_policy(uri)


def test_load_with_settings():
    endpoint = load_policy("openai:http://127.0.0.1:8000/v1#m", temperature=0.2, concurrency=4)
    assert isinstance(endpoint, EndpointPolicy) and endpoint.id == "m" and endpoint.concurrency == 4
    uniform = load_policy("embedded:uniform", temperature=0.5)
    assert isinstance(uniform, TablePolicy) and uniform.temperature == 0.5
    with pytest.raises(InvalidPolicyURI, match="unknown settings \\['concurrency'\\]"):
        load_policy("embedded:uniform", concurrency=4)
    with pytest.raises(InvalidPolicyURI, match="unknown settings \\['temprature'\\]"):
        load_policy("openai:http://127.0.0.1:8000/v1#m", temprature=0.2)


def test_llama_server_refuses_non_loopback_and_missing_tools(tmp_path):
    from orbit.policies.llama_server import LlamaServerError, start_llama_server

    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="loopback-only"):
        start_llama_server(model, host="0.0.0.0")
    with pytest.raises(LlamaServerError, match="no GGUF model"):
        start_llama_server(tmp_path / "absent.gguf")
    with pytest.raises(LlamaServerError, match="make test-model"):
        start_llama_server(model, python=tmp_path / "no-python")


def test_resource_endpoint_overrides_and_prices():
    from resources.policies import PolicyResource

    resource = PolicyResource(concurrency=8, prompt_price_per_mtok=1.0, completion_price_per_mtok=2.0,
                              endpoints_json='{"http://127.0.0.1:8080/v1/": {"concurrency": 1, "constrained": "json_object"}}')
    local = resource.load("openai:http://127.0.0.1:8080/v1#m")
    other = resource.load("openai:http://127.0.0.1:9000/v1#m")
    assert (local.concurrency, local.constrained, other.concurrency, other.constrained) == (1, "json_object", 8, "auto")
    assert resource.concurrency_for("openai:http://127.0.0.1:8080/v1#m") == 1
    assert local.cost(1_000_000, 1_000_000) == 3.0 and PolicyResource().load("openai:http://h:1/v1#m").cost(5, 5) is None
    with pytest.raises(ValueError, match="unknown settings"):
        PolicyResource(endpoints_json='{"http://h:1/v1": {"api_key": "x"}}').load("openai:http://h:1/v1#m")
