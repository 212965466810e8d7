"""The env registry: Orbit's environments, built in and declared in an envs file.

The five built-in envs are the defaults; ``$ORBIT_HOME/envs.toml`` (or the file ``ORBIT_ENVS_FILE``
names) adds envs and overrides built-in ones::

    [envs.leg_counting]
    family = "reasoning_gym"          # a built-in family or one a package registers (below)
    task = "leg_counting"             # every key that is not an EnvSpec field is a family option
    config = { min_animals = 2, max_animals = 4 }
    num_tasks = 50

A table named after a built-in env without ``family`` (or with the same one) overrides its fields and
merges its options key by key; with another family it replaces the env; ``enabled = false`` switches it
off (a machine that never runs LiveWeb, say). Every declared env is checked
when the file is read (the family's ``check``): an unknown family, a bad option or a bad name is an
``EnvsFileError`` naming the file, the env and the key. The file is read again whenever it changes.

Families: the built-in ones below, plus any a package registers under the entry-point group
``orbit.families`` (``name = "module"`` or ``name = "module:OBJECT"``; a module stands for its
``FAMILY``). Entry points are loaded only when an env of theirs is declared.

An env removed from the file keeps its data: ``inactive_envs`` lists the envs the lake holds
partitions of that nobody declares any more.
"""

import dataclasses
import difflib
import hashlib
import importlib
import json
import math
import os
import sys
import sysconfig
import threading
import tomllib
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Mapping

from orbit.envs.base import EnvFamily, EnvOptionError, EnvSpec
from orbit.io.home import orbit_home
from orbit.io.keys import ENV_RE, validate_env

ENVS_FILE_NAME = "envs.toml"
ENTRY_POINT_GROUP = "orbit.families"
MAX_ENVS_FILE_BYTES = 1 << 20
MAX_NUM_TASKS = 10_000_000
MAX_SAMPLES_PER_TASK = 10_000

# family name -> module exposing ``FAMILY: EnvFamily``
BUILTIN_FAMILIES: Mapping[str, str] = {
    "openspiel": "orbit.envs.openspiel.family",
    "liveweb": "orbit.envs.liveweb.family",
    "reasoning_gym": "orbit.envs.reasoning_gym.family",
    "textarena": "orbit.envs.textarena.family",
    "math": "orbit.envs.math.family",
    "code": "orbit.envs.code.family",
}

