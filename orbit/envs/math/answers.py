"""The final answer of a math reply: one ``\\boxed{...}``, or one ``<answer>...</answer>`` at the very end.

``final_answer(text)`` returns ``(answer, None)`` or ``(None, reason)``:

- a reply holding an ``<answer>`` tag is read by the tag: exactly one opening and one closing tag,
  not nested, with only whitespace after the closing tag (``answer.multiple``, ``answer.nested``,
  ``answer.unclosed``, ``answer.not_final``); a tag holding one ``\\boxed{}`` gives the box's content;
- otherwise the reply must hold exactly one ``\\boxed{...}`` (``\\fbox`` too), its braces balanced:
  ``answer.missing`` without one, ``answer.multiple`` with several (even equal ones),
  ``answer.unclosed`` when its braces never close;
- the answer may not be empty (``answer.empty``), longer than ``MAX_ANSWER_CHARS``
  (``answer.too_long``) or nest braces deeper than ``MAX_DEPTH`` (``answer.too_deep``): such answers
  never reach math-verify.
"""

import re

OPEN, CLOSE = "<answer>", "</answer>"
MAX_ANSWER_CHARS = 2000
MAX_DEPTH = 40
BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")

MISSING = "answer.missing"
MULTIPLE = "answer.multiple"
NESTED = "answer.nested"
UNCLOSED = "answer.unclosed"
NOT_FINAL = "answer.not_final"
EMPTY = "answer.empty"
TOO_LONG = "answer.too_long"
TOO_DEEP = "answer.too_deep"


def _depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == "}":
            depth -= 1
    return deepest


def _boxed(text: str) -> tuple[str | None, str | None]:
    starts = [m.end() for m in BOX_RE.finditer(text)]
    if not starts:
        return None, MISSING
    if len(starts) > 1:
        return None, MULTIPLE
    depth, i = 1, starts[0]
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[starts[0]:i], None
        i += 1
    return None, UNCLOSED


def _tagged(text: str) -> tuple[str | None, str | None]:
    start = text.find(OPEN)
    inner = start + len(OPEN)
    end = text.find(CLOSE, inner)
    again = text.find(OPEN, inner)
    if again >= 0:
        return None, NESTED if end < 0 or again < end else MULTIPLE
    if end < 0:
        return None, UNCLOSED
    if text.count(CLOSE) != 1:
        return None, MULTIPLE
    if text[end + len(CLOSE):].strip():
        return None, NOT_FINAL
    answer = text[inner:end]
    if BOX_RE.search(answer):
        return _boxed(answer)
    return answer, None


def final_answer(text) -> tuple[str | None, str | None]:
    if type(text) is not str or not text:
        return None, MISSING
    answer, reason = _tagged(text) if OPEN in text else _boxed(text)
    if reason:
        return None, reason
    answer = answer.strip()
    if not answer:
        return None, EMPTY
    if len(answer) > MAX_ANSWER_CHARS:
        return None, TOO_LONG
    if _depth(answer) > MAX_DEPTH:
        return None, TOO_DEEP
    return answer, None
