"""CFR average policies, computed once per game configuration and stored as a table.

The C++ ``pyspiel.CFRSolver`` runs the iterations; the average policy is
enumerated over every information state of the game and kept as rows
(game, params, iterations, info_state, action, prob) -- a Parquet table, never a pickle.
"""

import json
from typing import Any, Mapping

import pyarrow as pa
import pyspiel

from orbit.envs.openspiel.tasks import load_game

CFR_SCHEMA = pa.schema(
    [
        ("game", pa.string()),
        ("params", pa.string()),
        ("iterations", pa.int32()),
        ("info_state", pa.string()),
        ("action", pa.int32()),
        ("prob", pa.float64()),
    ]
)

# info_state -> (actions, probabilities)
PolicyTable = dict[str, tuple[list[int], list[float]]]


def params_key(params: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(params or {}), sort_keys=True)


def solve_cfr(game_name: str, params: Mapping[str, Any] | None, iterations: int) -> pa.Table:
    """Run CFR and return its average policy over every information state."""
    game = load_game(game_name, params)
    solver = pyspiel.CFRSolver(game)
    for _ in range(iterations):
        solver.evaluate_and_update_policy()
    average = solver.average_policy()
    rows: dict[str, list[tuple[int, float]]] = {}
    stack = [game.new_initial_state()]
    while stack:
        state = stack.pop()
        if state.is_terminal():
            continue
        if state.is_chance_node():
            for action, _ in state.chance_outcomes():
                stack.append(state.child(action))
            continue
        player = state.current_player()
        info = state.information_state_string(player)
        if info not in rows:
            rows[info] = [(a, p) for a, p in average.get_state_policy(state)]
        for action in state.legal_actions():
            stack.append(state.child(action))
    infos, actions, probs = [], [], []
    for info in sorted(rows):
        for action, prob in rows[info]:
            infos.append(info)
            actions.append(action)
            probs.append(prob)
    n = len(infos)
    return pa.table(
        {
            "game": [game_name] * n,
            "params": [params_key(params)] * n,
            "iterations": [iterations] * n,
            "info_state": infos,
            "action": actions,
            "prob": probs,
        },
        schema=CFR_SCHEMA,
    )


def policy_table(table: pa.Table, game_name: str, params: Mapping[str, Any] | None, iterations: int) -> PolicyTable:
    """The rows of one game configuration as a lookup dict; KeyError when absent."""
    key = params_key(params)
    out: PolicyTable = {}
    for row in table.to_pylist():
        if row["game"] == game_name and row["params"] == key and row["iterations"] == iterations:
            actions, probs = out.setdefault(row["info_state"], ([], []))
            actions.append(row["action"])
            probs.append(row["prob"])
    if not out:
        raise KeyError(f"no CFR policy for {game_name} {key} at {iterations} iterations")
    return out
