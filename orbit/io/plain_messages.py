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
_PLAIN_ROLES = pa.array(PLAIN_ROLES)


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


class FlatMessages:
    """A ``list<MESSAGE_TYPE>`` column taken apart once: the messages its rows span (``values``), each
    row's bounds in them (``offsets``, and the same as a list, ``bounds``), each message's row
    (``parent``) and role code (``role``: 0 system, 1 user, 2 assistant, -1 anything else or null).

    Fields are read with ``StructArray.field``, which keeps a field's values under a null message:
    only the messages of plain rows (which hold no null message) are ever read from them."""

    __slots__ = ("messages", "values", "offsets", "bounds", "lengths", "parent", "role")

    def __init__(self, messages: pa.Array | pa.ChunkedArray):
        if isinstance(messages, pa.ChunkedArray):
            messages = pa.concat_arrays(messages.chunks) if messages.num_chunks != 1 else messages.chunk(0)
        self.messages = messages
        offsets = messages.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        first, last = int(offsets[0]), int(offsets[-1])
        self.values = messages.values.slice(first, last - first)  # a sliced column's offsets point into the whole child
        offsets -= first
        self.offsets = offsets
        self.bounds = offsets.tolist()
        self.lengths = np.diff(offsets)
        self.parent = np.repeat(np.arange(len(self.lengths)), self.lengths)
        codes = pc.index_in(self.values.field("role"), value_set=_PLAIN_ROLES)
        self.role = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False) if codes.null_count else \
            codes.to_numpy(zero_copy_only=False)

    def per_row(self, mask: np.ndarray) -> np.ndarray:
        """How many of each row's messages ``mask`` marks."""
        return np.bincount(self.parent[mask], minlength=len(self.lengths))


def _nulls(array: pa.Array) -> np.ndarray | bool:
    """True when every value is null, else a bool per value: is it null?"""
    return True if array.null_count == len(array) else array.is_null().to_numpy(zero_copy_only=False)


def plain_rows(messages: pa.Array | pa.ChunkedArray, flat: FlatMessages | None = None) -> np.ndarray:
    """One bool per row: are the row's messages plain chat? (a ``list<MESSAGE_TYPE>`` column)."""
    flat = FlatMessages(messages) if flat is None else flat
    rows = len(flat.lengths)
    if rows == 0:
        return np.zeros(0, dtype=bool)
    values = flat.values
    ok = flat.role >= 0
    if values.null_count:
        ok &= values.is_valid().to_numpy(zero_copy_only=False)
    # a null content has no length (NaN), which is not <= the limit; a text of no more bytes than the
    # limit has no more characters either, so characters are counted only past it
    content = values.field("content")
    size = pc.binary_length(content).to_numpy(zero_copy_only=False)
    long = size > MAX_CONTENT_CHARS
    ok &= (size <= MAX_CONTENT_CHARS) | long
    if long.any():
        ok &= ~long | (pc.utf8_length(content).to_numpy(zero_copy_only=False) <= MAX_CONTENT_CHARS)
    for name in ("tool_calls", "tool_call_id", "name"):
        ok &= _nulls(values.field(name))
    plain = (flat.per_row(~ok) == 0) & (flat.per_row(flat.role == 2) > 0)  # no other message; an assistant turn
    plain &= (flat.lengths >= 1) & (flat.lengths <= MAX_MESSAGES)
    if flat.messages.null_count:
        plain &= flat.messages.is_valid().to_numpy(zero_copy_only=False)
    return plain


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


def plain_text_lists(messages: pa.Array, plain: np.ndarray, flat: FlatMessages | None = None) -> list:
    """The rows' message lists: ``PlainTexts`` where ``plain``, else every field (as ``plain_message_lists``).

    A row whose roles are in chat order (``chat_order``: what every generated game record holds) shares
    one list of roles with every row of its length; only the other rows' roles are read one by one."""
    flat = FlatMessages(messages) if flat is None else flat
    values, bounds = flat.values, flat.bounds
    texts = values.field("content").to_pylist()
    position = np.arange(len(values)) - flat.offsets[flat.parent]  # each message's place in its row
    expected = np.where(position == 0, 0, 2 - position % 2)  # system, then user (odd) and assistant (even)
    in_order = ((flat.per_row(flat.role != expected) == 0) & plain).tolist()  # rows not plain are replaced below
    roles = None if all(in_order) else values.field("role").to_pylist()
    lists = [PlainTexts(chat_order(z - a) if ordered else roles[a:z], texts[a:z])
             for ordered, a, z in zip(in_order, bounds, bounds[1:])]
    return _with_full_rows(lists, messages, plain)


def _with_full_rows(lists: list, messages: pa.Array, plain: np.ndarray) -> list:
    """``lists`` with each row that is not plain (null rows included) replaced by its full messages."""
    others = (~plain).nonzero()[0]
    if len(others):
        for i, full in zip(others.tolist(), messages.take(pa.array(others)).to_pylist()):
            lists[i] = full
    return lists
