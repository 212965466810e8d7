"""The games' answer format v3: what the extractor reads, and what it refuses."""

import pytest

from orbit.envs.openspiel.prompts import ANSWER_FORMAT, parse_answer, system_prompt
from orbit.envs.openspiel.verifier import GameReplayVerifier


@pytest.mark.parametrize(("content", "expected"), [
    ("4", 4), (" 4 \n", 4), ("4.", 4), ("12", 12),
    ('{"move": "4"}', 4), ('{ "move" : "0"}', 0), ('{"move": 7}', 7), ('  {"move":"3"}', 3), ("-1", -1),
    ("Taking the centre is strongest.\n<answer>4</answer>", 4),
    ("<answer>1</answer> no wait <answer>5</answer>\n", 5),
])
def test_answers_in_the_format_are_read(content, expected):
    assert parse_answer(content) == expected


@pytest.mark.parametrize("content", [
    None, "", "1\n3", "4,5. Player 0 is x", "I play 4", "x(1,1)", "4 because it is the centre",
    '{"move": "four"}', '{"move": true}', '{"move": "4", "why": "centre"}', '{"action": "4"}', "[4]",
    '{"move": "4"', "<answer>4</answer> and then more text", "<answer>four</answer>", "4 4",
    # only a lenient integer parse reads these as the listed ID (format v3 refuses them)
    "04", "+4", "-0", "\u0664", "\uff14", "4\u00a0", "\u20284", "<answer>04</answer>", "<answer>\u0664</answer>",
    '{"move": "04"}', '{"move": " 3 "}', '{"move": "\u0664"}', '{"move": 1, "move": 4}', '{"move": 4.0}',
])
def test_anything_else_is_unparseable(content):
    assert parse_answer(content) is None


def test_the_prompt_states_the_format_and_the_verifier_names_its_version():
    prompt = system_prompt("tic_tac_toe", 0)
    assert "Answer with the ID" in prompt and "<answer>ID</answer>" in prompt
    assert ANSWER_FORMAT == "answer.v3" and GameReplayVerifier.version == "3"