BUILTIN_SPECS: tuple[EnvSpec, ...] = (
    EnvSpec(
        name="tic_tac_toe",
        family="openspiel",
        description="Tic-tac-toe against C++ MCTS (30 simulations); self-play learner: MCTS (200), winners kept.",
        options={
            "game": "tic_tac_toe",
            "learner": {"kind": "mcts", "simulations": 200},
            "opponent": {"kind": "mcts", "simulations": 30},
        },
        num_tasks=200,
    ),
    EnvSpec(
        name="connect_four",
        family="openspiel",
        description="Connect Four against C++ MCTS (10 simulations); self-play learner: MCTS (100), winners kept.",
        options={
            "game": "connect_four",
            "learner": {"kind": "mcts", "simulations": 100},
            "opponent": {"kind": "mcts", "simulations": 10},
        },
        num_tasks=100,
    ),
    EnvSpec(
        name="kuhn_poker",
        family="openspiel",
        description="Kuhn poker against the C++ CFR average policy; self-play learner: CFR too, winners kept.",
        options={
            "game": "kuhn_poker",
            "learner": {"kind": "cfr", "iterations": 1000},
            "opponent": {"kind": "cfr", "iterations": 1000},
        },
        num_tasks=300,
    ),
    EnvSpec(
        name="leduc_poker",
        family="openspiel",
        description="Leduc poker against the C++ CFR average policy; self-play learner: CFR too, winners kept.",
        options={
            "game": "leduc_poker",
            "learner": {"kind": "cfr", "iterations": 300},
            "opponent": {"kind": "cfr", "iterations": 300},
        },
        num_tasks=300,
    ),
    EnvSpec(
        name="liveweb",
        family="liveweb",
        description="LiveWeb: multi-site browsing questions answered by tool calls over a cached web, "
                    "teacher trajectories verified by replay.",
        options={"subtasks": 2},
        num_tasks=200,
    ),
    EnvSpec(
        name="othello",
        family="openspiel",
        description="Othello against C++ MCTS (20 simulations); self-play learner: MCTS (100), winners kept.",
        options={
            "game": "othello",
            "learner": {"kind": "mcts", "simulations": 100},
            "opponent": {"kind": "mcts", "simulations": 20},
        },
        num_tasks=40,
    ),
    EnvSpec(
        name="hex",
        family="openspiel",
        description="Hex 7x7 against C++ MCTS (50 simulations); self-play learner: MCTS (300), winners kept.",
        options={
            "game": "hex",
            "params": {"board_size": 7},
            "learner": {"kind": "mcts", "simulations": 300},
            "opponent": {"kind": "mcts", "simulations": 50},
        },
        num_tasks=100,
    ),
    EnvSpec(
        name="clobber",
        family="openspiel",
        description="Clobber 5x5 against C++ MCTS (50 simulations); self-play learner: MCTS (300), winners kept.",
        options={
            "game": "clobber",
            "params": {"rows": 5, "columns": 5},
            "learner": {"kind": "mcts", "simulations": 300},
            "opponent": {"kind": "mcts", "simulations": 50},
        },
        num_tasks=200,
    ),
    EnvSpec(
        name="liars_dice",
        family="openspiel",
        description="Liar's dice (2 players, 1 die each) against the C++ CFR+ average policy (20 iterations); "
                    "self-play learner: the best response to it, winners kept.",
        options={
            "game": "liars_dice",  # OpenSpiel's defaults: 2 players, 1 six-sided die each
            "learner": {"kind": "best_response"},
            "opponent": {"kind": "cfr_plus", "iterations": 20},
        },
        num_tasks=300,
    ),
    EnvSpec(
        name="goofspiel",
        family="openspiel",
        description="Goofspiel (5 cards, points in descending order, turn-based) against the C++ CFR+ average "
                    "policy (100 iterations); self-play learner: the win-maximising best response to it, winners kept.",
        options={
            "game": "goofspiel",
            "params": {"num_cards": 5, "points_order": "descending"},
            "learner": {"kind": "best_response"},
            "opponent": {"kind": "cfr_plus", "iterations": 100},
        },
        num_tasks=300,
    ),
    EnvSpec(
        name="gin_rummy",
        family="openspiel",
        description="Gin rummy against OpenSpiel's C++ SimpleGinRummyBot; self-play learner: the same bot, "
                    "winners kept.",
        options={
            "game": "gin_rummy",
            "learner": {"kind": "simple_gin_rummy"},
            "opponent": {"kind": "simple_gin_rummy"},
        },
        num_tasks=100,
    ),
    EnvSpec(
        name="math_sample",
        family="math",
        description="Math problems the project generates (fractions, equations, roots, sets, intervals...), "
                    "gold answers graded by math-verify in killable worker processes.",
        num_tasks=100,
    ),
    EnvSpec(
        name="code_sample",
        family="code",
        description="Python tasks written for the project, with reference solutions and hidden unit tests "
                    "run in the bubblewrap sandbox.",
        num_tasks=31,
    ),
)

# EnvSpec fields a table may set, and how each is checked; every other key is a family option
SPEC_FIELDS = ("family", "description", "num_tasks", "samples_per_task", "pass_threshold", "enabled")


class EnvsFileError(ValueError):
    """An envs file Orbit cannot use: the message names the file, the env and the key."""

    def __init__(self, path: Path | str, message: str, env: str | None = None, key: str | None = None):
        where = f"[envs.{env}]" if env is not None else ""
        if key:
            where = f"{where} {key}" if where else key
        super().__init__(f"{path}: {where}: {message}" if where else f"{path}: {message}")
        self.path, self.env, self.key = str(path), env, key


class UnknownFamily(LookupError):
    pass


def envs_file() -> Path:
    """The envs file: ``ORBIT_ENVS_FILE`` when set (and not empty), else ``$ORBIT_HOME/envs.toml``."""
    named = os.environ.get("ORBIT_ENVS_FILE", "").strip()
    return Path(named).expanduser().resolve() if named else orbit_home() / ENVS_FILE_NAME


# ---- families ----------------------------------------------------------------------------------

def family_entry_points() -> dict[str, importlib_metadata.EntryPoint]:
    """Families packages register (entry-point group ``orbit.families``), by name."""
    return {ep.name: ep for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)}


def family_names() -> list[str]:
    return sorted(set(BUILTIN_FAMILIES) | set(family_entry_points()))


_FAMILIES: dict[str, EnvFamily] = {}
_FAMILY_LOCK = threading.Lock()


