"""What a replay learns about a game tree, remembered per process and keyed by history prefix.

A game is a deterministic function of its action history (chance outcomes are in
the history), so everything the replay verifier asks of a node — whose turn (or
terminal, or chance), the legal actions or chance outcomes, the learner's turn
prompt, the returns — is the same for every record that reaches it. ``GameTree``
keeps a trie of the nodes replays share per game (a node is remembered once a second
replay goes through its parent: see ADMIT_VISITS). A replay follows its history
through the trie without a pyspiel state; at the first child not remembered it
builds the state from the path and goes on with the state alone (``facts``), making
no node for a line no other record has played. Only legal actions ever become
children, so a hostile history can add at most one node per record before it fails.
"""

import threading
from contextlib import contextmanager
from typing import Iterator

import pyspiel

from orbit.envs.openspiel.match import CHANCE, TERMINAL
from orbit.envs.openspiel.prompts import GameText, game_text
from orbit.envs.openspiel.tasks import new_state

MAX_NODES = 300_000  # remembered nodes per game; past it new nodes are computed but not stored
# A new node is remembered once its parent has been gone through by this many replays: a line that
# only one record ever plays (most of a cold partition's deep nodes) is computed, used and dropped,
# so the tree holds what records share and the garbage collector does not trace the rest again and
# again. A node two records reach is remembered from the second on.
ADMIT_VISITS = 2

Facts = tuple[int, tuple[int, ...], "tuple[float, ...] | None"]


def facts(state: pyspiel.State) -> Facts:
    """(player, actions, returns) of a state: the player to move (or TERMINAL, or CHANCE), its legal
    actions (the chance outcomes at a chance node, none at a terminal), the returns at a terminal.
    One ``current_player()`` call tells the three kinds apart."""
    player = state.current_player()
    if player == TERMINAL:
        return player, (), tuple(map(float, state.returns()))
    if player == CHANCE:
        return player, tuple([a for a, _ in state.chance_outcomes()]), None
    return player, tuple(state.legal_actions()), None


class Node:
    """A remembered node's facts. The action sets are tuples of ints (a few, so ``in`` is as fast as a
    set's), which the garbage collector stops tracking after one look. ``prompt`` is the turn prompt
    of the player to move, once a replay asked for it."""

    __slots__ = ("children", "player", "legal", "returns", "prompt", "visits")

    def __init__(self, player: int, legal: tuple[int, ...], returns: "tuple[float, ...] | None"):
        self.children: dict[int, "Node"] = {}
        self.player = player
        self.legal = legal
        self.returns = returns
        self.prompt: str | None = None
        self.visits = 0  # replays that went on from this node (the replay counts them)


class GameTree:
    def __init__(self, game: pyspiel.Game):
        self.game = game
        self.text: GameText = game_text(game)  # the game's prompt texts
        self.root = Node(*facts(new_state(game)))
        self.nodes = 1

    def state_at(self, path: list[int]) -> pyspiel.State:
        """The pyspiel state ``path`` reaches from the initial state (every action legal there)."""
        state = new_state(self.game)
        apply = state.apply_action
        for action in path:
            apply(action)
        return state

    def admit(self, parent: Node, action: int, child_facts: Facts) -> "Node | None":
        """The child of ``parent`` by ``action``, remembered when its parent has been gone through
        by ADMIT_VISITS replays (and the tree has room); None when it is not."""
        if parent.visits < ADMIT_VISITS or self.nodes >= MAX_NODES:
            return None
        child = parent.children[action] = Node(*child_facts)
        self.nodes += 1
        return child


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
