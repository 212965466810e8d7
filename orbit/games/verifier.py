"""The game verifier: replays the match from the task spec and recomputes the score.

It trusts nothing the generator claims. It rebuilds the initial state from the
task spec in the record's metadata, replays every action of both sides (and of
chance) from the recorded history, checks each learner turn's observation text
and legal-action list against the replay, parses each answer, and recomputes the
returns. Any disagreement fails the record with a named reason.
"""

import json
from typing import Any, Mapping

from orbit.envs.base import Verdict
from orbit.games.match import learner_score
from orbit.games.prompts import parse_answer, split_turn_prompt, system_prompt, turn_prompt
from orbit.games.tasks import GameTask, TaskSpecError, load_game

SCORE_TOLERANCE = 1e-9


class GameReplayVerifier:
    name = "game_replay"
    version = "2"  # answer format v2 (orbit.games.prompts.parse_answer: bare ID, {"move": ID}, final <answer>ID</answer>)

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        meta = json.loads(record.get("metadata") or "{}")
        try:
            task = GameTask.from_json(meta.get("task"))
        except TaskSpecError as exc:
            return Verdict(0.0, (f"task.spec_invalid:{exc}",))
        history = meta.get("history")
        if not isinstance(history, list) or not all(isinstance(a, int) for a in history):
            return Verdict(0.0, ("history.invalid",))
        messages = list(record.get("messages") or [])
        reasons: list[str] = []
        if messages[0].get("role") != "system" or messages[0].get("content") != system_prompt(task.game, task.seat):
            reasons.append("prompt.system_mismatch")
        turns = messages[1:]
        state = load_game(task).new_initial_state()
        cursor = 0  # index into turns

        def check_turn(expected_action: int | None) -> bool:
            """Check the next user/assistant pair against the replay; False stops the replay."""
            nonlocal cursor
            if cursor >= len(turns):
                reasons.append("game.not_terminal")
                return False
            user = turns[cursor]
            answer = turns[cursor + 1] if cursor + 1 < len(turns) else None
            cursor += 2
            if user.get("role") != "user" or answer is None or answer.get("role") != "assistant":
                reasons.append("trajectory.turn_order")
                return False
            expected_obs, expected_legal = split_turn_prompt(turn_prompt(state, task.seat))
            shown_obs, shown_legal = split_turn_prompt(user.get("content") or "")
            if shown_obs != expected_obs:
                reasons.append("observation.mismatch")
            if shown_legal != expected_legal:
                reasons.append("legal_actions.mismatch")
            action = parse_answer(answer.get("content"))
            if action is None:
                reasons.append("answer.unparseable")
                return False
            if action not in state.legal_actions(task.seat):
                reasons.append("action.illegal")
                return False
            if expected_action is None:
                reasons.append("game.not_terminal")
                return False
            if action != expected_action:
                reasons.append("action.history_mismatch")
                return False
            return True

        for action in history:
            if state.is_terminal():
                reasons.append("history.past_terminal")
                break
            if state.is_chance_node():
                if action not in {a for a, _ in state.chance_outcomes()}:
                    reasons.append("history.illegal_chance")
                    break
            elif state.current_player() == task.seat:
                if not check_turn(action):
                    break
            elif action not in state.legal_actions():
                reasons.append("history.illegal_action")
                break
            state.apply_action(action)
        else:
            if not state.is_terminal():
                # A forfeited match ends on the learner's invalid answer; anything else is truncated.
                if not state.is_chance_node() and state.current_player() == task.seat and cursor < len(turns):
                    check_turn(None)
                else:
                    reasons.append("game.not_terminal")
        if reasons:
            return Verdict(0.0, tuple(dict.fromkeys(reasons)))
        if cursor != len(turns):
            return Verdict(0.0, ("trajectory.extra_messages",))
        returns = [float(r) for r in state.returns()]
        score = learner_score(returns, task.seat)
        claimed_returns = meta.get("returns")
        if claimed_returns is not None and [float(r) for r in claimed_returns] != returns:
            reasons.append("outcome.mismatch")
        claimed = record.get("score")
        if claimed is not None and abs(float(claimed) - score) > SCORE_TOLERANCE:
            reasons.append("score.claim_mismatch")
        return Verdict(0.0 if reasons else score, tuple(reasons))
