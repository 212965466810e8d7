"""What a replay learns about a game tree, remembered per process and keyed by history prefix.

A game is a deterministic function of its action history (chance outcomes are in
the history), so everything the replay verifier asks of a node — terminal or
chance, whose turn, the legal actions or chance outcomes, the learner's turn
prompt, the returns — is the same for every record that reaches it. ``GameTree``
keeps a trie of the nodes replays share per game (a node is remembered once a second
replay goes through its parent: see ADMIT_VISITS); a ``Walker`` follows one record's
history through it and builds a pyspiel state only when it reaches a node (or asks
for a prompt) not remembered. Only legal actions ever become children, so
a hostile history can add at most one computed node per record before it fails.
"""

import threading
from contextlib import contextmanager
from typing import Iterator

import pyspiel

from orbit.games.match import CHANCE, TERMINAL
from orbit.games.prompts import split_turn_prompt, turn_prompt

MAX_NODES = 300_000  # remembered nodes per game; past it new nodes are computed but not stored
# A new node is remembered once its parent has been gone through by this many replays: a line that
# only one record ever plays (most of a cold partition's deep nodes) is computed, used and dropped,
# so the tree holds what records share and the garbage collector does not trace the rest again and
# again. A node two records reach is remembered from the second on.
ADMIT_VISITS = 2


class Node:
    """A node's facts. The action sets are tuples of ints (a few, so ``in`` is as fast as a set's), which
    the garbage collector stops tracking after one look: a set stays tracked, and the collector traced
    every one of a growing tree again and again."""

    __slots__ = ("children", "terminal", "chance", "player", "legal", "prompts", "returns", "visits")

    def __init__(self, state: pyspiel.State):
        self.children: dict[int, "Node"] = {}
        self.visits = 0  # replays that went on from this node (the walk counts them)
        self.prompts: dict[int, tuple[str, str, str]] | None = None
        player = state.current_player()  # one call tells a terminal, a chance and a player's node apart
        self.terminal = player == TERMINAL
        self.chance: tuple[int, ...] | None = None
        self.player = -1
        self.legal: tuple[int, ...] = ()
        self.returns: tuple[float, ...] | None = None
        if self.terminal:
            self.returns = tuple(map(float, state.returns()))
        elif player == CHANCE:
            self.chance = tuple([a for a, _ in state.chance_outcomes()])
        else:
            self.player = player
            self.legal = tuple(state.legal_actions())


class GameTree:
    def __init__(self, game: pyspiel.Game):
        self.game = game
        self.root = Node(game.new_initial_state())
        self.nodes = 1

    def walker(self) -> "Walker":
        return Walker(self)


class Walker:
    """One replay's position in the tree; its pyspiel state exists only while it is needed."""

    __slots__ = ("tree", "node", "path", "state")

    def __init__(self, tree: GameTree):
        self.tree = tree
        self.node = tree.root
        self.path: list[int] = []
        self.state: pyspiel.State | None = None

    def _state(self) -> pyspiel.State:
        if self.state is None:
            state = self.tree.game.new_initial_state()
            for action in self.path:
                state.apply_action(action)
            self.state = state
        return self.state

    def advance(self, action: int) -> None:
        """Apply an action the current node allows (the caller checked it is legal)."""
        child = self.node.children.get(action)
        if child is None:
            state = self._state()
            state.apply_action(action)
            child = Node(state)
            if self.node.visits >= ADMIT_VISITS and self.tree.nodes < MAX_NODES:
                self.node.children[action] = child
                self.tree.nodes += 1
        else:
            self.state = None  # rebuilt from the path only if a later node is new
        self.node = child
        self.path.append(action)

    def prompt(self, seat: int) -> tuple[str, str, str]:
        """(turn prompt, its observation part, its legal-actions part) for ``seat`` at this node."""
        prompts = self.node.prompts
        cached = prompts.get(seat) if prompts else None
        if cached is None:
            text = turn_prompt(self._state(), seat)
            cached = (text, *split_turn_prompt(text))
            if prompts is None:
                prompts = self.node.prompts = {}
            prompts[seat] = cached
        return cached


_TREES: dict[int, GameTree] = {}
_LOCK = threading.Lock()


def game_tree(game: pyspiel.Game) -> GameTree:
    """The tree of a loaded game (``load_game`` caches games, so one tree per game and params)."""
    tree = _TREES.get(id(game))
    if tree is None or tree.game is not game:
        with _LOCK:
            tree = _TREES.get(id(game))
            if tree is None or tree.game is not game:
                tree = _TREES[id(game)] = GameTree(game)
    return tree


def clear() -> None:
    """Forget every remembered tree (tests; memory)."""
    with _LOCK:
        _TREES.clear()


@contextmanager
def admit_every_node() -> Iterator[None]:
    """Remember every node replays reach while in this block (benchmarks: a tree that holds all of them)."""
    global ADMIT_VISITS
    admit, ADMIT_VISITS = ADMIT_VISITS, 0
    try:
        yield
    finally:
        ADMIT_VISITS = admit


@contextmanager
def fresh_trees() -> Iterator[None]:
    """Replay with no tree remembered (what a fresh process meets), then put the remembered trees back."""
    with _LOCK:
        saved = dict(_TREES)
        _TREES.clear()
    try:
        yield
    finally:
        with _LOCK:
            _TREES.clear()
            _TREES.update(saved)

