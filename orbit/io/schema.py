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

# Filtered rows (``filtered_dataset``, ``training_set``) add the dedup stage's columns
# (``orbit.stages.dedup``): ``dedup_key`` (hex of sha256(env, canonical trajectory)[:16]), ``minhash``
# (the MinHash signature of the assistant turns; null when they hold no text), and how many rows the
# kept row absorbed as exact (``dropped_exact``) and near (``dropped_near``) duplicates.
DEDUP_EXTRA_FIELDS = [
    pa.field("dedup_key", pa.string()),
    pa.field("minhash", pa.list_(pa.uint32())),
    pa.field("dropped_exact", pa.int32()),
    pa.field("dropped_near", pa.int32()),
]
FILTERED_SCHEMA = pa.schema(RECORD_FIELDS + VERIFIED_EXTRA_FIELDS + DEDUP_EXTRA_FIELDS)

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
    pieces = []
    for p in parts:  # strs and ints: the JSON the encoder writes for them, made directly
        if type(p) is str:
            pieces.append(encode_basestring(p))
        elif type(p) is int:
            pieces.append(int.__repr__(p))
        else:
            head = _HASH_JSON.encode(parts)[:-1] + ","
            break
    else:
        head = "[" + ",".join(pieces) + ("," if pieces else "")

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


_PLAIN_MESSAGE_KEYS = ("tool_calls", "tool_call_id", "name")  # null in a plain chat message


def chat_messages_array(message_lists: Iterable[Iterable[Mapping[str, Any]]]) -> pa.ListArray | None:
    """The ``list<MESSAGE_TYPE>`` column of these rows, made from the messages' roles and contents alone.

    Only for plain chat: every message a dict holding ``MESSAGE_KEYS`` whose tool_calls, tool_call_id
    and name are None (as ``message(role, content)`` makes them). None when one is not, so the caller
    builds the column from the rows instead. The array equals what ``records_to_batch`` makes."""
    roles: list = []
    contents: list = []
    offsets = [0]
    add_role, add_content, add_offset = roles.append, contents.append, offsets.append
    try:
        for messages in message_lists:
            for m in messages:
                if m["tool_calls"] is not None or m["tool_call_id"] is not None or m["name"] is not None:
                    return None
                add_role(m["role"])
                add_content(m["content"])
            add_offset(len(roles))
    except (KeyError, TypeError):
        return None
    return plain_chat_array(roles, contents, offsets)


def plain_chat_array(roles: list, contents: list, offsets: list[int]) -> pa.ListArray | None:
    """The ``list<MESSAGE_TYPE>`` column of plain chat rows given flat: every message's role and content,
    and each row's end as an offset into them (``offsets[0] == 0``). None when a role or content is not a
    string (or None) or the offsets overflow int32: the caller builds the column from the rows then."""
    if offsets[-1] > 2**31 - 1:
        return None
    n = len(roles)
    try:
        children = [pa.array(roles, pa.string()), pa.array(contents, pa.string())]
    except (pa.ArrowException, TypeError, ValueError):  # a role or content that is not a string
        return None
    children += [pa.nulls(n, MESSAGE_TYPE.field(key).type) for key in _PLAIN_MESSAGE_KEYS]
    structs = pa.StructArray.from_arrays(children, fields=list(MESSAGE_TYPE))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), structs, type=pa.list_(MESSAGE_TYPE))


def batch_from_columns(columns: Mapping[str, Any], num_rows: int, schema: pa.Schema = RECORD_SCHEMA) -> pa.RecordBatch:
    """A batch of ``schema`` from one entry per field: an Arrow array or a list of ``num_rows`` values, or
    one value (str, int, float or None) that every row holds. It equals ``records_to_batch`` of the rows
    those columns describe, without making a dict per row."""
    if set(columns) != set(schema.names):
        raise ValueError(f"columns {sorted(columns)} do not match the schema's {schema.names}")
    arrays = []
    for field in schema:
        value = columns[field.name]
        if isinstance(value, pa.Array):
            array = value if value.type.equals(field.type) else value.cast(field.type)
        elif isinstance(value, (list, tuple)):
            array = pa.array(value, field.type)
        else:
            array = pa.repeat(pa.scalar(value, field.type), num_rows)
        if len(array) != num_rows:
            raise ValueError(f"column {field.name!r} has {len(array)} values for {num_rows} rows")
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


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
