"""The LiveWeb browser tools as OpenAI function schemas, and the check of one call against them."""

import json
from dataclasses import dataclass
from typing import Any, Mapping

DIRECTIONS = ["up", "down"]
ANSWERS_SCHEMA = {
    "description": "One answer string per question: a list in question order, or an object keyed by "
                   "question number (\"1\", \"2\", ...).",
    "anyOf": [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "additionalProperties": {"type": "string"}},
    ],
}


def _function(name: str, description: str, properties: Mapping[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": dict(properties), "required": required,
                           "additionalProperties": False},
        },
    }


TOOL_SCHEMAS: list[dict] = [
    _function("goto", "Open a URL and show the top of the page.",
              {"url": {"type": "string", "description": "Absolute URL, or a path on the current site."}},
              ["url"]),
    _function("click", "Follow a link or press a button.",
              {"selector": {"type": "string",
                            "description": "A link or button id from the page (\"L12\", \"B1\") or a CSS selector."}},
              ["selector"]),
    _function("type", "Type text into a form field; press_enter submits its form.",
              {"selector": {"type": "string", "description": "A field id (\"I1\") or a CSS selector."},
               "text": {"type": "string"},
               "press_enter": {"type": "boolean", "description": "Submit the form after typing (default false)."}},
              ["selector", "text"]),
    _function("scroll", "Move the view of the current page by a number of lines.",
              {"direction": {"type": "string", "enum": DIRECTIONS},
               "amount": {"type": "integer", "minimum": 1, "maximum": 500,
                          "description": "Lines to move (default: half a window)."}},
              ["direction"]),
    _function("view_more", "Show the next (or previous) full window of the current page.",
              {"direction": {"type": "string", "enum": DIRECTIONS}},
              []),
    _function("stop", "End the episode and submit the answers.", {"answers": ANSWERS_SCHEMA}, ["answers"]),
]
TOOL_NAMES = tuple(t["function"]["name"] for t in TOOL_SCHEMAS)
TOOLS_JSON = json.dumps(TOOL_SCHEMAS, sort_keys=True, ensure_ascii=False)  # the records' ``tools`` column
_PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOL_SCHEMAS}

SYSTEM_PROMPT = (
    "You are a web-browsing agent. You see web pages as text: headings start with #, table rows with |, "
    "links appear as [L<n> text], form fields as [I<n> ...] and buttons as [B<n> ...]. Only part of a long "
    "page is shown at a time.\n"
    "Tools: goto(url) opens a page; click(selector) follows a link or presses a button (an id such as L3 "
    "or a CSS selector); type(selector, text, press_enter) fills a form field and, with press_enter, "
    "submits the form; scroll(direction, amount) moves the view by lines; view_more(direction) shows the "
    "next window; stop(answers) ends the episode.\n"
    "Call one tool at a time. When you know every answer, call stop with a list holding one short answer "
    "string per question, in question order: a number with its unit or currency as the site shows it, "
    "or a name exactly as the site writes it."
)

# Reason ids of malformed calls.
UNKNOWN_TOOL = "tool.unknown"
ARGUMENTS_NOT_JSON = "tool.arguments_not_json"
ARGUMENTS_INVALID = "tool.arguments_invalid"


@dataclass(frozen=True)
class CallError:
    """Why a tool call does not fit its schema: a reason id and a readable detail."""

    reason: str
    detail: str


def _type_problem(value: Any, schema: Mapping[str, Any], where: str) -> str | None:
    if "anyOf" in schema:
        if all(_type_problem(value, option, where) for option in schema["anyOf"]):
            return f"{where} has the wrong shape"
        return None
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if not checks[kind](value):
        return f"{where} must be {'an' if kind in ('integer', 'array', 'object') else 'a'} {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {schema['enum']}"
    if kind == "integer" and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        return f"{where} must be between {schema['minimum']} and {schema['maximum']}"
    if kind == "array":
        for i, item in enumerate(value):
            problem = _type_problem(item, schema["items"], f"{where}[{i}]")
            if problem:
                return problem
    if kind == "object":
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                return f"{where} is missing {key!r}"
        for key, item in value.items():
            item_schema = properties.get(key, schema.get("additionalProperties"))
            if item_schema is False or item_schema is None:
                return f"{where} has unexpected field {key!r}"
            problem = _type_problem(item, item_schema, f"{key!r}")
            if problem:
                return problem
    return None


def parse_call(name: Any, arguments: Any) -> dict | CallError:
    """The arguments of a call as a dict, or why the call is malformed.

    ``arguments`` is the JSON text of an OpenAI tool call (a dict is accepted too).
    """
    if not isinstance(name, str) or name not in _PARAMETERS:
        return CallError(UNKNOWN_TOOL, f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError as exc:
            return CallError(ARGUMENTS_NOT_JSON, f"arguments are not JSON: {exc}")
    if not isinstance(arguments, dict):
        return CallError(ARGUMENTS_INVALID, "arguments must be a JSON object")
    problem = _type_problem(arguments, _PARAMETERS[name], "arguments")
    if problem:
        return CallError(ARGUMENTS_INVALID, f"{name}: {problem}")
    return arguments
