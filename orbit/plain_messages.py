"""Which rows' messages are plain chat, decided column-wise on the Arrow batch.

A plain trajectory is what most generated records hold: one to ``MAX_MESSAGES``
messages, each a non-null message whose role is system, user or assistant, whose
content is a string of at most ``MAX_CONTENT_CHARS`` characters, with no tool
calls, no ``tool_call_id`` and no ``name``; and at least one of them is an assistant
turn. No structural rule can fire on such a trajectory and it holds no tool use.

``plain_rows`` decides this for a whole batch with Arrow kernels; the verify stage
hands those rows' message lists to the rules and verifiers as ``PlainMessages``, so
they skip the per-message scans. Their messages are read as ``{"role", "content"}``
dicts (``plain_message_lists``): every other key of a plain message is null, and
rules and verifiers read messages with ``.get``. A verifier that reads only the roles
and texts (``reads_plain_texts``, the game replay) gets them as two lists instead
(``PlainTexts``, ``plain_text_lists``), with no dict made per message. Only the verify
stage makes ``PlainMessages`` and ``PlainTexts`` (a record decoded from JSON or Arrow holds
plain ``list`` objects), so a record cannot claim to be plain: its bytes are checked here
like anywhere else.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_CONTENT_CHARS = 200_000
MAX_MESSAGES = 2_000
PLAIN_ROLES = ("system", "user", "assistant")  # roles whose plain text messages no rule can fail


class PlainMessages(list):
    """A message list ``plain_rows`` found plain (see the module docstring)."""

    __slots__ = ()


class PlainTexts:
    """A trajectory ``plain_rows`` found plain, as its roles and texts only (no dict per message): what
    the verify stage hands a verifier that declares ``reads_plain_texts`` and reads nothing else of
    a plain message. Like ``PlainMessages``, only the verify stage makes it."""

    __slots__ = ("roles", "texts")

    def __init__(self, roles: list[str], texts: list[str]):
        self.roles = roles
        self.texts = texts

    def __len__(self) -> int:
        return len(self.roles)


def plain_rows(messages: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One bool per row: are the row's messages plain chat? (a ``list<MESSAGE_TYPE>`` column)."""
    if isinstance(messages, pa.ChunkedArray):
        messages = pa.concat_arrays(messages.chunks) if messages.num_chunks != 1 else messages.chunk(0)
    rows = len(messages)
    if rows == 0:
        return np.zeros(0, dtype=bool)
    lengths = pc.fill_null(pc.list_value_length(messages), 0).to_numpy(zero_copy_only=False)
    flat = messages.flatten()  # the messages of non-null rows, in order
    parent = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    role = pc.struct_field(flat, "role")
    content = pc.struct_field(flat, "content")
    ok = pc.and_kleene(
        pc.and_kleene(flat.is_valid(), pc.is_in(role, value_set=pa.array(PLAIN_ROLES))),
        pc.and_kleene(
            pc.and_kleene(content.is_valid(), pc.less_equal(pc.utf8_length(content), MAX_CONTENT_CHARS)),
            pc.and_kleene(pc.struct_field(flat, "tool_calls").is_null(),
                          pc.and_kleene(pc.struct_field(flat, "tool_call_id").is_null(),
                                        pc.struct_field(flat, "name").is_null()))))
    ok = pc.fill_null(ok, False).to_numpy(zero_copy_only=False)
    bad_per_row = np.bincount(parent[~ok], minlength=rows)
    assistant = pc.fill_null(pc.equal(role, "assistant"), False).to_numpy(zero_copy_only=False)
    assistants_per_row = np.bincount(parent[assistant], minlength=rows)
    return (bad_per_row == 0) & (assistants_per_row > 0) & (lengths >= 1) & (lengths <= MAX_MESSAGES)


PLAIN_MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])


def plain_message_lists(messages: pa.Array, plain: np.ndarray) -> list:
    """The rows' message lists: ``PlainMessages`` of role/content dicts where ``plain``, else every field."""
    values = messages.values  # the whole child array: a sliced batch's offsets point into it
    narrow = pa.ListArray.from_arrays(messages.offsets, pa.StructArray.from_arrays(
        [pc.struct_field(values, "role"), pc.struct_field(values, "content")], fields=list(PLAIN_MESSAGE_TYPE)))
    lists = [PlainMessages(m) for m in narrow.to_pylist()]  # null and other non-plain rows are replaced below
    return _with_full_rows(lists, messages, plain)


_CHAT_ORDER: dict[int, list[str]] = {}  # length -> the roles of a chat in order (shared, never modified)
MAX_SHARED_ORDER = 256  # longer role lists are made per row


def chat_order(length: int) -> list[str]:
    """``["system", "user", "assistant", "user", "assistant", ...]`` of ``length`` roles: a system
    prompt, then user/assistant turns."""
    roles = _CHAT_ORDER.get(length)
    if roles is None:
        roles = (["system"] + ["user", "assistant"] * length)[:length]
        if length <= MAX_SHARED_ORDER:
            _CHAT_ORDER[length] = roles
    return roles


def plain_text_lists(messages: pa.Array, plain: np.ndarray) -> list:
    """The rows' message lists: ``PlainTexts`` where ``plain``, else every field (as ``plain_message_lists``).

    A row whose roles are in chat order (``chat_order``: what every generated game record holds) shares
    one list of roles with every row of its length; only the other rows' roles are read one by one."""
    offsets = messages.offsets.to_numpy(zero_copy_only=False)
    first, last = int(offsets[0]), int(offsets[-1])
    values = messages.values.slice(first, last - first)  # a sliced batch's offsets point into the whole child
    offsets = offsets - first
    texts = pc.struct_field(values, "content").to_pylist()
    role = pc.fill_null(pc.index_in(pc.struct_field(values, "role"), value_set=_ORDER_ROLES), -1)
    lengths = np.diff(offsets)
    position = np.arange(last - first) - np.repeat(offsets[:-1], lengths)
    expected = np.where(position == 0, 0, 2 - position % 2)  # system, then user (odd) and assistant (even)
    parent = np.repeat(np.arange(len(lengths)), lengths)
    out_of_order = np.bincount(parent[role.to_numpy(zero_copy_only=False) != expected], minlength=len(lengths))
    in_order = ((out_of_order == 0) & plain).tolist()  # rows not plain are replaced below
    roles = None if all(in_order) else pc.struct_field(values, "role").to_pylist()
    bounds = offsets.tolist()
    lists = [PlainTexts(chat_order(z - a) if ordered else roles[a:z], texts[a:z])
             for ordered, a, z in zip(in_order, bounds, bounds[1:])]
    return _with_full_rows(lists, messages, plain)


_ORDER_ROLES = pa.array(["system", "user", "assistant"])


def _with_full_rows(lists: list, messages: pa.Array, plain: np.ndarray) -> list:
    """``lists`` with each row that is not plain (null rows included) replaced by its full messages."""
    others = (~plain).nonzero()[0]
    if len(others):
        for i, full in zip(others.tolist(), messages.take(pa.array(others)).to_pylist()):
            lists[i] = full
    return lists