def load_family(name: str) -> EnvFamily:
    """The family object called ``name``: built in, or from its entry point (loaded once)."""
    with _FAMILY_LOCK:
        if name in _FAMILIES:
            return _FAMILIES[name]
        if name in BUILTIN_FAMILIES:
            family = importlib.import_module(BUILTIN_FAMILIES[name]).FAMILY
        else:
            ep = family_entry_points().get(name)
            if ep is None:
                raise UnknownFamily(name)
            loaded = ep.load()
            family = getattr(loaded, "FAMILY", loaded)
            missing = [m for m in ("generate", "verifier") if not callable(getattr(family, m, None))]
            if missing:
                raise TypeError(f"entry point {ep.value!r} of {ENTRY_POINT_GROUP} is no env family "
                                f"(it lacks {', '.join(missing)})")
        _FAMILIES[name] = family
        return family


def family_of(spec: EnvSpec) -> EnvFamily:
    return load_family(spec.family)


# ---- the envs file -----------------------------------------------------------------------------

def _close(word: str, options) -> str:
    near = difflib.get_close_matches(word, list(options), n=3)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def _int_field(path, env, key, value, high):
    if type(value) is not int or not 1 <= value <= high:
        raise EnvsFileError(path, f"expected a whole number from 1 to {high}, got {value!r}", env, key)
    return value


