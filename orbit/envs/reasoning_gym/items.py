"""Tasks as specs, and their items regenerated from them (deterministically, through bounded caches).

A partition's items come from one dataset: the env's task and effective config (at the round's
curriculum level, if the env declares one), ``seed = dataset_seed(env, round, base_seed)`` and
``size = num_tasks``; item ``i`` is ``dataset[i]``. A record carries the spec
``{"task", "config", "seed", "size", "index"[, "level"]}`` (``config``: every field of the task's
config dataclass but seed and size, as JSON) and the task id ``<task>-<stable_hash(spec)[:12]>-i<index>``.
Some datasets build their items when constructed, depending on the size, so an item is always
regenerated with the size it was made with.

Seeds have 31 bits: ``pool_matrix`` seeds numpy with ``seed + index``, which must stay below 2**32.

Built datasets (``MAX_DATASETS``) and items with their task ids (``MAX_ITEMS``) are remembered per
process, oldest out first; generation fills the item cache, so a verifier in the same process (or the
reward scoring many completions of one task) regenerates nothing. The caches are module state:
pickling a verifier never carries them.
"""

import dataclasses
import datetime
import enum
import hashlib
import json
import math
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, Mapping

from orbit.envs.base import EnvSpec
from orbit.envs.reasoning_gym import library
from orbit.envs.reasoning_gym.options import RESERVED_CONFIG_KEYS, EnvOptions, check, level_kwargs
from orbit.io.keys import is_round_key, round_index
from orbit.io.schema import stable_hash

SEED_BITS = 31
MAX_SEED = 2**SEED_BITS - 1
MAX_DATASETS = 32
MAX_ITEMS = 32_768
MAX_RESOLVED = 256

_COMPACT = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))  # stable_hash's JSON
_SPACED = json.JSONEncoder(sort_keys=True, ensure_ascii=False)  # encode_metadata's JSON


def dataset_seed(env_name: str, round_key: str, base_seed: int) -> int:
    """The partition's dataset seed: 31 bits of ``stable_hash("reasoning_gym", env, round, base_seed)``."""
    return int(stable_hash("reasoning_gym", env_name, round_key, int(base_seed), length=8), 16) >> (32 - SEED_BITS)


