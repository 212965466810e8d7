"""The fixed agents: random-legal and scripted players of each supported game.

An agent's action is a pure function of (its seed, the action's index in the episode, the game state it
may see): ``act`` draws from a generator seeded with (seed, index) (``AgentRng``) and reads the state. So
the verifier and the reward regenerate a fixed opponent's every action from the replay alone.

Scripted play, per game: TicTacToe and ConnectFour win if a move wins, else block the other player's
winning move, else (ConnectFour: a move that does not hand over a win) a random move; KuhnPoker bets or
calls with a King, checks or calls with a Queen, checks or folds with a Jack; Mastermind guesses a code
consistent with all feedback so far; Sudoku solves the visible board and fills a cell from that solution
(the puzzle's solution is unique); SimpleNegotiation accepts an offer worth more to it than it costs, else
offers some of its least valued resource for one unit of its most valued.
"""

from typing import Any, Callable

from orbit.envs.textarena import moves

AGENT_KINDS = ("random", "scripted")
MASK = (1 << 64) - 1


class AgentRng:
    """The agent's draws for one action: SplitMix64 from (seed, index), so a function of those only.
    Seeding a ``random.Random`` per action cost more than the opponent's whole move in a replay."""

    __slots__ = ("state",)

    def __init__(self, seed: int, index: int):
        self.state = ((seed & MASK) * 0x9E3779B97F4A7C15 + index) & MASK

    def next(self) -> int:
        self.state = z = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def choice(self, seq):
        """``seq[next() % len(seq)]`` (``next`` inlined: the opponent's move is on the replay's hot path)."""
        if not seq:
            raise IndexError("cannot choose from an empty sequence")
        self.state = z = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return seq[(z ^ (z >> 31)) % len(seq)]


def agent_rng(seed: int, index: int) -> AgentRng:
    """The agent's generator for the action at ``index``: a function of (seed, index) only."""
    return AgentRng(seed, index)


def act(kind: str, game: Any, env: Any, pid: int, seed: int, index: int) -> str:
    """The action text of agent ``kind`` (random or scripted) of ``game`` playing ``pid`` at action ``index``."""
    play = game.scripted if kind == "scripted" and game.scripted is not None else game.random
    return play(env, pid, agent_rng(seed, index))


def random_legal(legal: Callable[[Any, int], list[str]]) -> Callable[[Any, int, AgentRng], str]:
    """The random-legal agent of a game whose legal actions ``legal`` lists."""
    def play(env: Any, pid: int, rng: AgentRng) -> str:
        options = legal(env, pid)
        return rng.choice(options) if options else "[pass]"
    return play


# ---- TicTacToe ------------------------------------------------------------------------------

def tictactoe_random(env: Any, pid: int, rng: AgentRng) -> str:
    """``rng.choice(moves.tictactoe(env, pid))``, writing only the chosen move."""
    board = env.state.game_state["board"]
    empty = [i for i, cell in enumerate(board[0] + board[1] + board[2]) if cell == ""]
    return f"[{rng.choice(empty)}]" if empty else "[pass]"


_LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def _ttt_wins(cells: list[str], mark: str) -> list[int]:
    """Empty cells where ``mark`` completes a line."""
    found = []
    for line in _LINES:
        marks = [cells[i] for i in line]
        if marks.count(mark) == 2 and marks.count("") == 1:
            found.append(line[marks.index("")])
    return sorted(set(found))


def tictactoe_scripted(env: Any, pid: int, rng: AgentRng) -> str:
    cells = [cell for row in env.state.game_state["board"] for cell in row]
    mine, theirs = ("X", "O") if pid == 1 else ("O", "X")  # TextArena: player 1 is X, player 0 is O
    empty = [i for i, cell in enumerate(cells) if cell == ""]
    if not empty:
        return "[pass]"
    choice = (_ttt_wins(cells, mine) or _ttt_wins(cells, theirs) or [None])[0]
    return f"[{rng.choice(empty) if choice is None else choice}]"


# ---- ConnectFour ----------------------------------------------------------------------------

def _c4_drop_row(board: list[list[str]], col: int) -> int:
    for r in range(len(board) - 1, -1, -1):
        if board[r][col] == ".":
            return r
    return -1


def _c4_wins_at(board: list[list[str]], r: int, c: int, disc: str) -> bool:
    rows, cols = len(board), len(board[0])
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        total = 1
        for sign in (1, -1):
            rr, cc = r + sign * dr, c + sign * dc
            while 0 <= rr < rows and 0 <= cc < cols and board[rr][cc] == disc:
                total += 1
                rr, cc = rr + sign * dr, cc + sign * dc
        if total >= 4:
            return True
    return False


def _c4_winning_columns(board: list[list[str]], cols: list[int], disc: str) -> list[int]:
    wins = []
    for c in cols:
        r = _c4_drop_row(board, c)
        if r >= 0 and _c4_wins_at(board, r, c, disc):
            wins.append(c)
    return wins


def connect_four_random(env: Any, pid: int, rng: AgentRng) -> str:
    """``rng.choice(moves.connect_four(env, pid))``, writing only the chosen move."""
    cols = [c for c, cell in enumerate(env.state.game_state["board"][0]) if cell == "."]  # connect_four_columns
    return f"[col {rng.choice(cols)}]" if cols else "[pass]"


