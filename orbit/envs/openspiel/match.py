"""One match, seen from the learner's seat, as a chat trajectory.

``match_steps`` is a generator: it yields a ``LearnerTurn`` whenever the learner
must move and receives the assistant's answer text; a chat policy reads
``turn.messages``. An unparseable or illegal answer ends the match as a loss
with a named reason.

A bot in the learner's seat needs no text to move: ``play_bots`` plays its match
the way ``match_steps`` would, keeping only the history and where and what the
learner answered, and ``bot_chat`` writes the same messages from those afterwards
(a self-play chunk writes them all after its matches, between which the searches
evict this code and its data).
"""

import random
from dataclasses import dataclass
from typing import Generator

import pyspiel

from orbit.envs.openspiel.bots import Bot
from orbit.envs.openspiel.prompts import game_text, parse_answer, prompt_for, system_prompt, turn_prompt_at
from orbit.envs.openspiel.tasks import GameTask, load_game, new_state
from orbit.io.plain_messages import chat_order
from orbit.io.schema import message

TERMINAL, CHANCE = int(pyspiel.PlayerId.TERMINAL), int(pyspiel.PlayerId.CHANCE)


@dataclass(slots=True)
class LearnerTurn:
    state: pyspiel.State
    messages: list[dict]


@dataclass
class MatchResult:
    messages: list[dict]
    history: list[int]
    returns: list[float] | None
    terminated: str | None

    def learner_score(self, seat: int) -> float:
        return learner_score(self.returns, seat)


def learner_score(returns: list[float] | None, seat: int) -> float:
    """(return + 1) / 2 clipped to [0, 1]; 0 for a match the learner forfeited."""
    if returns is None:
        return 0.0
    return min(1.0, max(0.0, (returns[seat] + 1.0) / 2.0))


def sample_chance(state: pyspiel.State, rng: random.Random) -> int:
    actions, probs = zip(*state.chance_outcomes())
    return rng.choices(actions, weights=probs, k=1)[0]


def no_player_action(task: GameTask, state: pyspiel.State, player: int, rng: random.Random | None,
                     seed: int) -> tuple[int, random.Random]:
    """(action, rng) at a node where no player moves (``player`` < 0, not terminal): a chance outcome
    drawn with ``rng``, which is seeded with ``seed`` at the match's first chance node (games without
    chance never pay for it). A simultaneous-move node is refused."""
    if player != CHANCE:
        raise ValueError(f"{task.game}: a node of player {player} (simultaneous moves are not supported)")
    if rng is None:
        rng = random.Random(seed)
    return sample_chance(state, rng), rng


def match_steps(task: GameTask, opponent: Bot, seed: int,
                game: pyspiel.Game | None = None) -> Generator[LearnerTurn, str, MatchResult]:
    """``game`` is the task's loaded game when the caller has it (it is loaded here otherwise)."""
    game = game or load_game(task)
    state = new_state(game)
    history: list[int] = []  # every action applied here, to key the remembered turn prompts
    chance_rng = None  # made at the first chance node (no_player_action)
    messages = [message("system", system_prompt(task.game, task.seat))]
    terminated = None
    while True:
        player = state.current_player()  # one call tells a terminal, a chance and a player's node apart
        if player == TERMINAL:
            break
        if player < 0:
            action, chance_rng = no_player_action(task, state, player, chance_rng, seed)
        elif player == task.seat:
            messages.append(message("user", turn_prompt_at(state, player, game, tuple(history))))
            answer = yield LearnerTurn(state, messages)
            messages.append(message("assistant", answer))
            action = parse_answer(answer)
            if action is None:
                terminated = "answer.unparseable"
            elif action not in state.legal_actions(player):
                terminated = "action.illegal"
            if terminated:
                break
        else:
            action = opponent(state)
        state.apply_action(action)
        history.append(action)
    returns = None if terminated else [float(r) for r in state.returns()]
    return MatchResult(messages=messages, history=history, returns=returns, terminated=terminated)


