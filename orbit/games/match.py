"""One match, seen from the learner's seat, as a chat trajectory.

``match_steps`` is a generator: it yields a ``LearnerTurn`` whenever the learner
must move and receives the assistant's answer text, so the same loop serves a
C++ bot (which reads ``turn.state``) and a chat policy (which reads
``turn.messages``). An unparseable or illegal answer ends the match as a loss
with a named reason.
"""

import random
from dataclasses import dataclass
from typing import Generator

import pyspiel

from orbit.games.bots import Bot
from orbit.games.prompts import parse_answer, system_prompt, turn_prompt_at
from orbit.games.tasks import GameTask, load_game
from orbit.schema import message

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


def match_steps(task: GameTask, opponent: Bot, seed: int,
                game: pyspiel.Game | None = None) -> Generator[LearnerTurn, str, MatchResult]:
    """``game`` is the task's loaded game when the caller has it (it is loaded here otherwise)."""
    game = game or load_game(task)
    state = game.new_initial_state()
    history: list[int] = []  # every action applied here, to key the remembered turn prompts
    chance_rng = None  # seeded at the first chance node: games without chance never pay for it
    messages = [message("system", system_prompt(task.game, task.seat))]
    terminated = None
    while True:
        player = state.current_player()  # one call tells a terminal, a chance and a player's node apart
        if player == TERMINAL:
            break
        if player == CHANCE:
            if chance_rng is None:
                chance_rng = random.Random(seed)
            action = sample_chance(state, chance_rng)
        elif player < 0:
            raise ValueError(f"{task.game}: a node of player {player} (simultaneous moves are not supported)")
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


def play_bot_match(task: GameTask, learner: Bot, opponent: Bot, seed: int,
                   game: pyspiel.Game | None = None) -> MatchResult:
    """Drive ``match_steps`` with a bot in the learner's seat."""
    steps = match_steps(task, opponent, seed, game)
    try:
        turn = next(steps)
        while True:
            turn = steps.send(str(learner(turn.state)))
    except StopIteration as stop:
        return stop.value