def connect_four_scripted(env: Any, pid: int, rng: AgentRng) -> str:
    board = env.state.game_state["board"]
    cols = moves.connect_four_columns(env)
    if not cols:
        return "[pass]"
    mine, theirs = ("X", "O") if pid == 0 else ("O", "X")  # TextArena: player 0 drops X
    choice = (_c4_winning_columns(board, cols, mine) or _c4_winning_columns(board, cols, theirs) or [None])[0]
    if choice is None:
        safe = []
        for c in cols:  # a column whose drop does not let the other player win right above it
            r = _c4_drop_row(board, c)
            if r == 0 or not _c4_wins_at(board, r - 1, c, theirs):
                safe.append(c)
        choice = rng.choice(safe or cols)
    return f"[col {choice}]"


# ---- KuhnPoker ------------------------------------------------------------------------------

def kuhn_scripted(env: Any, pid: int, rng: AgentRng) -> str:
    legal = moves.kuhn_poker(env, pid)
    card = env.state.game_state["player_cards"][pid]  # 0 = J, 1 = Q, 2 = K: its own card only
    if "[bet]" in legal:
        want = "[bet]" if card == 2 else "[check]"
    else:
        want = "[call]" if card >= 1 else "[fold]"
    return want if want in legal else (legal[0] if legal else "[check]")


# ---- Mastermind -----------------------------------------------------------------------------

def mastermind_feedback(guess: tuple[int, ...], code: tuple[int, ...]) -> tuple[int, int]:
    """(black, white) pegs of ``guess`` against ``code``, as TextArena counts them."""
    black = sum(g == c for g, c in zip(guess, code))
    rest_code = [c for g, c in zip(guess, code) if g != c]
    white = 0
    for g, c in zip(guess, code):
        if g != c and g in rest_code:
            white += 1
            rest_code.remove(g)
    return black, white


def mastermind_scripted(env: Any, pid: int, rng: AgentRng) -> str:
    history = [(tuple(e["guess"]), (e["black"], e["white"])) for e in env.state.game_state["history"]]
    consistent = [code for code in moves.mastermind_codes(env)
                  if all(mastermind_feedback(guess, code) == pegs for guess, pegs in history)]
    if not consistent:
        return random_mastermind(env, pid, rng)
    return moves.mastermind_text(rng.choice(consistent))


random_mastermind = random_legal(moves.mastermind)


# ---- Sudoku ---------------------------------------------------------------------------------

def solve_sudoku(board: list[list[int]], budget: int = 200_000) -> list[list[int]] | None:
    """A solution of ``board`` (0 = empty) by backtracking on the cell with fewest candidates; None when
    there is none (or the search exceeds ``budget`` nodes)."""
    grid = [list(row) for row in board]
    nodes = [budget]

    def search() -> bool:
        nodes[0] -= 1
        if nodes[0] < 0:
            return False
        best, best_options = None, None
        for r in range(9):
            for c in range(9):
                if grid[r][c] == 0:
                    options = moves.sudoku_allowed(grid, r, c)
                    if best_options is None or len(options) < len(best_options):
                        best, best_options = (r, c), options
                        if len(options) <= 1:
                            break
            if best_options is not None and len(best_options) <= 1:
                break
        if best is None:
            return True
        r, c = best
        for n in best_options:
            grid[r][c] = n
            if search():
                return True
        grid[r][c] = 0
        return False

    return grid if search() else None


def sudoku_scripted(env: Any, pid: int, rng: AgentRng) -> str:
    board = env.state.game_state["board"]
    solution = solve_sudoku(board)
    empty = [(r, c) for r in range(9) for c in range(9) if board[r][c] == 0]
    if solution is None or not empty:
        return random_sudoku(env, pid, rng)
    r, c = rng.choice(empty)
    return f"[{r + 1} {c + 1} {solution[r][c]}]"


random_sudoku = random_legal(moves.sudoku)


# ---- SimpleNegotiation ----------------------------------------------------------------------

def negotiation_random(env: Any, pid: int, rng: AgentRng) -> str:
    """Answer an offer made to it (accept, deny or counter, alike), else offer or pass (alike). An offer is
    drawn as ``rng.choice(moves.negotiation_offers(env, pid))`` would, writing only that one."""
    gs = env.state.game_state
    have = gs["player_resources"][pid]
    gives = moves.negotiation_gives(have)
    offer = gs.get("current_offer")
    if isinstance(offer, dict) and offer.get("to_player") == pid:  # moves.negotiation_pending
        can = all(have.get(res, 0) >= qty for res, qty in offer["requested_resources"].items())
        kinds = (["accept"] if can else []) + ["deny"] + (["offer"] if gives else [])
    else:
        kinds = ["deny", "offer"] if gives else ["deny"]
    kind = rng.choice(kinds)
    if kind == "accept":
        return "[Accept]"
    if kind == "deny":
        return "[Deny]"
    return moves.negotiation_offer_at(env, pid, rng.next() % (len(gives) * moves.PER_GIVE), gives)


def negotiation_scripted(env: Any, pid: int, rng: AgentRng) -> str:
    gs = env.state.game_state
    values, have = gs["player_values"][pid], gs["player_resources"][pid]
    offer = moves.negotiation_pending(env, pid)
    if offer is not None and moves.negotiation_can_accept(env, pid):
        gain = sum(values.get(r, 0) * q for r, q in offer["offered_resources"].items())
        cost = sum(values.get(r, 0) * q for r, q in offer["requested_resources"].items())
        if gain > cost:
            return "[Accept]"
    by_value = sorted(moves.RESOURCES, key=lambda r: (values.get(r, 0), r))
    gives = [r for r in by_value[:2] if have.get(r, 0) >= 1]
    if not gives:
        return "[Deny]"
    give, take = rng.choice(gives), rng.choice(by_value[-2:])
    if give == take:
        return "[Deny]"
    qty = max(1, min(3, (values.get(take, 0) - 1) // max(1, values.get(give, 0)), have.get(give, 0)))
    return moves.negotiation_offer(give, qty, take, 1)
