"""The TextArena games this family supports (one table), and how to make a fresh env of one.

Every game is played unwrapped: the family does what TextArena's registered default wrappers do, the
action wrapper (``ActionFormattingWrapper``: a text with no bracket is wrapped in brackets) on each step
and the observation wrapper's text incrementally (``session``), so a turn's observation costs what is new
since the learner's last turn, not the whole game again. ``check_env_id`` holds an env id to this table;
TextArena is imported only when an env is made, or when an id outside the table needs telling apart
(unknown, unsupported, or needing a download that fails offline).
"""

import difflib
import importlib
import importlib.util
import re
from dataclasses import dataclass
from typing import Any, Callable

from orbit.envs.base import EnvOptionError
from orbit.envs.textarena import agents, moves

LLM_VIEW = "llm"  # TextArena's LLMObservationWrapper: "[GAME] ..." / "[Player 1] ..." lines
MESSAGES_VIEW = "game_messages"  # GameMessagesObservationWrapper: the game's messages, no actions or admin notes
_VIEW_WRAPPERS = {"LLMObservationWrapper": LLM_VIEW, "GameMessagesObservationWrapper": MESSAGES_VIEW}

MAX_ACTION_CHARS = 1_000
"""Longest action text the family steps: TextArena's own parsers take time growing faster than the text
(ConnectFour's ``.*\\[...`` pattern is quadratic), so a longer answer ends the episode instead."""
MAX_TOTAL_ACTION_CHARS = 200_000  # of all an episode's action texts (a replay's work stays bounded)
_SLOW_RUN = re.compile(r"[\s.]{64,}")
"""A run SimpleNegotiation's offer pattern backtracks on cubically (500 spaces after ``[Offer``: seconds)."""


@dataclass(frozen=True)
class Game:
    env_id: str
    num_players: int
    legal: Callable[[Any, int], list[str]]
    """The legal actions of the player to move (``moves``)."""
    scripted: Callable[[Any, int, Any], str] | None
    random: Callable[[Any, int, Any], str]
    example: str
    """An action in the game's format, for the answer format."""
    view: str = LLM_VIEW
    """The observation text of the env's registered default wrapper."""
    random_in_step: bool = False
    """Does a step draw from Python's global ``random`` (seeded by TextArena's reset)?"""
    slow_pattern: re.Pattern | None = None
    """Action texts the game's parser would take too long on."""

    def unsafe(self, text: str) -> bool:
        """Is ``text`` an action the family does not step (too long, or one the game's parser would stall on)?"""
        slow = self.slow_pattern
        return len(text) > MAX_ACTION_CHARS or (slow is not None and slow.search(text) is not None)


SUPPORTED: dict[str, Game] = {g.env_id: g for g in (
    Game("TicTacToe-v0", 2, moves.tictactoe, agents.tictactoe_scripted, agents.tictactoe_random, "[4]"),
    Game("ConnectFour-v0", 2, moves.connect_four, agents.connect_four_scripted, agents.connect_four_random,
         "[col 3]"),
    Game("KuhnPoker-v0", 2, moves.kuhn_poker, agents.kuhn_scripted, agents.random_legal(moves.kuhn_poker),
         "[check]", random_in_step=True),  # each round's deal shuffles with the global random
    Game("SimpleNegotiation-v0", 2, moves.negotiation, agents.negotiation_scripted, agents.negotiation_random,
         "[Offer: 2 Wheat -> 1 Ore]", view=MESSAGES_VIEW, slow_pattern=_SLOW_RUN),
    Game("Mastermind-v0", 1, moves.mastermind, agents.mastermind_scripted, agents.random_mastermind, "[1 2 3 4]"),
    Game("Sudoku-v0", 1, moves.sudoku, agents.sudoku_scripted, agents.random_sudoku, "[5 3 7]"),
)}
SUPPORTED_IDS = tuple(SUPPORTED)


def format_action(text: str) -> str:
    """What TextArena's ``ActionFormattingWrapper`` steps for ``text``."""
    return text if "[" in text or "]" in text else f"[{text}]"


_CLASSES: dict[str, tuple[type, dict]] = {}  # env id -> (env class, registered kwargs); per process


