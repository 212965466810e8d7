"""The answer format of the envs whose learner picks one listed action ID (the games): format v3.

``parse_answer`` reads exactly one of three whole-reply shapes, and nothing else: a bare ID
(surrounding ASCII whitespace and one trailing ``.`` allowed); a JSON object with the one key ``move``
(what constrained decoding produces); free text ending in ``<answer>ID</answer>`` (the last tag
counts). v3 (after v2) reads the ID only as the prompt lists it: ASCII digits, no ``+``, no zero
padding, no other script's digits, no duplicate JSON key. It lives with the policies because the table policy reads answers in it when it trains;
the games' prompts (``orbit.envs.openspiel.prompts``) state it to the learner.
"""

import json
import re

ANSWER_FORMAT = "answer.v3"
ANSWER_KEY = "move"
ID = r"(?:0|-?[1-9][0-9]*)"  # an ID as the prompt lists it: str(action), ASCII digits, no + or zero padding
SPACE = r"[ \t\r\n]*"  # ASCII whitespace only (\s would take U+00A0, U+2028, ...)
BARE_ID_RE = re.compile(rf"^{SPACE}({ID}){SPACE}\.?{SPACE}$")
TAGGED_ID_RE = re.compile(rf"<answer>{SPACE}({ID}){SPACE}</answer>{SPACE}$")
ID_RE = re.compile(rf"^{ID}$")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _DuplicateKey("duplicate key")
    return dict(pairs)


def parse_answer(content: str | None) -> int | None:
    """The action ID of an answer in format v3, else None: a bare ID (ASCII whitespace around it and one
    trailing ``.`` allowed), ``{"move": ID}`` (one key, once; the ID an int or the string exactly as
    listed), or text ending in ``<answer>ID</answer>``. The ID is written as the prompt lists it (``4``,
    never ``04``, ``+4``, ``٤`` or ``４``): a reply only a lenient integer parse reads is no answer."""
    if not content or not isinstance(content, str):
        return None
    match = BARE_ID_RE.match(content) or TAGGED_ID_RE.search(content)
    if match:
        return int(match.group(1))
    if content.lstrip(" \t\r\n").startswith("{"):
        try:
            value = json.loads(content, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError):
            return None
        if isinstance(value, dict) and set(value) == {ANSWER_KEY}:
            move = value[ANSWER_KEY]
            if isinstance(move, int) and not isinstance(move, bool):
                return move
            if isinstance(move, str) and ID_RE.match(move):
                return int(move)
    return None
