"""The env options of the textarena family, checked once at load and read the same way everywhere.

``env_id`` (required, a supported TextArena id), ``opponent`` (two-player games: ``random`` (default),
``scripted`` or ``self``, the policy itself), ``learner`` (who plays without a model endpoint: ``scripted``
where the game has a scripted agent (default), else ``random``), ``max_turns`` (the learner's turns an
episode may take, default 100), ``max_tokens`` (the policy's answer budget, read by the generate stage).
"""

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from orbit.envs.base import EnvOptionError
from orbit.envs.textarena.games import Game, check_env_id

OPTION_KEYS = ("env_id", "opponent", "learner", "max_turns", "max_tokens")
OPPONENTS = ("random", "scripted", "self")
LEARNERS = ("random", "scripted")
DEFAULT_MAX_TURNS = 100
MAX_MAX_TURNS = 1_000


@dataclass(frozen=True)
class Options:
    game: Game
    opponent: str
    learner: str
    max_turns: int

    @property
    def env_id(self) -> str:
        return self.game.env_id


def _whole(key: str, value: Any, high: int) -> int:
    if type(value) is not int or not 1 <= value <= high:
        raise EnvOptionError(key, f"expected a whole number from 1 to {high}, got {value!r}")
    return value


def read_options(get: Callable[[str, Any], Any], keys: Any = ()) -> Options:
    """The options ``get(key, default)`` gives (``keys``: every key set, each must be known); raises
    ``EnvOptionError`` naming the first one refused."""
    for key in keys:
        if key not in OPTION_KEYS:
            raise EnvOptionError(key, f"not an option of the textarena family (it takes {', '.join(OPTION_KEYS)})")
    game = check_env_id(get("env_id", None))
    opponent = get("opponent", "random")
    if opponent not in OPPONENTS:
        raise EnvOptionError("opponent", f"expected one of {', '.join(map(repr, OPPONENTS))}, got {opponent!r}")
    if opponent == "self" and game.num_players < 2:
        raise EnvOptionError("opponent", f"{game.env_id} is a one-player game: it has no opponent to play as 'self'")
    learner = get("learner", "scripted" if game.scripted is not None else "random")
    if learner not in LEARNERS:
        raise EnvOptionError("learner", f"expected one of {', '.join(map(repr, LEARNERS))}, got {learner!r}")
    max_turns = _whole("max_turns", get("max_turns", DEFAULT_MAX_TURNS), MAX_MAX_TURNS)
    max_tokens = get("max_tokens", None)
    if max_tokens is not None:
        _whole("max_tokens", max_tokens, 1_000_000)
    return Options(game=game, opponent=opponent, learner=learner, max_turns=max_turns)


def spec_options(options: Mapping[str, Any]) -> Options:
    return read_options(lambda key, default: options.get(key, default), keys=list(options))
