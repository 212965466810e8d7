"""The code of a reply: exactly one fenced block (```python, ```py, ``` or another tag).

``extract_code(text)`` returns ``(code, None)`` or ``(None, reason)``: ``answer.missing`` (no block),
``answer.multiple`` (several), ``answer.unclosed`` (a fence never closed), ``answer.empty``,
``answer.too_long`` (over ``MAX_CODE_CHARS``).
"""

import re

MAX_CODE_CHARS = 100_000
FENCE_RE = re.compile(r"^[ \t]*```", re.M)
OPEN_RE = re.compile(r"[ \t]*```[ \t]*([A-Za-z0-9_+.-]*)[ \t]*\r?\n")

MISSING = "answer.missing"
MULTIPLE = "answer.multiple"
UNCLOSED = "answer.unclosed"
EMPTY = "answer.empty"
TOO_LONG = "answer.too_long"


def extract_code(text) -> tuple[str | None, str | None]:
    if type(text) is not str or "```" not in text:
        return None, MISSING
    fences = [m.start() for m in FENCE_RE.finditer(text)]
    if not fences:
        return None, MISSING
    if len(fences) % 2:
        return None, UNCLOSED
    if len(fences) > 2:
        return None, MULTIPLE
    start, end = fences
    opening = OPEN_RE.match(text, start)
    if opening is None:
        return None, MISSING
    code = text[opening.end():end]
    if not code.strip():
        return None, EMPTY
    if len(code) > MAX_CODE_CHARS:
        return None, TOO_LONG
    return code, None
