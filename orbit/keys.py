"""Partition keys: rounds (``r0000``) and env names, validated before any path is built from them."""

import re

ROUND_RE = re.compile(r"^r\d{4}$")
ENV_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class InvalidKey(ValueError):
    """A round or env key that may not be used to build a path or a partition."""


def round_key(index: int) -> str:
    if not 0 <= int(index) <= 9999:
        raise InvalidKey(f"round index {index!r} is outside 0..9999")
    return f"r{int(index):04d}"


def round_index(key: str) -> int:
    return int(validate_round(key)[1:])


def validate_round(key: str) -> str:
    if not isinstance(key, str) or not ROUND_RE.match(key):
        raise InvalidKey(f"invalid round key {key!r}: expected 'r' followed by four digits, e.g. 'r0000'")
    return key


def validate_env(name: str, known: "tuple[str, ...] | list[str] | None" = None) -> str:
    if not isinstance(name, str) or not ENV_RE.match(name):
        raise InvalidKey(f"invalid env name {name!r}: expected lower-case letters, digits and '_'")
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