def env_class(env_id: str) -> tuple[type, dict]:
    """The registered env class and constructor arguments of ``env_id`` (imports TextArena once)."""
    found = _CLASSES.get(env_id)
    if found is None:
        from textarena.envs.registration import ENV_REGISTRY

        spec = ENV_REGISTRY[env_id]
        entry = spec.entry_point
        if isinstance(entry, str):
            module, name = entry.split(":")
            entry = getattr(importlib.import_module(module), name)
        found = _CLASSES[env_id] = (entry, dict(spec.kwargs))
    return found


def new_env(env_id: str) -> Any:
    """A fresh unwrapped env (a new instance each time: an env keeps state across resets, e.g. KuhnPoker's deck)."""
    cls, kwargs = env_class(env_id)
    env = cls(**kwargs)
    env.env_id = env_id
    return env


def registered_ids() -> list[str]:
    from textarena.envs.registration import ENV_REGISTRY

    return list(ENV_REGISTRY)


def default_view(env_id: str) -> str | None:
    """The observation view of the env's registered default wrappers, None when the family has none like it."""
    from textarena.envs.registration import ENV_REGISTRY

    names = [w.__name__ for w in ENV_REGISTRY[env_id].default_wrappers or []]
    views = [_VIEW_WRAPPERS[n] for n in names if n in _VIEW_WRAPPERS]
    if len(views) != 1 or any(n not in _VIEW_WRAPPERS and n != "ActionFormattingWrapper" for n in names):
        return None
    return views[0]


_DOWNLOAD = re.compile(r"Resource '?([\w./-]+)'? not found", re.I)


def offline_problem(env_id: str, num_players: int | None = None) -> str | None:
    """Why ``env_id`` cannot be made and reset here without a download, or None when it can.

    Makes and resets it once (seed 0): an env that reaches for the network at run time (Wordle loads
    NLTK word lists) fails here, at load, instead of mid-round."""
    import random

    saved = random.getstate()  # TextArena's reset seeds the global generator
    try:
        try:
            env = new_env(env_id)
            players = num_players or _min_players(env_id)
            env.reset(num_players=players, seed=0)
        except LookupError as exc:
            found = _DOWNLOAD.search(str(exc))
            what = f"NLTK data {found.group(1)!r}" if found else str(exc).strip().splitlines()[0][:120]
            return f"needs a download at run time ({what})"
        except OSError as exc:
            return f"needs a download at run time ({type(exc).__name__}: {str(exc)[:120]})"
        except ImportError as exc:
            return f"does not import ({str(exc)[:160]})"
        except Exception as exc:  # noqa: BLE001 - any failure to start names the env, at load
            return f"does not start ({type(exc).__name__}: {str(exc)[:160]})"
    finally:
        random.setstate(saved)
    return None


def _min_players(env_id: str) -> int:
    for players in (1, 2):
        try:
            new_env(env_id).reset(num_players=players, seed=0)
            return players
        except (AssertionError, ValueError, KeyError, TypeError):
            continue
    return 2


def check_env_id(env_id: Any) -> Game:
    """The supported game ``env_id`` names; ``EnvOptionError('env_id', ...)`` otherwise.

    A supported id needs TextArena installed (found without importing it: a valid env loads fast). Any
    other id imports TextArena to say what it is: unknown (with close ids), needing a download that fails
    offline, or registered but not supported."""
    supported = ", ".join(SUPPORTED_IDS)
    if not isinstance(env_id, str) or not env_id:
        raise EnvOptionError("env_id", f"missing: the TextArena env id, one of {supported}")
    game = SUPPORTED.get(env_id)
    if game is not None:
        if importlib.util.find_spec("textarena") is None:
            raise EnvOptionError("env_id", "the textarena package is not installed")
        return game
    try:
        registered = registered_ids()
    except Exception as exc:  # noqa: BLE001
        raise EnvOptionError("env_id", f"textarena does not import: {type(exc).__name__}: {exc}") from exc
    if env_id not in registered:
        near = difflib.get_close_matches(env_id, registered, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise EnvOptionError("env_id", f"unknown TextArena env {env_id!r}{hint}; supported: {supported}")
    problem = offline_problem(env_id)
    if problem is not None and "download" in problem:
        raise EnvOptionError("env_id", f"{env_id} {problem}, which fails offline; supported: {supported}")
    raise EnvOptionError("env_id", f"{env_id} is a TextArena env the textarena family does not support "
                                   f"(it has no legal-move lister or agents for it); supported: {supported}")
