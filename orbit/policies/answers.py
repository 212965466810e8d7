"""The answer format of the envs whose learner picks one listed action ID (the games): format v2.

``parse_answer`` reads exactly one of three whole-reply shapes, and nothing else: a bare ID
(surrounding whitespace and one trailing ``.`` allowed); a JSON object with the one key ``move``
(what constrained decoding produces); free text ending in ``<answer>ID</answer>`` (the last tag
counts). It lives with the policies because the table policy reads answers in it when it trains;
the games' prompts (``orbit.envs.openspiel.prompts``) state it to the learner.
"""

import json
import re

ANSWER_FORMAT = "answer.v2"
ANSWER_KEY = "move"
BARE_ID_RE = re.compile(r"^\s*(-?\d+)\s*\.?\s*$")
TAGGED_ID_RE = re.compile(r"<answer>\s*(-?\d+)\s*</answer>\s*$")
ID_RE = re.compile(r"^-?\d+$")


def parse_answer(content: str | None) -> int | None:
    """The action ID of an answer in format v2 (bare ID, ``{"move": ID}`` or a final ``<answer>ID</answer>``), else None."""
    if not content:
        return None
    match = BARE_ID_RE.match(content) or TAGGED_ID_RE.search(content)
    if match:
        return int(match.group(1))
    if content.lstrip().startswith("{"):
        try:
            value = json.loads(content)
        except ValueError:
            return None
        if isinstance(value, dict) and set(value) == {ANSWER_KEY}:
            move = value[ANSWER_KEY]
            if isinstance(move, int) and not isinstance(move, bool):
                return move
            if isinstance(move, str) and ID_RE.match(move.strip()):
                return int(move.strip())
    return None
