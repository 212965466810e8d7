"""How a game turn is shown to the learner and how its answer is read.

System prompt: the rules and the answer format. Each learner turn: a user message
with the observation text for the learner's seat and the legal actions listed as
``ID -> action string``; the assistant answers with the ID.

Answer format v3 (``ANSWER_FORMAT``; the game verifier's version names it). ``parse_answer``
reads exactly one of three whole-reply shapes, and nothing else, with the ID written as listed
(ASCII digits, no ``+`` or zero padding):

* a bare ID: ``4`` (surrounding whitespace and one trailing ``.`` allowed);
* a JSON object with the one key ``move``: ``{"move": "4"}`` or ``{"move": 4}`` (what constrained
  decoding produces: the request's JSON schema enumerates the legal IDs);
* free text ending in ``<answer>4</answer>`` (a small model may think first; the last tag counts).

Anything else (``1\n3``, ``4,5. Player 0 is...``, an essay) is ``answer.unparseable``; an ID that is
not legal is ``action.illegal``. ``ANSWER_MAX_TOKENS`` is the games' answer budget per move
(env option ``max_tokens`` overrides it).
"""

import pyspiel

from orbit.policies.answers import ANSWER_FORMAT, ANSWER_KEY, parse_answer  # noqa: F401 (the games' answer format)

LEGAL_HEADER = "Legal actions (answer with one ID):"
ANSWER_MAX_TOKENS = 48
# The longest turn prompt a game env shows, in characters (about 400 tokens of a BPE tokenizer; the
# export's estimate, UTF-8 bytes / 1.8, gives 667). gin_rummy's are the longest: its 4x13 hand grid,
# the discard pile and at most a dozen legal card actions (the tests hold every game env to it).
MAX_TURN_PROMPT_CHARS = 1_200

RULES = {
    "tic_tac_toe": "Tic-tac-toe on a 3x3 board. Player 0 plays x, player 1 plays o. "
    "Three of your marks in a row, column or diagonal wins; a full board without a line is a draw.",
    "connect_four": "Connect Four on a 6-row, 7-column board. Player 0 plays x, player 1 plays o. "
    "Drop a piece into a column; four in a row horizontally, vertically or diagonally wins.",
    "kuhn_poker": "Kuhn poker with a three-card deck (0 < 1 < 2). Each player antes 1 and gets one card. "
    "Players may Pass or Bet 1; the higher card wins the pot at showdown, and a player who passes after a bet folds.",
    "leduc_poker": "Leduc poker with a six-card deck (two suits of J, Q, K). Each player antes 1 and gets one "
    "private card; a public card is revealed after the first betting round. Players Fold, Call or Raise "
    "(2 in round one, 4 in round two). A pair with the public card wins, otherwise the higher card.",
    "othello": "Othello on an 8x8 board (columns a-h, rows 1-8). Player 0 plays Black (x) and moves first, "
    "player 1 plays White (o). Place a disc so that it brackets a straight line of opponent discs between it "
    "and one of your discs; every bracketed disc flips to your colour. With no such move you must pass. "
    "When neither player can move, the player with more discs wins; equal counts are a draw.",
    "hex": "Hex on a rhombus of hexagonal cells (columns a, b, c, ..., rows 1, 2, 3, ...). Player 0 (x) moves "
    "first and wins by linking the top and bottom rows with a chain of x cells; player 1 (o) wins by linking "
    "the leftmost and rightmost columns with o cells. A cell touches up to six neighbours; there are no draws.",
    "clobber": "Clobber on a rectangular board (columns a, b, c, ..., rows 1, 2, 3, ...) that starts full of "
    "alternating stones. Player 0 moves the o stones and goes first, player 1 the x stones. A move takes one "
    "of your stones onto an orthogonally adjacent opponent stone, which is removed ('a5b5' moves from a5 to "
    "b5). A player who cannot move loses; there are no draws.",
    "liars_dice": "Liar's dice for two players, each rolling their own dice (one six-sided die each); you see "
    "only your own. Your observation is your dice, then the bids so far. A bid 'q-f' claims that at least q "
    "of all the dice show face f; a 6 is wild and counts as every face. Each bid must be higher than the "
    "last (more dice, or as many with a higher face), or you call 'Liar' on the last bid: the dice are "
    "revealed and the bidder loses if the claim is false, the caller if it is true. There are no draws.",
    "goofspiel": "Goofspiel. Each player holds bid cards 1 to N; the point cards 1 to N are put up one per "
    "turn (your observation shows the current point card and those remaining). Each turn both players bid "
    "one remaining card: player 0 bids first and player 1 bids without seeing that bid. The higher bid wins "
    "the point card (equal bids: nobody; the win sequence shows -3); bids are then revealed and spent. "
    "After the last turn the player with more points wins; equal points are a draw.",
    "gin_rummy": "Gin rummy with a 52-card deck (ranks A 2-9 T J Q K, suits s c d h) and 10-card hands; you "
    "see your own hand, the upcard, the previous upcard and the discard pile, never the opponent's hand "
    "(until it is laid down after a knock). A turn: draw the upcard or the top of the stock, then discard one card. "
    "Melds are 3+ cards of a rank or 3+ in sequence in a suit; deadwood is the unmelded cards (A 1, 2-9 face "
    "value, T J Q K 10). With deadwood 10 or less you may knock: you discard, lay your melds, the opponent "
    "lays off cards on them, and the lower deadwood scores the difference (gin, no deadwood: +25; an "
    "undercut of the knocker: +25 to the defender). A positive score wins; a game whose stock runs out is "
    "a draw.",
}


