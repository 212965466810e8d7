"""The one record schema of Orbit.

Every generator emits rows of ``RECORD_SCHEMA``; the verify stage emits rows of
``VERIFIED_SCHEMA`` (the same columns plus the recomputed verdict). Messages are
OpenAI chat messages stored as nested Arrow, so DuckDB and Hugging Face
``datasets`` read them natively.
"""

import hashlib
import json
from json.encoder import encode_basestring
from typing import Any, Callable, Iterable, Mapping

import pyarrow as pa

SCHEMA_VERSION = 1

SOURCES = ("selfplay", "teacher", "policy", "import")
ROLES = ("system", "user", "assistant", "tool")

FUNCTION_TYPE = pa.struct([("name", pa.string()), ("arguments", pa.string())])
TOOL_CALL_TYPE = pa.struct(
    [("id", pa.string()), ("type", pa.string()), ("function", FUNCTION_TYPE)]
)
MESSAGE_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("tool_calls", pa.list_(TOOL_CALL_TYPE)),
        ("tool_call_id", pa.string()),
        ("name", pa.string()),
    ]
)

RECORD_FIELDS = [
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("env", pa.string(), nullable=False),
    pa.field("task_id", pa.string(), nullable=False),
    pa.field("round", pa.string(), nullable=False),
    pa.field("sample_idx", pa.int32(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("policy", pa.string(), nullable=False),
    pa.field("seed", pa.int64()),
    pa.field("messages", pa.list_(MESSAGE_TYPE)),
    pa.field("tools", pa.string()),
    pa.field("score", pa.float64()),
    pa.field("metadata", pa.string()),
    pa.field("schema_version", pa.int16(), nullable=False),
]
RECORD_SCHEMA = pa.schema(RECORD_FIELDS)

# In verified rows ``score`` is the verifier's recomputed score; the generator's
# claim is kept beside it as ``claimed_score``.
VERIFIED_EXTRA_FIELDS = [
    pa.field("claimed_score", pa.float64()),
    pa.field("passed", pa.bool_(), nullable=False),
    pa.field("reasons", pa.list_(pa.string()), nullable=False),
    pa.field("verifier", pa.string(), nullable=False),
]
VERIFIED_SCHEMA = pa.schema(RECORD_FIELDS + VERIFIED_EXTRA_FIELDS)

MESSAGE_KEYS = tuple(f.name for f in MESSAGE_TYPE)
_MESSAGE_KEY_SET = frozenset(MESSAGE_KEYS)


_HASH_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
_METADATA_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)  # json.dumps(..., sort_keys=True, ensure_ascii=False)


def stable_hash(*parts: Any, length: int = 20) -> str:
    """Hex digest of the JSON encoding of ``parts``: stable across runs and machines."""
    blob = _HASH_JSON.encode(parts)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def stable_hashes_by_index(*parts: Any, length: int = 20) -> Callable[[int], str]:
    """``i -> stable_hash(*parts, int(i), length=length)``, with the JSON of ``parts`` encoded once.

    The blob of ``stable_hash`` is the JSON list of its parts; an int is the last element, and its JSON
    text is ``str(i)``, so the blob is the fixed prefix, ``str(i)`` and ``]``."""
    if all(type(p) is str or type(p) is int for p in parts):  # the JSON the encoder writes for them
        head = "[" + "".join(f"{encode_basestring(p) if type(p) is str else p}," for p in parts)
    else:
        head = _HASH_JSON.encode(parts)[:-1] + ("," if parts else "")

    def digest(i: int) -> str:
        blob = f"{head}{int(i)}]"
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:length]

    return digest


def encode_metadata(metadata: Mapping[str, Any]) -> str:
    """A record's metadata text: ``json.dumps(dict(metadata), sort_keys=True, ensure_ascii=False)``."""
    return _METADATA_JSON.encode(dict(metadata))


def make_record_id(env: str, round_key: str, task_id: str, source: str, policy: str, sample_idx: int) -> str:
    return stable_hash("record", env, round_key, task_id, source, policy, int(sample_idx))


def record_ids(env: str, round_key: str, task_id: str, source: str, policy: str) -> Callable[[int], str]:
    """``sample_idx -> make_record_id(env, round_key, task_id, source, policy, sample_idx)``, faster."""
    return stable_hashes_by_index("record", env, round_key, task_id, source, policy)


def prompt_of(messages: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    """The messages before the first assistant turn: what the model was asked."""
    prompt = []
    for message in messages or []:
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            break
        prompt.append(message)
    return prompt


def task_id_from_prompt(env: str, messages: Iterable[Mapping[str, Any]] | None) -> str:
    """Deterministic task id for a record that arrives without one: a content hash of its prompt.

    Two records with the same prompt share a task; records with different prompts
    never collapse into one key per env.
    """
    prompt = [
        {"role": m.get("role"), "content": m.get("content")} if isinstance(m, Mapping) else repr(m)
        for m in prompt_of(messages)
    ]
    return f"{env}-prompt-{stable_hash('prompt', prompt, length=16)}"


def message(role: str, content: str | None = None, *, tool_calls: list[dict] | None = None,
            tool_call_id: str | None = None, name: str | None = None) -> dict:
    """One chat message in the record's shape (all keys present)."""
    return {
        "role": role,
        "content": content,
        "tool_calls": tool_calls,
        "tool_call_id": tool_call_id,
        "name": name,
    }


def tool_call(call_id: str, name: str, arguments: Mapping[str, Any] | str) -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, sort_keys=True, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def make_record(*, env: str, task_id: str, round_key: str, sample_idx: int, source: str, policy: str,
                seed: int | None, messages: list[dict], score: float | None,
                metadata: Mapping[str, Any] | None = None, tools: list[dict] | str | None = None,
                record_id: str | None = None, metadata_json: str | None = None) -> dict:
    """Build one row of ``RECORD_SCHEMA`` as a Python dict.

    ``record_id``: the caller's ``record_ids(...)(sample_idx)`` for these fields (computed here otherwise);
    ``metadata_json``: the caller's ``encode_metadata(metadata)`` text, given instead of ``metadata``.
    Messages made by ``message`` (every key of a message, nothing else) are taken as they are."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if not task_id:
        task_id = task_id_from_prompt(env, messages)
    if tools is not None and not isinstance(tools, str):
        tools = json.dumps(tools, sort_keys=True, ensure_ascii=False)
    return {
        "record_id": record_id or make_record_id(env, round_key, task_id, source, policy, sample_idx),
        "env": env,
        "task_id": task_id,
        "round": round_key,
        "sample_idx": int(sample_idx),
        "source": source,
        "policy": policy,
        "seed": None if seed is None else int(seed),
        "messages": [m if type(m) is dict and m.keys() == _MESSAGE_KEY_SET else {k: m.get(k) for k in MESSAGE_KEYS}
                     for m in messages],
        "tools": tools,
        "score": None if score is None else float(score),
        "metadata": metadata_json if metadata_json is not None else encode_metadata(metadata or {}),
        "schema_version": SCHEMA_VERSION,
    }


def records_to_batch(rows: list[dict], schema: pa.Schema = RECORD_SCHEMA) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def check_schema(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Differences between two schemas as readable strings (empty when they match)."""
    problems = []
    for field in expected:
        idx = actual.get_field_index(field.name)
        if idx < 0:
            problems.append(f"missing column {field.name!r}")
        elif not actual.field(idx).type.equals(field.type):
            problems.append(f"column {field.name!r} is {actual.field(idx).type}, expected {field.type}")
    extra = set(actual.names) - set(expected.names)
    for name in sorted(extra):
        problems.append(f"unexpected column {name!r}")
    return problems
