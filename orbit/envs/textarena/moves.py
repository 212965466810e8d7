"""Legal actions of each supported game, read from the (unwrapped) TextArena env's state.

Each lister takes the env and the player to move and returns action texts the game accepts, in a
fixed order. They read only what that player can see (the public board, its own card or resources,
the feedback its guesses got), never a hidden solution or the other player's private state.
"""

import itertools
from typing import Any

RESOURCES = ("Wheat", "Wood", "Sheep", "Brick", "Ore")  # SimpleNegotiation's resource names, in its order
MAX_CODES = 100_000  # Mastermind codes a lister enumerates at most (Mastermind-v0 has 360)


def tictactoe(env: Any, pid: int) -> list[str]:
    board = env.state.game_state["board"]
    return [f"[{r * 3 + c}]" for r in range(3) for c in range(3) if board[r][c] == ""]


def connect_four_columns(env: Any) -> list[int]:
    board = env.state.game_state["board"]
    return [c for c in range(env.num_cols) if board[0][c] == "."]


def connect_four(env: Any, pid: int) -> list[str]:
    return [f"[col {c}]" for c in connect_four_columns(env)]


def kuhn_poker(env: Any, pid: int) -> list[str]:
    tree = env.state.game_state.get("current_legal_action_tree")
    return [f"[{move}]" for move in tree] if isinstance(tree, dict) else []


def mastermind_codes(env: Any) -> list[tuple[int, ...]]:
    """Every code of the game's shape (length, digits 1..num_numbers, duplicates or not)."""
    gs = env.state.game_state
    digits = range(1, gs["num_numbers"] + 1)
    codes = itertools.product(digits, repeat=gs["code_length"]) if gs["duplicate_numbers"] \
        else itertools.permutations(digits, gs["code_length"])
    return list(itertools.islice(codes, MAX_CODES))


def mastermind_text(code: tuple[int, ...] | list[int]) -> str:
    return f"[{' '.join(map(str, code))}]"


def mastermind(env: Any, pid: int) -> list[str]:
    guessed = {tuple(entry["guess"]) for entry in env.state.game_state["history"]}
    return [mastermind_text(code) for code in mastermind_codes(env) if code not in guessed]


def sudoku_allowed(board: list[list[int]], r: int, c: int) -> list[int]:
    """The digits the rules allow at empty cell (r, c) of ``board`` (0 = empty)."""
    used = set(board[r]) | {board[i][c] for i in range(9)}
    br, bc = 3 * (r // 3), 3 * (c // 3)
    used |= {board[i][j] for i in range(br, br + 3) for j in range(bc, bc + 3)}
    return [n for n in range(1, 10) if n not in used]


def sudoku(env: Any, pid: int) -> list[str]:
    """Fills of empty cells that break no rule on the visible board (the hidden solution may differ)."""
    board = env.state.game_state["board"]
    return [f"[{r + 1} {c + 1} {n}]" for r in range(9) for c in range(9) if board[r][c] == 0
            for n in sudoku_allowed(board, r, c)]


def negotiation_offer(give: str, give_qty: int, take: str, take_qty: int) -> str:
    return f"[Offer: {give_qty} {give} -> {take_qty} {take}]"


def negotiation_pending(env: Any, pid: int) -> dict | None:
    """The offer made to ``pid`` that it may answer, or None."""
    offer = env.state.game_state.get("current_offer")
    return offer if isinstance(offer, dict) and offer.get("to_player") == pid else None


def negotiation_can_accept(env: Any, pid: int) -> bool:
    offer = negotiation_pending(env, pid)
    if offer is None:
        return False
    have = env.state.game_state["player_resources"][pid]
    return all(have.get(res, 0) >= qty for res, qty in offer["requested_resources"].items())


_QUANTITIES = (1, 2)
PER_GIVE = (len(RESOURCES) - 1) * len(_QUANTITIES)  # offers per (resource given, quantity)


def negotiation_gives(have: dict) -> list[tuple[str, int]]:
    """(resource, quantity) ``pid`` can offer, holding ``have``: the offers' first halves, in order."""
    return [(give, gq) for give in RESOURCES for gq in _QUANTITIES if have.get(give, 0) >= gq]


def _gives(env: Any, pid: int) -> list[tuple[str, int]]:
    return negotiation_gives(env.state.game_state["player_resources"][pid])


def negotiation_offers(env: Any, pid: int) -> list[str]:
    """Offers of one or two units of a resource ``pid`` holds for one or two units of another."""
    return [negotiation_offer(give, gq, take, tq) for give, gq in _gives(env, pid)
            for take in RESOURCES if take != give for tq in _QUANTITIES]


def negotiation_offer_count(env: Any, pid: int) -> int:
    return len(_gives(env, pid)) * PER_GIVE


def negotiation_offer_at(env: Any, pid: int, k: int, gives: list | None = None) -> str:
    """``negotiation_offers(env, pid)[k]``, without writing the others (``gives``: ``_gives(env, pid)``)."""
    give, gq = (gives or _gives(env, pid))[k // PER_GIVE]
    rest = k % PER_GIVE
    take = [r for r in RESOURCES if r != give][rest // len(_QUANTITIES)]
    return negotiation_offer(give, gq, take, _QUANTITIES[rest % len(_QUANTITIES)])


def negotiation(env: Any, pid: int) -> list[str]:
    """Accept (when an offer to ``pid`` can be met), deny, and small offers of what ``pid`` holds."""
    moves = ["[Accept]"] if negotiation_can_accept(env, pid) else []
    return moves + ["[Deny]"] + negotiation_offers(env, pid)
