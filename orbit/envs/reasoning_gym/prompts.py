"""What the model is shown: the family's system prompt, then the item's question exactly."""

from orbit.io.schema import message

ANSWER_FORMAT = "answer_tag.v1"
SYSTEM_PROMPT = (
    "Solve the problem in the user's message. You may reason step by step first. End your reply with the "
    "final answer in exactly one <answer>...</answer> tag, with nothing after the closing tag, and put "
    "only the answer itself inside the tag, written the way the problem asks for it."
)


def prompt_messages(question: str) -> list[dict]:
    return [message("system", SYSTEM_PROMPT), message("user", question)]


def oracle_completion(answer: str) -> str:
    """The teacher's reply: the oracle answer in the answer format."""
    return f"<answer>{answer}</answer>"


# Constrained answers (env option ``answer_grammar``): a GBNF grammar the whole reply must match, in the answer
# format, so the verifier grades it like any reply. ``integer``: ``<answer>`` and an integer of at most 6 digits.
ANSWER_GRAMMARS = {
    "integer": 'root ::= "<answer>" "-"? [0-9] [0-9]? [0-9]? [0-9]? [0-9]? [0-9]? "</answer>"',
}