@dataclass(slots=True)
class BotMatch:
    """A match with a bot in the learner's seat, as played. ``turns``: the length of the history at
    each learner turn; ``answers``: the learner's answer at each (its action, or the answer's text
    when the bot gave something other than an int); after a forfeit the last answer is not in the
    history."""
    history: list[int]
    turns: list[int]
    answers: list
    returns: list[float] | None
    terminated: str | None
    prompts: list[str] | None = None
    """The turn prompt at each learner turn, for a game that renders them in play (``PROMPTS_IN_PLAY``)."""


def play_bots(task: GameTask, learner: Bot, opponent: Bot, seed: int, game: pyspiel.Game | None = None) -> BotMatch:
    """``match_steps`` driven by a bot that answers ``str(learner(state))``, without the text: the
    same moves, chance draws, returns and reasons (``bot_chat`` writes the messages)."""
    game = game or load_game(task)
    state = new_state(game)
    seat = task.seat
    history: list[int] = []
    turns: list[int] = []
    answers: list = []
    entry = game_text(game)
    prompts = [] if entry.prompts_in_play else None
    chance_rng = None
    terminated = None
    while True:
        player = state.current_player()
        if player == TERMINAL:
            break
        if player < 0:
            action, chance_rng = no_player_action(task, state, player, chance_rng, seed)
        elif player == seat:
            if prompts is not None:
                prompts.append(prompt_for(entry, state, seat))
            action = learner(state)
            turns.append(len(history))
            if type(action) is not int:  # read back from its text, as a chat answer is
                answers.append(str(action))
                action = parse_answer(answers[-1])
                if action is None:
                    terminated = "answer.unparseable"
                    break
            else:
                answers.append(action)
            if action not in state.legal_actions(player):
                terminated = "action.illegal"
                break
        else:
            action = opponent(state)
        state.apply_action(action)
        history.append(action)
    returns = None if terminated else [float(r) for r in state.returns()]
    return BotMatch(history, turns, answers, returns, terminated, prompts)


def bot_chat(task: GameTask, game: pyspiel.Game, history: tuple[int, ...], turns: "tuple[int, ...] | list[int]",
             answers: "tuple | list", shown: "tuple[str, ...] | list[str] | None" = None) -> list[str]:
    """The contents of a bot match's messages, whose roles are ``chat_order`` of as many: the system
    prompt, then each learner turn's prompt and answer, as ``match_steps`` writes them. ``shown``: the
    turn prompts the match rendered as it played (``BotMatch.prompts``), when it did. Otherwise a turn
    prompt this process remembers is looked up; another is rendered from a replay of the history."""
    seat = task.seat
    if shown is not None:
        contents = [system_prompt(task.game, seat)]
        for text, answer in zip(shown, answers):
            contents.append(text)
            contents.append(answer if type(answer) is str else str(answer))
        return contents
    prompts = game_text(game).prompts
    contents = [system_prompt(task.game, seat)]
    state, applied = None, 0
    for at, answer in zip(turns, answers):
        prefix = history[:at]
        text = prompts.get((seat, prefix))
        if text is None:
            if state is None:
                state = new_state(game)
            for action in history[applied:at]:
                state.apply_action(action)
            applied = at
            text = turn_prompt_at(state, seat, game, prefix)
        contents.append(text)
        contents.append(answer if type(answer) is str else str(answer))
    return contents


def play_bot_match(task: GameTask, learner: Bot, opponent: Bot, seed: int,
                   game: pyspiel.Game | None = None) -> MatchResult:
    """A match with a bot in the learner's seat, messages and all."""
    game = game or load_game(task)
    played = play_bots(task, learner, opponent, seed, game)
    contents = bot_chat(task, game, tuple(played.history), played.turns, played.answers, played.prompts)
    messages = [message(role, content) for role, content in zip(chat_order(len(contents)), contents)]
    return MatchResult(messages=messages, history=played.history, returns=played.returns, terminated=played.terminated)