def system_prompt(game: str, seat: int) -> str:
    text = _SYSTEM_PROMPTS.get((game, seat))
    if text is None:
        text = _SYSTEM_PROMPTS[(game, seat)] = _system_prompt(game, seat)
    return text


_SYSTEM_PROMPTS: dict[tuple[str, int], str] = {}


def _system_prompt(game: str, seat: int) -> str:
    return (
        f"You are playing {game.replace('_', ' ')} as player {seat}.\n"
        f"Rules: {RULES[game]}\n"
        "On each turn you see your observation and the legal actions as 'ID -> action'. "
        "Answer with the ID of your chosen action only, for example: 4\n"
        "If you think first, end your reply with <answer>ID</answer>."
    )


# Games whose states spell an action the way the game does: ``State::ActionToString(player, action)``
# is a function of (player, action) alone (OpenSpiel's tic_tac_toe and connect_four name the mark and
# the cell or column, kuhn_poker and leduc_poker the bet or the dealt card, othello and hex the cell,
# clobber the from and to cells, liars_dice the bid, gin_rummy the card, meld or draw). Their
# legal-action lines are remembered per (player, legal actions); a test walks their trees to hold them
# to it. Any other game's lines (goofspiel's turn-based transform among them) are rendered from the
# state every time.
STATELESS_ACTION_STRINGS = frozenset({"tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker", "othello", "hex",
                                      "clobber", "liars_dice", "gin_rummy"})
# Games whose self-play matches render the learner's turn prompts as they play: a gin_rummy move takes
# 9 us to apply (a tic-tac-toe move well under 1), and its prompts, one per history, are never met again.
PROMPTS_IN_PLAY = frozenset({"gin_rummy"})
MAX_LEGAL_LINES = 4096  # remembered legal-action texts per game
MAX_TURN_PROMPTS = 200_000  # remembered turn prompts per game


class GameText:
    """What a game's prompts need to know once: where its observation comes from, (for a game of
    STATELESS_ACTION_STRINGS) its legal-action texts by (player, legal actions), and the turn prompts
    ``turn_prompt_at`` remembers by (player, history)."""

    __slots__ = ("game", "observe", "lines", "action_lines", "prompts", "prompts_in_play")

    def __init__(self, game: pyspiel.Game):
        game_type = game.get_type()
        self.game = game  # held, so the id that keys this entry is not reused while it is remembered
        # (state, player) -> the observation text: the observation string where the game has one
        self.observe = pyspiel.State.observation_string if game_type.provides_observation_string \
            else pyspiel.State.information_state_string
        self.lines: dict[tuple, str] | None = {} if game_type.short_name in STATELESS_ACTION_STRINGS else None
        # player -> action -> its ``ID -> action`` line, for a game of STATELESS_ACTION_STRINGS: a legal-action
        # set met for the first time is joined from these (games with many different sets, like hex's)
        self.action_lines: dict[int, dict[int, str]] = {}
        self.prompts: dict[tuple, str] = {}
        # a self-play match renders the learner's turn prompts while it plays (``match.play_bots``), instead
        # of replaying the history for them afterwards: for games whose moves are slow to apply
        self.prompts_in_play = game_type.short_name in PROMPTS_IN_PLAY