def plain_json(value: Any) -> Any:
    """A config value as JSON data: tuples and sets as lists, enums by value, dates and times as ISO text,
    anything else unknown as its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, enum.Enum):
        return plain_json(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain_json(v) for v in value), key=repr)
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_json(dataclasses.asdict(value))
    return str(value)


@dataclass(frozen=True)
class LevelConfig:
    """The env's task at one curriculum level (``level`` None: the env has no curriculum option).

    ``kwargs``: what ``create_dataset`` gets besides seed and size; ``config``: the effective config
    as JSON data (every field but seed and size) and its two JSON texts; ``types``: the type of each
    top-level value, in key order, when every value is a finite scalar (a record's config written in
    that order is then compared by value and type without encoding it), else None."""

    task: str
    level: int | None
    kwargs: Mapping[str, Any]
    kwargs_key: str
    cache_key: tuple
    config: Mapping[str, Any]
    config_compact: str
    config_spaced: str
    types: tuple[type, ...] | None

    def spec(self, seed: int, size: int, index: int) -> dict:
        spec = {"task": self.task, "config": dict(self.config), "seed": seed, "size": size, "index": index}
        if self.level is not None:
            spec["level"] = self.level
        return spec

    def task_id(self, seed: int, size: int, index: int) -> str:
        """``f"{task}-{stable_hash(spec, length=12)}-i{index}"``."""
        return Partition(self, seed, size).task_id(index)

    def same_config(self, config: Any) -> bool:
        """Is ``config`` (a record's, parsed JSON) this effective config, value for value and type for type?"""
        if type(config) is not dict:
            return False
        if self.types is not None and config == self.config and tuple(map(type, config.values())) == self.types:
            return True  # equal values, and each of the same type, keys in the same order (as written)
        try:
            return _COMPACT.encode(config) == self.config_compact
        except (TypeError, ValueError, RecursionError):
            return False


class Partition:
    """The specs of one dataset's items (a level config, seed and size), as text made from parts
    encoded once: ``task_id(i)`` and ``metadata_spec(i)`` (the spec as ``encode_metadata`` writes it)."""

    __slots__ = ("level", "seed", "size", "key", "_id_head", "_id_tail", "_meta_head", "_meta_tail")

    def __init__(self, level: LevelConfig, seed: int, size: int):
        self.level, self.seed, self.size = level, int(seed), int(size)
        self.key = (level.cache_key, self.seed, self.size)  # its items' cache keys are (key, index)
        task = encode_basestring(level.task)
        compact_level = "" if level.level is None else f'"level":{level.level},'
        spaced_level = "" if level.level is None else f'"level": {level.level}, '
        # stable_hash's JSON of (spec,): keys sorted (config, index, level, seed, size, task), no spaces
        self._id_head = f'[{{"config":{level.config_compact},"index":'
        self._id_tail = f',{compact_level}"seed":{self.seed},"size":{self.size},"task":{task}}}]'
        self._meta_head = f'{{"config": {level.config_spaced}, "index": '
        self._meta_tail = f', {spaced_level}"seed": {self.seed}, "size": {self.size}, "task": {task}}}'

    def task_id(self, index: int) -> str:
        blob = f"{self._id_head}{index}{self._id_tail}".encode("utf-8", "surrogatepass")
        return f"{self.level.task}-{hashlib.sha256(blob).hexdigest()[:12]}-i{index}"

    def metadata_spec(self, index: int) -> str:
        return f"{self._meta_head}{index}{self._meta_tail}"


def _level_config(task: str, config_cls, kwargs: dict, level: int | None) -> LevelConfig:
    effective = dataclasses.asdict(config_cls(**kwargs))
    for key in RESERVED_CONFIG_KEYS:
        effective.pop(key, None)
    config = plain_json(effective)
    compact = _COMPACT.encode(config)
    config = json.loads(compact)  # exactly what a record's metadata parses back to
    flat = all(v is None or isinstance(v, (bool, int, float, str)) for v in config.values())
    types = tuple(type(v) for v in config.values()) if flat and not any(
        isinstance(v, float) and not math.isfinite(v) for v in config.values()) else None
    kwargs_key = _COMPACT.encode(plain_json(kwargs))
    return LevelConfig(task=task, level=level, kwargs=dict(kwargs), kwargs_key=kwargs_key,
                       cache_key=(task, kwargs_key, level), config=config, config_compact=compact,
                       config_spaced=_SPACED.encode(config), types=types)


@dataclass(frozen=True)
class ResolvedEnv:
    """An env's task at every level its records may have (``levels``: level or None -> LevelConfig)."""

    env: str
    options: EnvOptions
    levels: Mapping[int | None, LevelConfig]

    def level_for_round(self, round_key: str) -> LevelConfig:
        if self.options.levels is None:
            return self.levels[None]
        if self.options.per_round and not is_round_key(round_key):
            raise ValueError(f"env {self.env!r} sets a curriculum level per round (levels), but {round_key!r} "
                             "is no round key ('r' and four digits)")
        index = round_index(round_key) if self.options.per_round else 0
        return self.levels[self.options.level_for_round(index)]


_RESOLVED: dict[str, ResolvedEnv] = {}


def resolve(spec: EnvSpec) -> ResolvedEnv:
    """The env's task at each of its levels; ``check`` first (an ``EnvOptionError`` for options it refuses)."""
    key = json.dumps([spec.name, dict(spec.options or {}), spec.num_tasks], sort_keys=True, default=repr)
    found = _RESOLVED.get(key)
    if found is not None:
        return found
    options = check(spec)
    factory = library.load()
    _, config_cls = factory.DATASETS[options.task]
    levels: dict[int | None, LevelConfig] = {}
    for level in (None,) if options.levels is None else dict.fromkeys(options.levels):
        kwargs = dict(options.config)
        if level is not None:
            kwargs.update(level_kwargs(options.task, level))
        levels[level] = _level_config(options.task, config_cls, kwargs, level)
    resolved = ResolvedEnv(env=spec.name, options=options, levels=levels)
    if len(_RESOLVED) >= MAX_RESOLVED:
        _RESOLVED.clear()
    _RESOLVED[key] = resolved
    return resolved


# ---- datasets and items, remembered ------------------------------------------------------------

_DATASETS: dict[tuple, Any] = {}
_ITEMS: dict[tuple, tuple[dict, str]] = {}  # ((config key, seed, size), index) -> (item, task id)


def clear_caches() -> None:
    """Forget every built dataset and item (what a fresh process starts with)."""
    _DATASETS.clear()
    _ITEMS.clear()


def dataset(level: LevelConfig, seed: int, size: int):
    """The task's dataset for (config, seed, size), built once per process (``MAX_DATASETS`` remembered)."""
    key = (level.task, level.kwargs_key, seed, size)
    found = _DATASETS.get(key)
    if found is None:
        found = library.load().create_dataset(level.task, **level.kwargs, seed=seed, size=size)
        if len(_DATASETS) >= MAX_DATASETS:
            del _DATASETS[next(iter(_DATASETS))]
        _DATASETS[key] = found
    return found


def cached_entry(part: Partition, index: int) -> tuple[dict, str] | None:
    """``entry(part, index)`` if this process made it already, else None (nothing is built)."""
    return _ITEMS.get((part.key, index))


def entry(part: Partition, index: int) -> tuple[dict, str]:
    """(item ``index`` of the partition's dataset, its task id), made once per process (``MAX_ITEMS``
    remembered)."""
    key = (part.key, index)
    found = _ITEMS.get(key)
    if found is None:
        found = (dataset(part.level, part.seed, part.size)[index], part.task_id(index))
        if len(_ITEMS) >= MAX_ITEMS:
            del _ITEMS[next(iter(_ITEMS))]
        _ITEMS[key] = found
    return found


def entries(part: Partition, start: int, stop: int) -> list[tuple[dict, str]]:
    """``[entry(part, i) for i in range(start, stop)]``, in one loop (what generation makes)."""
    head, seed, size = part.key, part.seed, part.size
    get = _ITEMS.get
    built = None
    out = []
    for i in range(start, stop):
        key = (head, i)
        found = get(key)
        if found is None:
            if built is None:
                built = dataset(part.level, seed, size)
            found = (built[i], part.task_id(i))
            if len(_ITEMS) >= MAX_ITEMS:
                del _ITEMS[next(iter(_ITEMS))]
            _ITEMS[key] = found
        out.append(found)
    return out


def item(level: LevelConfig, seed: int, size: int, index: int) -> dict:
    """Item ``index`` of the dataset (``entry``)."""
    return entry(Partition(level, seed, size), index)[0]


@dataclass(frozen=True)
class Task:
    """One task of a partition, as a policy plays it."""

    task_id: str
    level: LevelConfig
    seed: int
    size: int
    index: int
    question: str
    answer: Any

    @property
    def spec(self) -> dict:
        return self.level.spec(self.seed, self.size, self.index)


def partition_tasks(resolved: ResolvedEnv, round_key: str, base_seed: int, num_tasks: int) -> list[Task]:
    """The partition's tasks (items 0..num_tasks-1 of its dataset)."""
    part = Partition(resolved.level_for_round(round_key), dataset_seed(resolved.env, round_key, base_seed),
                     int(num_tasks))
    tasks = []
    for i in range(part.size):
        found, task_id = entry(part, i)
        tasks.append(Task(task_id=task_id, level=part.level, seed=part.seed, size=part.size, index=i,
                          question=found["question"], answer=found["answer"]))
    return tasks
