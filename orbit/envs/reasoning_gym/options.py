"""An env's options, read and refused: which task, its config, its curriculum level(s).

Options (every key of an envs table that is not an EnvSpec field)::

    task = "leg_counting"                            # a name registered in reasoning-gym (DATASETS)
    config = { min_animals = 2, max_animals = 4 }    # the task's config keyword arguments (never seed/size)
    curriculum_level = 2                             # optional: the task's curriculum sets the config at that level
    levels = [0, 1, 2]                               # optional: round i uses levels[min(i, len - 1)]
    max_tokens = 512                                 # optional: a policy's answer budget
    answer_grammar = "integer"                       # optional: constrain a policy's reply (prompts.ANSWER_GRAMMARS)

``read_options`` checks the shapes without reasoning-gym; ``check`` (the family's hook) also asks
reasoning-gym: the task exists (a few close names otherwise), each config key is a field of its
config dataclass, the curriculum exists and sets no key the config sets too, and the dataset builds
(size 1) at every level the env can use, so its own validation accepts the values. Tasks no verifier
could check are refused too: ``composite`` and the tasks whose items are not reproducible across
processes (``UNREPRODUCIBLE``). Every refusal is an ``EnvOptionError`` naming the option by its
dotted key. A passed check is remembered.
"""

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from orbit.envs.base import EnvOptionError, EnvSpec
from orbit.envs.reasoning_gym import library
from orbit.envs.reasoning_gym.prompts import ANSWER_GRAMMARS

OPTION_KEYS = ("task", "config", "curriculum_level", "levels", "max_tokens", "answer_grammar")
RESERVED_CONFIG_KEYS = ("seed", "size")  # set per partition by the family
MAX_SIZE = 1_000_000  # tasks per partition (a dataset's size): some datasets build every item up front
MAX_LEVELS = 10_000
DEFAULT_MAX_TOKENS = 512

UNREPRODUCIBLE = frozenset({
    # reasoning-gym 0.1.25 tasks whose items differed between two processes with the same seed (they
    # depend on Python's string hash seed, or run code that draws from the global random module): a
    # verifier in another process could not regenerate them
    "codeio", "isomorphic_strings", "knight_swap", "list_functions", "polynomial_multiplication", "ransom_note",
    "word_ladder",
})
REFUSED_TASKS = {
    "composite": "mixes other tasks; declare one env per task instead",
    **{t: "its items are not reproducible across processes (they depend on Python's hash seed or on "
          "unseeded randomness), so no verifier could regenerate them" for t in UNREPRODUCIBLE},
}


@dataclass(frozen=True)
class EnvOptions:
    """An env's options as read (shapes checked, reasoning-gym not asked)."""

    task: str
    config: Mapping[str, Any]
    levels: tuple[int, ...] | None  # None: no curriculum; else every level a record may have
    per_round: bool  # levels[i] for round i (``levels``), else the one ``curriculum_level``
    max_tokens: int = DEFAULT_MAX_TOKENS
    answer_grammar: str | None = None  # a key of prompts.ANSWER_GRAMMARS: the policy's reply is constrained to it

    def level_for_round(self, round_index: int) -> int | None:
        if self.levels is None:
            return None
        return self.levels[min(max(round_index, 0), len(self.levels) - 1)] if self.per_round else self.levels[0]


