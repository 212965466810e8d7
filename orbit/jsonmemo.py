"""``json.loads`` that hands the same parsed value to the next reader of the same string object.

The verify stage reads a record's metadata twice (the structural rules, then the
env's verifier); both receive the very same ``str`` object from the record, so the
second parse is skipped. Only successful parses of ``str`` objects are remembered
(the last one), and the readers never modify what they get.
"""

import json
from typing import Any

_LAST: tuple[Any, Any] = (None, None)


def loads_shared(text: Any) -> Any:
    """``json.loads(text)``; the same object's last successful parse is returned again."""
    global _LAST
    last = _LAST
    if last[0] is text and type(text) is str:
        return last[1]
    value = json.loads(text)
    if type(text) is str:
        _LAST = (text, value)
    return value
