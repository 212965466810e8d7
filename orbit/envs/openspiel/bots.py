"""The players of a match: C++ MCTS, CFR average policy, or uniform random.

A bot is a function ``state -> action``; each is seeded so a match is a pure
function of its seed.
"""

import random
from typing import Any, Callable, Mapping

import pyspiel

from orbit.envs.openspiel.cfr import PolicyTable

Bot = Callable[[pyspiel.State], int]

MCTS_UCT_C = 2.0
MCTS_MAX_MEMORY_MB = 1000


def mcts_bot(game: pyspiel.Game, simulations: int, seed: int, rollouts: int = 1) -> Bot:
    evaluator = pyspiel.RandomRolloutEvaluator(rollouts, seed)
    bot = pyspiel.MCTSBot(game, evaluator, MCTS_UCT_C, simulations, MCTS_MAX_MEMORY_MB, False, seed, False)
    return bot.step


def random_bot(seed: int) -> Bot:
    rng = random.Random(seed)

    def step(state: pyspiel.State) -> int:
        return rng.choice(state.legal_actions())

    return step


def cfr_bot(table: PolicyTable, seed: int) -> Bot:
    rng = random.Random(seed)

    def step(state: pyspiel.State) -> int:
        info = state.information_state_string(state.current_player())
        entry = table.get(info)
        legal = state.legal_actions()
        if entry is None:
            return rng.choice(legal)
        actions, probs = entry
        return rng.choices(actions, weights=probs, k=1)[0]

    return step


def make_bot(config: Mapping[str, Any], game: pyspiel.Game, seed: int, cfr_table: PolicyTable | None = None) -> Bot:
    kind = config.get("kind", "random")
    if kind == "mcts":
        return mcts_bot(game, int(config.get("simulations", 100)), seed, int(config.get("rollouts", 1)))
    if kind == "random":
        return random_bot(seed)
    if kind == "cfr":
        if cfr_table is None:
            raise ValueError("a CFR bot needs the game's CFR policy table")
        return cfr_bot(cfr_table, seed)
    raise ValueError(f"unknown bot kind {kind!r}; expected mcts, cfr or random")


def bot_label(config: Mapping[str, Any]) -> str:
    kind = config.get("kind", "random")
    if kind == "mcts":
        return f"mcts{int(config.get('simulations', 100))}"
    if kind == "cfr":
        return f"cfr{int(config.get('iterations', 0))}"
    return kind
