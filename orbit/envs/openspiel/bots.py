"""The players of a match: C++ MCTS, a policy table (CFR or CFR+ average policy, best response),
OpenSpiel's C++ SimpleGinRummyBot, or uniform random.

A bot is a function ``state -> action``; each is seeded so a match is a pure
function of its seed. A bot is made for one match and asked for every move of its seat in order
(the gin rummy bot keeps its plan between moves once it knocks).
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
        entry = table.get(state.information_state_string(state.current_player()))
        if entry is None:  # a state the table never reaches
            return rng.choice(state.legal_actions())
        actions, probs = entry
        return rng.choices(actions, weights=probs, k=1)[0]

    return step


def simple_gin_rummy_bot(game: pyspiel.Game) -> Bot:
    """OpenSpiel's C++ SimpleGinRummyBot (``pyspiel.make_simple_gin_rummy_bot``): deterministic; one
    C++ bot per seat it plays, made at its first move (the bot needs its seat)."""
    params = game.get_parameters()
    bots: dict[int, Any] = {}

    def step(state: pyspiel.State) -> int:
        player = state.current_player()
        bot = bots.get(player)
        if bot is None:
            bot = bots[player] = pyspiel.make_simple_gin_rummy_bot(params, player)
        return bot.step(state)

    return step


TABLE_KINDS = ("cfr", "cfr_plus", "best_response")  # bots that play a policy table (orbit.envs.openspiel.cfr)


def make_bot(config: Mapping[str, Any], game: pyspiel.Game, seed: int, cfr_table: PolicyTable | None = None) -> Bot:
    """``cfr_table``: the policy table of a table bot (``TABLE_KINDS``: CFR, CFR+, best response)."""
    kind = config.get("kind", "random")
    if kind == "mcts":
        return mcts_bot(game, int(config.get("simulations", 100)), seed, int(config.get("rollouts", 1)))
    if kind == "random":
        return random_bot(seed)
    if kind in TABLE_KINDS:
        if cfr_table is None:
            raise ValueError(f"a {kind} bot needs its policy table")
        return cfr_bot(cfr_table, seed)
    if kind == "simple_gin_rummy":
        return simple_gin_rummy_bot(game)
    raise ValueError(f"unknown bot kind {kind!r}; expected mcts, cfr, cfr_plus, best_response, "
                     "simple_gin_rummy or random")


def bot_label(config: Mapping[str, Any]) -> str:
    kind = config.get("kind", "random")
    if kind == "mcts":
        return f"mcts{int(config.get('simulations', 100))}"
    if kind == "cfr":
        return f"cfr{int(config.get('iterations', 0))}"
    if kind == "cfr_plus":
        return f"cfr_plus{int(config.get('iterations', 0))}"
    return kind