def _close(word: str, names) -> str:
    near = difflib.get_close_matches(word, sorted(names), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def _level(key: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_LEVELS:
        raise EnvOptionError(key, f"expected a whole number from 0 to {MAX_LEVELS}, got {value!r}")
    return value


def read_options(spec: EnvSpec) -> EnvOptions:
    """The env's options, their shapes checked (no reasoning-gym import)."""
    options = dict(spec.options or {})
    for key in options:
        if key not in OPTION_KEYS:
            raise EnvOptionError(str(key), f"unknown option of the reasoning_gym family{_close(str(key), OPTION_KEYS)}; "
                                           f"known: {', '.join(OPTION_KEYS)}")
    task = options.get("task")
    if not isinstance(task, str) or not task:
        raise EnvOptionError("task", f"expected the name of a reasoning-gym task, got {task!r}")
    config = options.get("config", {})
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise EnvOptionError("config", f"expected a table of the task's config fields, got {config!r}")
    for key in config:
        if not isinstance(key, str):
            raise EnvOptionError("config", f"config keys are field names, got {key!r}")
        if key in RESERVED_CONFIG_KEYS:
            raise EnvOptionError(f"config.{key}", f"{key!r} is set by Orbit per partition (seed from the round, "
                                                  "size = num_tasks); remove it")
    if "curriculum_level" in options and "levels" in options:
        raise EnvOptionError("levels", "give either curriculum_level (one level) or levels (a level per round)")
    levels: tuple[int, ...] | None = None
    per_round = False
    if "curriculum_level" in options:
        levels = (_level("curriculum_level", options["curriculum_level"]),)
    elif "levels" in options:
        raw = options["levels"]
        if not isinstance(raw, (list, tuple)) or not raw:
            raise EnvOptionError("levels", f"expected a non-empty list of levels (one per round), got {raw!r}")
        levels = tuple(_level(f"levels[{i}]", v) for i, v in enumerate(raw))
        per_round = True
    max_tokens = options.get("max_tokens", DEFAULT_MAX_TOKENS)
    if type(max_tokens) is not int or not 1 <= max_tokens <= 1_000_000:
        raise EnvOptionError("max_tokens", f"expected a whole number of tokens from 1 to 1000000, got {max_tokens!r}")
    answer_grammar = options.get("answer_grammar")
    if answer_grammar is not None and answer_grammar not in ANSWER_GRAMMARS:
        raise EnvOptionError("answer_grammar", f"expected one of {', '.join(sorted(ANSWER_GRAMMARS))}, "
                                               f"got {answer_grammar!r}")
    if type(spec.num_tasks) is int and spec.num_tasks > MAX_SIZE:
        raise EnvOptionError("num_tasks", f"at most {MAX_SIZE:,} tasks per partition, got {spec.num_tasks:,}")
    return EnvOptions(task=task, config=dict(config), levels=levels, per_round=per_round, max_tokens=max_tokens,
                      answer_grammar=answer_grammar)


def curriculum_fields(task: str) -> dict[str, int]:
    """The config fields the task's curriculum sets, each with the highest level of its attribute."""
    factory = library.load()
    curriculum = factory.create_curriculum(task)
    fields: dict[str, int] = {}
    for attr in curriculum.attributes.values():
        top = len(attr.levels) - 1
        for name in (getattr(attr, "lower_field_name", None), getattr(attr, "upper_field_name", None),
                     getattr(attr, "field_name", None)):
            if name:
                fields[name] = max(fields.get(name, 0), top)
    return fields


def level_kwargs(task: str, level: int) -> dict[str, Any]:
    """The config values the task's curriculum sets at ``level`` (every attribute at that level, capped
    at its last one; ranges from the first level up, as reasoning-gym's default context makes them)."""
    factory = library.load()
    curriculum = factory.create_curriculum(task)
    curriculum.set_global_level(level)
    config = curriculum.generate_configuration()
    return {name: getattr(config, name) for name in curriculum_fields(task)}


def _guilty_key(message: str, keys) -> str | None:
    """The first config key a validation message names (``max_animals must be >= min_animals``)."""
    keys = set(keys)
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message):
        if word in keys:
            return word
    return None


_CHECKED: dict[str, None] = {}  # envs whose check passed, by their options' JSON
MAX_CHECKED = 1024


def _options_key(spec: EnvSpec) -> str:
    return json.dumps([dict(spec.options or {}), spec.num_tasks], sort_keys=True, default=repr)


def check(spec: EnvSpec) -> EnvOptions:
    """The env's options, refused with an ``EnvOptionError`` naming the option when the family cannot run them."""
    options = read_options(spec)
    key = _options_key(spec)
    if key in _CHECKED:
        return options
    factory = library.load()
    task = options.task
    if task not in factory.DATASETS:
        raise EnvOptionError("task", f"unknown reasoning-gym task {task!r}{_close(task, factory.DATASETS)}")
    if task in REFUSED_TASKS:
        raise EnvOptionError("task", f"task {task!r} is not supported: {REFUSED_TASKS[task]}")
    _, config_cls = factory.DATASETS[task]
    fields = [f.name for f in dataclasses.fields(config_cls) if f.name not in RESERVED_CONFIG_KEYS]
    for name in options.config:
        if name not in fields:
            raise EnvOptionError(f"config.{name}", f"{task} has no config field {name!r}{_close(name, fields)}; "
                                                   f"its fields: {', '.join(fields)}")
    levels: tuple[int | None, ...] = (None,)
    if options.levels is not None:
        level_key = "levels" if options.per_round else "curriculum_level"
        if not factory.has_curriculum(task):
            raise EnvOptionError(level_key, f"task {task!r} has no curriculum")
        set_by_level = curriculum_fields(task)
        for name in options.config:
            if name in set_by_level:
                raise EnvOptionError(f"config.{name}", f"{name!r} is set by the curriculum level; remove it from "
                                                       "config or drop the level")
        top = max(set_by_level.values(), default=0)
        for i, level in enumerate(options.levels):
            if level > top:
                where = f"levels[{i}]" if options.per_round else "curriculum_level"
                raise EnvOptionError(where, f"{task}'s curriculum has levels 0 to {top}, got {level}")
        levels = tuple(dict.fromkeys(options.levels))
    for level in levels:
        kwargs = dict(options.config)
        if level is not None:
            try:
                kwargs.update(level_kwargs(task, level))
            except Exception as exc:
                raise EnvOptionError("levels" if options.per_round else "curriculum_level",
                                     f"{task}'s curriculum fails at level {level}: {type(exc).__name__}: {exc}") from None
        try:
            factory.create_dataset(task, **kwargs, seed=0, size=1)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            guilty = _guilty_key(str(exc), options.config)
            where = f"config.{guilty}" if guilty else ("config" if level is None else
                                                       ("levels" if options.per_round else "curriculum_level"))
            at = "" if level is None else f" at level {level}"
            raise EnvOptionError(where, f"{task} refuses this config{at}: {text}") from None
    if len(_CHECKED) >= MAX_CHECKED:
        _CHECKED.clear()
    _CHECKED[key] = None
    return options
