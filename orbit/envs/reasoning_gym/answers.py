"""The final answer of a reply: exactly one ``<answer>...</answer>`` tag, at the very end.

``extract_answer`` reads it and nothing else: exactly one opening and one closing tag, not nested,
closed, and only ASCII whitespace after the closing tag. The answer is what lies between the tags
with surrounding ASCII whitespace stripped; nothing else is normalised (the task's own scorer
decides what counts as equal, an empty answer included: some oracle answers are empty). Each failure has its own reason id. ``foreign_digits`` finds digits
of other scripts (``６４``, ``٦٤``), which some scorers read as numbers (``Decimal("٦٤") == 64``):
the verifier refuses them unless the oracle answer has them too.
"""

import unicodedata

OPEN, CLOSE = "<answer>", "</answer>"
ASCII_SPACE = " \t\r\n\f\v"
MAX_ANSWER_CHARS = 100_000

MISSING = "answer.missing"
MULTIPLE = "answer.multiple"
UNCLOSED = "answer.unclosed"
NESTED = "answer.nested"
NOT_FINAL = "answer.not_final"
EMPTY = "answer.empty"  # an empty answer the scorer gave nothing (grading)
TOO_LONG = "answer.too_long"
NON_ASCII_DIGITS = "answer.non_ascii_digits"


def extract_answer(text) -> tuple[str | None, str | None]:
    """(answer, None), or (None, the reason id) when the reply holds no single final answer."""
    if type(text) is not str:
        return None, MISSING
    if text.endswith(CLOSE):  # the usual reply: ... <answer>X</answer>, nothing after it
        end = len(text) - len(CLOSE)
        start = text.find(OPEN)
        if 0 <= start and text.find(OPEN, start + len(OPEN)) < 0 and text.find(CLOSE, 0, end) < 0:
            answer = text[start + len(OPEN):end].strip(ASCII_SPACE)
            return (answer, None) if len(answer) <= MAX_ANSWER_CHARS else (None, TOO_LONG)
    start = text.find(OPEN)
    if start < 0:
        return None, MISSING
    inner = start + len(OPEN)
    end = text.find(CLOSE, inner)
    again = text.find(OPEN, inner)
    if again >= 0:
        return None, NESTED if end < 0 or again < end else MULTIPLE
    if end < 0:
        return None, UNCLOSED
    if text.count(CLOSE) != 1:  # a second closing tag, after the answer or before it
        return None, MULTIPLE
    if text[end + len(CLOSE):].strip(ASCII_SPACE):
        return None, NOT_FINAL
    answer = text[inner:end].strip(ASCII_SPACE)
    if len(answer) > MAX_ANSWER_CHARS:
        return None, TOO_LONG
    return answer, None


def foreign_digits(text: str) -> bool:
    """Does ``text`` hold a decimal digit (Unicode category Nd) that is not an ASCII digit?"""
    if text.isascii():
        return False
    return any(not c.isascii() and unicodedata.category(c) == "Nd" for c in text)