_GAME_TEXT: dict[int, GameText] = {}


def _remember(texts: dict, key: tuple, limit: int, render, state: pyspiel.State, player: int) -> str:
    """``texts[key]``, rendered as ``render(state, player)`` the first time; a full dict starts over."""
    text = texts.get(key)
    if text is None:
        if len(texts) >= limit:
            texts.clear()
        text = texts[key] = render(state, player)
    return text


def game_text(game: pyspiel.Game) -> GameText:
    entry = _GAME_TEXT.get(id(game))
    if entry is None or entry.game is not game:
        if len(_GAME_TEXT) >= 256:
            _GAME_TEXT.clear()
        entry = _GAME_TEXT[id(game)] = GameText(game)
    return entry


def observation_text(state: pyspiel.State, player: int) -> str:
    return game_text(state.get_game()).observe(state, player)


def render_legal_action_lines(state: pyspiel.State, player: int) -> str:
    """``ID -> action string`` per legal action, each asked of the state."""
    to_string = state.action_to_string  # one attribute lookup, and a list (a generator costs twice as much)
    return "\n".join([f"{a} -> {to_string(player, a)}" for a in state.legal_actions(player)])


def legal_action_lines(state: pyspiel.State, player: int) -> str:
    return _legal_lines(game_text(state.get_game()), state, player)


def _legal_lines(entry: GameText, state: pyspiel.State, player: int, legal: tuple[int, ...] | None = None) -> str:
    """``legal``: ``state.legal_actions(player)`` as a tuple, when the caller has it."""
    lines = entry.lines
    if lines is None:
        return render_legal_action_lines(state, player)
    key = (player, tuple(state.legal_actions(player)) if legal is None else legal)
    text = lines.get(key)
    if text is None:
        if len(lines) >= MAX_LEGAL_LINES:
            lines.clear()
        text = lines[key] = _joined_lines(entry.action_lines, state, player, key[1])
    return text


def _joined_lines(action_lines: dict, state: pyspiel.State, player: int, legal: tuple[int, ...]) -> str:
    """``render_legal_action_lines(state, player)`` for a game of STATELESS_ACTION_STRINGS, each line
    remembered per player and action."""
    lines = action_lines.get(player)
    if lines is None:
        if len(action_lines) >= MAX_LEGAL_LINES:
            action_lines.clear()
        lines = action_lines[player] = {}
    try:
        return "\n".join(map(lines.__getitem__, legal))
    except KeyError:  # an action met for the first time
        to_string = state.action_to_string
        for action in legal:
            if action not in lines:
                lines[action] = f"{action} -> {to_string(player, action)}"
        return "\n".join(map(lines.__getitem__, legal))


def turn_prompt(state: pyspiel.State, player: int) -> str:
    return prompt_for(game_text(state.get_game()), state, player)


def prompt_for(entry: GameText, state: pyspiel.State, player: int, legal: tuple[int, ...] | None = None) -> str:
    """``turn_prompt(state, player)`` given the game's entry (``game_text``) and, when the caller has
    it, ``state.legal_actions(player)`` as a tuple."""
    return (f"Observation (player {player}):\n{entry.observe(state, player)}\n"
            f"{LEGAL_HEADER}\n{_legal_lines(entry, state, player, legal)}")


def turn_prompt_at(state: pyspiel.State, player: int, game: pyspiel.Game, history: tuple[int, ...]) -> str:
    """``turn_prompt(state, player)`` for the state ``history`` reaches in ``game``, remembered per
    process: a game's state is a function of its history, and self-play matches share their openings.
    The game is held with its prompts, so its id is never reused while they are remembered."""
    return _remember(game_text(game).prompts, (player, history), MAX_TURN_PROMPTS, turn_prompt, state, player)


def split_turn_prompt(content: str) -> tuple[str, str]:
    """(observation part, legal-actions part) of a turn prompt."""
    head, sep, tail = content.partition(f"\n{LEGAL_HEADER}\n")
    return head, tail if sep else ""


def legal_ids(state: pyspiel.State, player: int) -> tuple[str, ...]:
    """The legal action IDs as strings: the enum of the constrained-decoding schema."""
    return tuple(str(a) for a in state.legal_actions(player))
