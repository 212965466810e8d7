"""A Decoding's GBNF grammar reaches llama-cpp-python (constrained mode json_object) and no other server."""

from orbit.io.schema import message
from orbit.policies.base import Decoding
from orbit.policies.endpoint import EndpointPolicy

GRAMMAR = 'root ::= "<answer>" [0-9] "</answer>"'


def _body(constrained: str, decoding: Decoding | None) -> dict:
    policy = EndpointPolicy("http://127.0.0.1:9/v1", "m", constrained=constrained)
    return policy._request([message("user", "1+1?")], None, 7, decoding)


def test_the_grammar_goes_to_llama_cpp_only():
    assert _body("json_object", Decoding(max_tokens=8, grammar=GRAMMAR))["grammar"] == GRAMMAR
    for mode in ("json_schema", "off"):
        assert "grammar" not in _body(mode, Decoding(max_tokens=8, grammar=GRAMMAR))
    assert "grammar" not in _body("json_object", Decoding(max_tokens=8))
    # legal choices win over a grammar: the response_format already constrains the reply
    both = _body("json_object", Decoding(choices=("1", "2"), grammar=GRAMMAR))
    assert "response_format" in both and "grammar" not in both


def test_cache_identity_is_unchanged_without_a_grammar():
    assert "grammar" not in Decoding(max_tokens=8).to_json()
    assert Decoding(grammar=GRAMMAR).to_json()["grammar"] == GRAMMAR


def test_accepts_decoding_is_asked_per_function_and_remembered():
    """A policy written before ``decoding`` existed is called without it; the answer is per acomplete function,
    so two classes (and an instance's own acomplete) each get theirs."""
    from orbit.policies.base import _ACCEPTS_DECODING, accepts_decoding

    class Old:
        async def acomplete(self, messages, tools=None, *, seed):
            return None

    class New:
        async def acomplete(self, messages, tools=None, *, seed, decoding=None):
            return None

    async def own(messages, tools=None, *, seed, decoding=None):
        return None

    patched = Old()
    patched.acomplete = own
    for _ in range(2):  # asked, then remembered: the same answers
        assert accepts_decoding(Old()) is False
        assert accepts_decoding(New()) is True
        assert accepts_decoding(patched) is True
        assert accepts_decoding(object()) is False
    assert _ACCEPTS_DECODING[Old.acomplete] is False and _ACCEPTS_DECODING[New.acomplete] is True
