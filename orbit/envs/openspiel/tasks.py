"""A game task: game + parameters + seed + learner seat, and its deterministic id."""

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping

import pyspiel

from orbit.io.schema import stable_hash, stable_hashes_by_index

SUPPORTED_GAMES = ("tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker",
                   "othello", "hex", "clobber", "liars_dice", "goofspiel", "gin_rummy")
# Simultaneous-move games played through OpenSpiel's turn-based transform
# (``turn_based_simultaneous_game``): the players bid one after the other, and a player's
# observation never shows the bid another player made earlier in the same turn. A task names the
# game itself (``goofspiel``) with the game's own parameters; ``load_game`` applies the transform.
TURN_BASED_GAMES = frozenset({"goofspiel"})


MAX_TASK_SEED = 2**63 - 1


class TaskSpecError(ValueError):
    """A task spec that does not describe a playable game."""


class TaskEnvMismatch(TaskSpecError):
    """A well-formed task spec of another game or other parameters than the env's."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def canonical_params(params: Mapping[str, Any]) -> str:
    """Type-exact canonical text of game parameters (``true`` and ``1`` differ)."""
    return json.dumps(dict(params), sort_keys=True, ensure_ascii=True, separators=(",", ":"))


MAX_REMEMBERED_TASKS = 65_536


@dataclass(frozen=True)
class GameTask:
    game: str
    seed: int
    seat: int
    params: Mapping[str, Any] = field(default_factory=dict)

    @cached_property  # a task is immutable, and the verifier compares it with every record's id
    def task_id(self) -> str:
        return f"{self.game}-{_params_id(self.params)}-s{self.seed}-p{self.seat}"

    def to_json(self) -> dict:
        return {"game": self.game, "params": dict(self.params), "seed": self.seed, "seat": self.seat}

    @classmethod
    def from_json(cls, spec: Any, expect: "tuple[str, Mapping[str, Any]] | None" = None) -> "GameTask":
        """The task a spec describes; ``expect`` = (game, params) of the env the spec must belong to.

        The spec's shape and types are checked before anything is loaded, and with ``expect`` the
        game is loaded with the env's own parameters only, never with parameters read from a record.
        """
        if type(spec) is not dict and not isinstance(spec, Mapping):
            raise TaskSpecError("task spec is not an object")
        game = spec.get("game")
        if not isinstance(game, str) or game not in SUPPORTED_GAMES:
            raise TaskSpecError(f"unsupported game {game!r}"[:120])
        params = spec.get("params")
        params = {} if params is None else params
        if type(params) is not dict and not isinstance(params, Mapping):
            raise TaskSpecError("task params are not an object")
        seed, seat = spec.get("seed"), spec.get("seat")
        if not _is_int(seed) or not _is_int(seat):
            raise TaskSpecError("task seed and seat must be integers")
        if not -MAX_TASK_SEED <= seed <= MAX_TASK_SEED:
            raise TaskSpecError("task seed out of range")
        if expect is not None:
            want_game, want_params = expect
            if not params and not want_params and game == want_game:
                key = (game, seed, seat)  # the common case: default parameters; tasks repeat across samples
                task = _DEFAULT_TASKS.get(key)
                if task is None:
                    task = cls(game=game, seed=seed, seat=seat, params={})
                    if not 0 <= seat < load_game(task).num_players():
                        raise TaskSpecError(f"seat {seat} out of range for {game}")
                    if len(_DEFAULT_TASKS) >= MAX_REMEMBERED_TASKS:
                        _DEFAULT_TASKS.clear()
                    _DEFAULT_TASKS[key] = task
                return task
            scalar_key = _scalar_key(want_params) if params and want_params and game == want_game else None
            if scalar_key is not None and _same_scalars(params, want_params):
                # the env's own parameters, all of them ints, strings or bools (as canonical_params sees them)
                key = (game, seed, seat, scalar_key)
                task = _PARAM_TASKS.get(key)
                if task is None:
                    task = cls(game=game, seed=seed, seat=seat, params=dict(want_params))
                    if not 0 <= seat < load_game(task).num_players():
                        raise TaskSpecError(f"seat {seat} out of range for {game}")
                    if len(_PARAM_TASKS) >= MAX_REMEMBERED_TASKS:
                        _PARAM_TASKS.clear()
                    _PARAM_TASKS[key] = task
                return task
            if not params or not want_params:
                same = game == want_game and not params and not want_params
            else:
                try:
                    same = game == want_game and canonical_params(params) == canonical_params(want_params)
                except (TypeError, ValueError):
                    same = False
            if not same:
                raise TaskEnvMismatch(f"task is {game}, env plays {want_game} with its own parameters")
            params = want_params
        task = cls(game=game, seed=seed, seat=seat, params=dict(params))
        if not 0 <= seat < load_game(task).num_players():
            raise TaskSpecError(f"seat {seat} out of range for {game}")
        return task


def _params_id(params: Mapping[str, Any]) -> str:
    """The params part of a task id: ``default``, or the stable hash of the parameters (remembered for
    flat parameters of ints, strings and bools, the kind an env declares)."""
    if not params:
        return "default"
    key = _scalar_key(params)
    if key is None:
        return stable_hash("params", dict(params), length=8)
    text = _PARAMS_IDS.get(key)
    if text is None:
        if len(_PARAMS_IDS) >= 1024:
            _PARAMS_IDS.clear()
        text = _PARAMS_IDS[key] = stable_hash("params", dict(params), length=8)
    return text


def _scalar_key(params: Mapping[str, Any]) -> tuple | None:
    """A hashable key of flat parameters of ints, strings and bools, types included; None otherwise."""
    items = []
    for k, v in params.items():
        if type(k) is not str or type(v) not in _SCALARS:
            return None
        items.append((k, type(v).__name__, v))
    return tuple(sorted(items))


_PARAMS_IDS: dict[tuple, str] = {}
_DEFAULT_TASKS: dict[tuple[str, int, int], GameTask] = {}  # valid default-parameter tasks (immutable)
_PARAM_TASKS: dict[tuple, GameTask] = {}  # valid tasks of an env's own scalar parameters (immutable)
_SCALARS = frozenset({int, str, bool})


def _same_scalars(params: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """True when both are flat mappings of the same keys to equal ints, strings or bools of the same type:
    then their ``canonical_params`` are equal (False says nothing: the caller compares those)."""
    if len(params) != len(want):
        return False
    for key, value in want.items():
        other = params.get(key, _MISSING)
        if type(value) not in _SCALARS or type(other) is not type(value) or other != value:
            return False
    return True


_MISSING = object()
_GAMES: dict[str, pyspiel.Game] = {}
_DEFAULT_GAMES: dict[str, pyspiel.Game] = {}


def load_game(task: "GameTask | str", params: Mapping[str, Any] | None = None) -> pyspiel.Game:
    """pyspiel game for a task (cached per process: games are immutable)."""
    if isinstance(task, GameTask):
        name, params = task.game, task.params
    else:
        name = task
    plain = not params and type(name) is str  # default parameters: keyed by the name alone
    if plain:
        game = _DEFAULT_GAMES.get(name)
        if game is not None:
            return game
    key = json.dumps([name, dict(params or {})], sort_keys=True)
    game = _GAMES.get(key)
    if game is None:
        load = pyspiel.load_game_as_turn_based if name in TURN_BASED_GAMES else pyspiel.load_game
        game = load(name, dict(params or {}))
        _GAMES[key] = game
    if plain:
        _DEFAULT_GAMES[name] = game
    return game


# Games whose ``new_initial_state`` is slow: gin_rummy builds its meld tables for every new state
# (3.1 ms; a clone of an initial state takes 0.03 ms). Their states start as clones of one initial state
# per loaded game; any other game's are made new (1 us, no faster cloned).
CLONED_INITIAL_STATE_GAMES = frozenset({"gin_rummy"})
_INITIAL_STATES: dict[int, tuple[pyspiel.Game, "pyspiel.State | None"]] = {}


def new_state(game: pyspiel.Game) -> pyspiel.State:
    """``game.new_initial_state()``, as a clone of a remembered initial state where that is faster."""
    entry = _INITIAL_STATES.get(id(game))
    if entry is None or entry[0] is not game:
        if len(_INITIAL_STATES) >= 256:
            _INITIAL_STATES.clear()
        state = game.new_initial_state() if game.get_type().short_name in CLONED_INITIAL_STATE_GAMES else None
        entry = _INITIAL_STATES[id(game)] = (game, state)  # the game is held, so its id is not reused
    return game.new_initial_state() if entry[1] is None else entry[1].clone()


def match_seed(round_key: str, env: str, task_seed: int, sample_idx: int) -> int:
    """The seed of one match: a pure function of (round, env, task seed, sample index)."""
    return int(stable_hash("match", round_key, env, task_seed, sample_idx, length=15), 16) % MAX_SEED


def match_seeds(round_key: str, env: str, task_seed: int) -> Callable[[int], int]:
    """``sample_idx -> match_seed(round_key, env, task_seed, sample_idx)``, faster."""
    digest = stable_hashes_by_index("match", round_key, env, task_seed, length=15)
    return lambda sample_idx: int(digest(sample_idx), 16) % MAX_SEED


MAX_SEED = 2**31 - 16  # pyspiel seeds are 32-bit; room for the per-player offsets


def history_before_first_turn(env: str, metadata: Mapping[str, Any]) -> list[int]:
    """For games, the recorded actions before the learner's first turn (chance and opponent moves):
    what a reward needs to rebuild the state the prompt shows. Other envs: []."""
    history = metadata.get("history")
    if not isinstance(history, list) or not metadata.get("task"):
        return []
    try:
        task = GameTask.from_json(metadata["task"])
    except TaskSpecError:
        return []
    state = new_state(load_game(task))
    prefix = []
    for action in history:
        if state.is_terminal() or (not state.is_chance_node() and state.current_player() == task.seat):
            break
        prefix.append(int(action))
        state.apply_action(int(action))
    return prefix