def _spec_from_table(path: Path, name: str, table: Any, builtin: EnvSpec | None) -> EnvSpec | None:
    if not isinstance(name, str) or not ENV_RE.fullmatch(name):
        raise EnvsFileError(path, f"env name {name!r} must be lowercase letters, digits and _ "
                                  "(starting with a letter, at most 64)", None, None)
    if not isinstance(table, dict):
        raise EnvsFileError(path, "expected a table of settings", name)
    enabled = table.get("enabled", True)
    if type(enabled) is not bool:
        raise EnvsFileError(path, f"expected true or false, got {enabled!r}", name, "enabled")
    if not enabled:  # `enabled = false`: the env is not declared (a built-in one is switched off)
        return None
    family = table.get("family", builtin.family if builtin else None)
    if family is None:
        raise EnvsFileError(path, "missing: the env's family (one of " + ", ".join(family_names()) + ")",
                            name, "family")
    if not isinstance(family, str) or family not in family_names():
        raise EnvsFileError(path, f"unknown family {family!r}{_close(str(family), family_names())}; "
                                  f"known: {', '.join(family_names())}", name, "family")
    same = builtin is not None and builtin.family == family
    fields: dict[str, Any] = {}
    if "description" in table:
        if not isinstance(table["description"], str):
            raise EnvsFileError(path, "expected a string", name, "description")
        fields["description"] = table["description"]
    if "num_tasks" in table:
        fields["num_tasks"] = _int_field(path, name, "num_tasks", table["num_tasks"], MAX_NUM_TASKS)
    if "samples_per_task" in table:
        fields["samples_per_task"] = _int_field(path, name, "samples_per_task", table["samples_per_task"],
                                                MAX_SAMPLES_PER_TASK)
    if "pass_threshold" in table:
        value = table["pass_threshold"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 < value <= 1:
            raise EnvsFileError(path, f"expected a number in (0, 1], got {value!r}", name, "pass_threshold")
        fields["pass_threshold"] = float(value)
    options = {k: v for k, v in table.items() if k not in SPEC_FIELDS}
    if same:
        spec = dataclasses.replace(builtin, options={**builtin.options, **options}, **fields)
    else:
        if "description" not in fields:
            shown = ", ".join(f"{k}={v}" for k, v in options.items() if not isinstance(v, (dict, list)))
            fields["description"] = f"{family}: {shown}" if shown else family
        spec = EnvSpec(name=name, family=family, options=options, **fields)
    spec = dataclasses.replace(spec, source=str(path))
    try:
        family_obj = load_family(family)
    except Exception as exc:  # a package's family that does not load: named, at load
        raise EnvsFileError(path, f"family {family!r} does not load: {type(exc).__name__}: {exc}",
                            name, "family") from exc
    check = getattr(family_obj, "check", None)
    if check is not None:
        key = _check_key(spec, family_obj)
        if key in _passed_checks():
            return spec
        try:
            check(spec)
            _remember_check(key)
        except EnvOptionError as exc:
            raise EnvsFileError(path, exc.message, name, exc.key) from exc
        except Exception as exc:  # a family's check that fails otherwise still names the env
            raise EnvsFileError(path, f"{type(exc).__name__}: {exc}", name) from exc
    return spec


# ---- checks that passed, remembered across processes ---------------------------------------------
# A family's check may import its library (reasoning-gym takes seconds) and build a dataset; every
# command and every Dagster run process reads the envs file, so a check that passed is remembered in
# $ORBIT_HOME/.envs-checked.json under a key of the env's spec, the family's module file and the
# installed packages (the site-packages folder's mtime changes when a package is added, removed or
# upgraded). A changed spec, family or library is checked again.
CHECKED_FILE = ".envs-checked.json"
MAX_CHECKED = 512
_CHECKED: set[str] | None = None


def _check_key(spec: EnvSpec, family: Any) -> str:
    module = sys.modules.get(type(family).__module__)
    source = getattr(module, "__file__", None) or ""
    stamps = []
    for where in (source, sysconfig.get_paths()["purelib"]):
        try:
            stamps.append(os.stat(where).st_mtime_ns) if where else None
        except OSError:
            stamps.append(None)
    blob = json.dumps([spec.name, spec.family, spec.num_tasks, spec.samples_per_task, spec.pass_threshold,
                       spec.options, source, stamps, sys.version], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _checked_path() -> Path:
    return orbit_home() / CHECKED_FILE


def _passed_checks() -> set[str]:
    global _CHECKED
    if _CHECKED is None:
        try:
            data = json.loads(_checked_path().read_text())
            _CHECKED = {k for k in data if isinstance(k, str)} if isinstance(data, list) else set()
        except (OSError, ValueError):
            _CHECKED = set()
    return _CHECKED


def _remember_check(key: str) -> None:
    checked = _passed_checks()
    checked.add(key)
    path = _checked_path()
    if not path.parent.is_dir():  # never creates a home
        return
    keys = sorted(checked)[-MAX_CHECKED:]
    tmp = path.with_name(f".{CHECKED_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(keys))
        os.replace(tmp, path)
    except OSError:  # a read-only home: remembered in this process only
        tmp.unlink(missing_ok=True)


def read_envs_file(path: Path, base: Mapping[str, EnvSpec]) -> dict[str, EnvSpec]:
    """The envs ``base`` plus what the file at ``path`` adds or overrides."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_ENVS_FILE_BYTES + 1)
    except OSError as exc:
        raise EnvsFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_ENVS_FILE_BYTES:
        raise EnvsFileError(path, f"larger than {MAX_ENVS_FILE_BYTES} bytes")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EnvsFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise EnvsFileError(path, f"not valid TOML: {exc}") from exc
    extra = sorted(set(doc) - {"envs"})
    if extra:
        raise EnvsFileError(path, f"unknown top-level key {extra[0]!r}: envs are declared as [envs.<name>] tables",
                            key=extra[0])
    tables = doc.get("envs", {})
    if not isinstance(tables, dict):
        raise EnvsFileError(path, "expected [envs.<name>] tables", key="envs")
    out = dict(base)
    for name, table in tables.items():
        spec = _spec_from_table(path, name, table, base.get(name))
        if spec is None:
            out.pop(name, None)
        else:
            out[name] = spec
    return out


@dataclass(frozen=True)
class Registry:
    envs: Mapping[str, EnvSpec]
    file: Path
    file_exists: bool


_CACHE: dict[Path, tuple[tuple, Registry]] = {}
_CACHE_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnvsFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    return st.st_ino, st.st_size, st.st_mtime_ns


def registry(path: Path | None = None) -> Registry:
    """The declared envs, read again when the envs file changes."""
    path = envs_file() if path is None else Path(path)
    key = _file_key(path)
    with _CACHE_LOCK:
        hit = _CACHE.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
    base = {spec.name: spec for spec in BUILTIN_SPECS}
    reg = Registry(envs=base if key is None else read_envs_file(path, base), file=path, file_exists=key is not None)
    with _CACHE_LOCK:
        _CACHE[path] = (key, reg)
    return reg


def envs() -> Mapping[str, EnvSpec]:
    """Every declared env, by name: the built-in ones, then the envs file's new ones."""
    return registry().envs


def env_names() -> tuple[str, ...]:
    return tuple(envs())


def find_env(name: Any) -> EnvSpec | None:
    return envs().get(name) if isinstance(name, str) else None


def env_spec(name: str) -> EnvSpec:
    declared = envs()
    return declared[validate_env(name, tuple(declared))]


def inactive_envs(lake: Path | str) -> list[str]:
    """Envs the lake holds raw samples of that are not declared any more (their data is kept)."""
    from orbit.io.lakefs import lake_path

    root = lake_path(lake) / "raw_samples"
    declared = set(envs())
    found: set[str] = set()
    try:
        for round_dir in root.iterdir():
            if round_dir.is_dir():
                found.update(p.name for p in round_dir.iterdir() if p.is_dir() and ENV_RE.fullmatch(p.name))
    except OSError:
        return []
    return sorted(found - declared)
