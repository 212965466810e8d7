"""orbit.io.jsonmemo.loads gives exactly what json.loads gives: the same value with the same types, or an error.

The verify stage parses record metadata with it (msgspec, with json.loads behind it), so any
difference would change a verdict. Checked on texts json.dumps writes (with NaN, huge and
wide integers, surrogates, deep nesting) and on mangled and arbitrary texts.
"""

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orbit.io import jsonmemo

SETTINGS = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def typed(value):
    """A comparable picture of a parsed value that tells int, float, bool and NaN apart."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def outcome(parse, text):
    try:
        return ("ok", typed(parse(text)))
    except (ValueError, RecursionError) as exc:
        return ("error", type(exc).__name__ if not isinstance(exc, json.JSONDecodeError) else "JSONDecodeError")


def same_as_json(text):
    assert outcome(jsonmemo.loads, text) == outcome(json.loads, text), text[:200]


SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**19, 10**400, 0, -0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(), st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)), max_leaves=30)


@SETTINGS
@given(VALUES, st.booleans())
def test_dumped_values_parse_as_json_parses_them(value, ascii_only):
    same_as_json(json.dumps(value, ensure_ascii=ascii_only))


@SETTINGS
@given(VALUES, st.integers(min_value=0, max_value=10_000), st.text(max_size=3))
def test_mangled_texts_parse_or_fail_as_json_does(value, at, insert):
    text = json.dumps(value)
    at %= len(text) + 1
    same_as_json(text[:at] + insert + text[at + 1:])


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list('{}[]",:0123456789.eE+-tfnulraNI \t\n\\u\ufeff')), max_size=60))
def test_arbitrary_texts_parse_or_fail_as_json_does(text):
    same_as_json(text)


def test_edges():
    for text in ["NaN", "-Infinity", "[1e400]", '"\\ud800"', "123456789012345678901234567890", "1" * 19,
                 "-" + "9" * 19, "9223372036854775808", '{"a":1,"a":2}', "-0", "-0.0", "1.0000000000000002",
                 "[" * 1100 + "]" * 1100, "[" * 1000 + "]" * 1000, "\ufeff{}", " {} ", "{}\x00", "", "\t1\n",
                 '"\x01"', '"\\u0000"', "1_000", "01", "1.", ".5", "1" * 4300, "1" * 4301, "-" + "1" * 5000, "[" * 255 + "]" * 255, "1e5", "1E+5", "true", "True", "[1,]", "{'a':1}"]:
        same_as_json(text)


def test_shared_parse_returns_the_same_object_for_the_same_string():
    text = json.dumps({"a": [1, 2]})
    assert jsonmemo.loads_shared(text) is jsonmemo.loads_shared(text)
    assert jsonmemo.loads_shared(json.dumps({"a": [1, 2]})) == {"a": [1, 2]}
