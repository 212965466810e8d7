"""Partition keys: rounds (``r0000``) and env names, validated before any path is built from them.

Both are matched in full against ASCII-only patterns: ``[0-9]`` (never ``\\d``, which also
matches Arabic-Indic or full-width digits) and ``re.fullmatch`` (``$`` would accept a
trailing newline). A key that passes is safe as a folder name and has one spelling only,
so two keys never share a round's seeds.
"""

import operator
import re

ROUND_RE = re.compile(r"r[0-9]{4}", re.ASCII)
ENV_RE = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)
MAX_ROUND = 9999


class InvalidKey(ValueError):
    """A round or env key that may not be used to build a path or a partition."""


def is_round_key(key: object) -> bool:
    """True when ``key`` is a round key: exactly ``r`` and four ASCII digits."""
    return isinstance(key, str) and ROUND_RE.fullmatch(key) is not None


def is_env_name(name: object) -> bool:
    """True when ``name`` is an ASCII identifier usable as an env name (lower case, digits, ``_``)."""
    return isinstance(name, str) and ENV_RE.fullmatch(name) is not None


def round_key(index: int) -> str:
    if isinstance(index, bool):
        raise InvalidKey(f"round index {index!r} is not an integer")
    try:
        index = operator.index(index)
    except TypeError:
        raise InvalidKey(f"round index {index!r} is not an integer") from None
    if not 0 <= index <= MAX_ROUND:
        raise InvalidKey(f"round index {index!r} is outside 0..{MAX_ROUND}")
    return f"r{index:04d}"


def round_index(key: str) -> int:
    return int(validate_round(key)[1:])


def validate_round(key: str) -> str:
    if not is_round_key(key):
        raise InvalidKey(f"invalid round key {key!r}: expected 'r' followed by four ASCII digits, e.g. 'r0000'")
    return key


def validate_env(name: str, known: "tuple[str, ...] | list[str] | None" = None) -> str:
    if not is_env_name(name):
        raise InvalidKey(f"invalid env name {name!r}: expected lower-case ASCII letters, digits and '_'")
    if known is not None and name not in known:
        raise InvalidKey(f"unknown env {name!r}; registered envs: {', '.join(known)}")
    return name


def previous_round(key: str) -> str | None:
    idx = round_index(key)
    return None if idx == 0 else round_key(idx - 1)


TASKS_PER_ROUND_SEED_SPACE = 1_000_000


def round_base_seed(index: int) -> int:
    """First task seed of round ``index`` when tasks are not pinned: every round draws fresh tasks."""
    return int(index) * TASKS_PER_ROUND_SEED_SPACE
