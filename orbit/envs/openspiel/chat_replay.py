"""A game's action history read back from its conversation: what a trainer's rollout gives the reward.

The verify stage replays a record's recorded history (every action of both sides and of chance) and
checks the conversation against it. A GRPO rollout gives the reward only the conversation: the
learner's answers are in it, while the opponent's moves and the chance outcomes show only in the next
turn prompt. ``history_from_chat`` recovers them. From the task's start and the moves before the
learner's first turn (the GRPO export's ``task_history``), it applies each answer. Then it searches
the moves nobody in the conversation made (opponent actions and chance outcomes, in action order, up
to the learner's next turn) for the one line whose prompt is the next user message.

A game that ends on a move the learner did not make (the opponent's winning move, a last forced
reply) shows its end in one closing user message, ``final_prompt``: the learner's observation of the
final state. Orbit's multi-turn rollouts end a game with it (``GameSession``), and it is matched the
same way. Without it those last moves are unknown, and the replay stops where the conversation does
(``game.not_terminal``).

The history found becomes the record's ``metadata.history`` and goes through the game verifier like
any record's. The reward's score of a rollout is therefore the verify stage's score of the same
trajectory, outcome included. Nothing here decides a score.
"""

from dataclasses import dataclass
from typing import Sequence

import pyspiel

from orbit.envs.openspiel.prompts import game_text, parse_answer, turn_prompt
from orbit.envs.openspiel.tasks import GameTask, load_game, new_state

GAME_OVER = "Game over."
MAX_SEARCH_NODES = 20_000  # states a search between two learner turns may visit (a hostile chat cannot pin a worker)


def final_prompt(state: pyspiel.State, seat: int) -> str:
    """The closing user message of a rollout whose game ended on a move the learner did not make: the
    learner's observation of the final state, then ``Game over.``"""
    return f"Observation (player {seat}):\n{game_text(state.get_game()).observe(state, seat)}\n{GAME_OVER}"


def split_final_prompt(messages: Sequence[dict]) -> tuple[list[dict], str | None]:
    """(the conversation without its closing ``final_prompt`` message, that message's text or None)."""
    messages = list(messages)
    closing = messages[-1] if len(messages) > 1 and isinstance(messages[-1], dict) else None
    text = closing.get("content") if closing is not None and closing.get("role") == "user" else None
    if isinstance(text, str) and text.endswith(f"\n{GAME_OVER}"):
        return messages[:-1], text
    return messages, None


def strip_final_prompt(messages: Sequence[dict]) -> list[dict]:
    return split_final_prompt(messages)[0]


@dataclass(frozen=True)
class ChatReplay:
    history: list[int]
    """Every action from the task's start, as far as the conversation determines them."""
    messages: list[dict]
    """The conversation as a record holds it: the closing ``final_prompt`` message taken off."""
    problem: str | None = None
    """Why the history stops early, when it does: ``rollout.no_matching_line`` (no line of moves
    leads to the next user message), ``rollout.ambiguous`` (two do), ``rollout.search_budget``; None
    when the conversation was read to its end. The verifier then reports what the record lacks."""


class _Budget(Exception):
    pass


def _lines(state: pyspiel.State, seat: int, target: str, final: bool, budget: list[int]) -> list[list[int]]:
    """Every line of non-learner moves from ``state`` (not the learner's turn) to the learner's next turn
    whose prompt is ``target`` or, with ``final``, to a terminal state whose ``final_prompt`` is
    ``target``; at most two (a second one makes the line ambiguous)."""
    found: list[list[int]] = []

    def walk(state: pyspiel.State, line: list[int]) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise _Budget
        if state.is_terminal():
            if final and final_prompt(state, seat) == target:
                found.append(list(line))
            return
        player = state.current_player()
        if player == seat:
            if not final and turn_prompt(state, seat) == target:
                found.append(list(line))
            return
        if player == pyspiel.PlayerId.CHANCE:
            actions = [a for a, _ in state.chance_outcomes()]
        elif player >= 0:
            actions = state.legal_actions(player)
        else:  # simultaneous moves: the games' chat format has none
            return
        for action in actions:
            line.append(action)
            walk(state.child(action), line)
            line.pop()
            if len(found) > 1:
                return

    walk(state, [])
    return found


def history_from_chat(task: GameTask, prefix: Sequence[int], messages: Sequence[dict]) -> ChatReplay:
    """The history of a game conversation (system prompt, then user/assistant turns, optionally a closing
    ``final_prompt``), from ``task`` and the moves before the learner's first turn (``prefix``)."""
    messages = [dict(m) for m in messages]
    state = new_state(load_game(task))
    history: list[int] = []
    for action in prefix:
        if state.is_terminal() or action not in (
                [a for a, _ in state.chance_outcomes()] if state.is_chance_node() else state.legal_actions()):
            return ChatReplay(history, messages, "rollout.prefix_illegal")
        state.apply_action(action)
        history.append(action)
    messages, closing_text = split_final_prompt(messages)
    budget = [MAX_SEARCH_NODES]
    cursor = 1  # the next user message
    try:
        while not state.is_terminal():
            if state.current_player() != task.seat:  # moves nobody in the conversation made
                last = cursor >= len(messages)
                target = closing_text if last else messages[cursor].get("content")
                if not isinstance(target, str):
                    return ChatReplay(history, messages, None if last else "rollout.no_matching_line")
                lines = _lines(state, task.seat, target, last, budget)
                if len(lines) != 1:
                    return ChatReplay(history, messages, "rollout.ambiguous" if lines else "rollout.no_matching_line")
                for action in lines[0]:
                    state.apply_action(action)
                    history.append(action)
                continue
            if cursor + 1 >= len(messages):
                break
            answer = messages[cursor + 1].get("content") if messages[cursor + 1].get("role") == "assistant" else None
            action = parse_answer(answer if isinstance(answer, str) else None)
            if action is None or action not in state.legal_actions(task.seat):
                break  # the verifier names it (answer.unparseable, action.illegal)
            state.apply_action(action)
            history.append(action)
            cursor += 2
    except _Budget:
        return ChatReplay(history, messages, "rollout.search_budget")
    return ChatReplay(history, messages, None)
