"""Fast ``json.loads`` for the verify stage, with the same results, parsed once per string.

``loads`` gives exactly what ``json.loads`` gives (value or exception) for any ``str``.
It parses with msgspec (about twice as fast on record metadata) and lets ``json.loads``
itself decide every text msgspec will not read: msgspec rejects what json accepts beyond
RFC 8259 (``NaN``, ``Infinity``, numbers out of float range, lone surrogates), and it
keeps integers exact and Python's 4300-digit limit as json does. Nesting is the one
limit that differs (json's depends on the caller's stack), so a text with many
brackets goes to ``json.loads`` directly.

The verify stage reads a record's metadata twice (the structural rules, then the
env's verifier); both receive the very same ``str`` object from the record, so
``loads_shared`` skips the second parse. Only successful parses of ``str`` objects
are remembered (the last one), and the readers never modify what they get.
"""

import json
from typing import Any

import msgspec

_DECODE = msgspec.json.Decoder().decode
MAX_FAST_BRACKETS = 256  # a text with fewer opening brackets nests less deep than any stack limit


def loads(text: Any) -> Any:
    """``json.loads(text)``, faster for ordinary JSON text."""
    if type(text) is str and (len(text) < MAX_FAST_BRACKETS  # too short to hold that many brackets
                              or text.count("[") + text.count("{") < MAX_FAST_BRACKETS):
        try:
            return _DECODE(text)
        except (msgspec.DecodeError, UnicodeError):
            pass  # json.loads decides: it may accept it (NaN, 1e400, "\ud800") or raise its own error
    return json.loads(text)


_LAST: tuple[Any, Any] = (None, None)


def loads_shared(text: Any) -> Any:
    """``loads(text)``; the same object's last successful parse is returned again."""
    global _LAST
    last = _LAST
    if last[0] is text and type(text) is str:
        return last[1]
    value = loads(text)
    if type(text) is str:
        _LAST = (text, value)
    return value
