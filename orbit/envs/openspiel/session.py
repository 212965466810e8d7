"""One game played turn by turn with a trainer's policy: the environment side of a multi-turn GRPO rollout.

A GRPO export row holds a game's first turn (``prompt``) and its task columns (``env``, ``task_spec``,
``task_history``). ``GameSession`` continues the game from there. Each learner answer is applied, then
the env's own opponent and chance move, and the next turn prompt comes back. When the game is over,
``step`` returns ``done``, with ``final_prompt`` as the closing user message when the last move was not
the learner's. ms-swift's multi-turn scheduler (``orbit.rewards``) drives it; a TRL ``rollout_func``
can do the same.

The conversation it produces is the one ``chat_replay.history_from_chat`` reads back, so the reward
scores the played game as the verify stage scores the same trajectory. ``history`` is the full action
list, which a scheduler may hand to the reward as well.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from orbit.envs.base import GenerationRequest
from orbit.envs.openspiel.bots import make_bot
from orbit.envs.openspiel.chat_replay import final_prompt
from orbit.envs.openspiel.match import learner_score, no_player_action
from orbit.envs.openspiel.prompts import parse_answer, turn_prompt
from orbit.envs.openspiel.tasks import GameTask, load_game, new_state
from orbit.io.schema import stable_hash


@dataclass
class Step:
    message: dict | None
    """The next user message (a turn prompt, or the closing ``final_prompt``); None when nothing follows."""
    done: bool
    reason: str | None = None
    """Why the game stopped early: ``answer.unparseable`` or ``action.illegal`` (the learner forfeits)."""


class GameSession:
    def __init__(self, env: str, task_spec: str | Mapping[str, Any], task_history: str | Sequence[int] = (),
                 seed: int = 0, lake_root: Path | None = None):
        from orbit.envs import env_spec, family_of

        self.spec = env_spec(env)
        if self.spec.family != "openspiel":
            raise ValueError(f"{env} is not a game env")
        spec = json.loads(task_spec) if isinstance(task_spec, str) else dict(task_spec)
        params = dict(self.spec.options.get("params") or {})
        self.task = GameTask.from_json(spec, expect=(self.spec.options["game"], params))
        game = load_game(self.task)
        self.state = new_state(game)
        self.history: list[int] = []
        for action in (json.loads(task_history) if isinstance(task_history, str) else task_history):
            self.state.apply_action(int(action))
            self.history.append(int(action))
        opponent = dict(self.spec.options.get("opponent") or {"kind": "random"})
        family = family_of(self.spec)
        table = family._cfr_table(GenerationRequest(env=self.spec, round_key="r0000", num_tasks=0,
                                                    samples_per_task=0, lake=lake_root), opponent)
        match_seed = int(stable_hash("session", self.task.task_id, seed, length=7), 16)  # < 2**28: a C++ int seed
        self._opponent = make_bot(opponent, game, match_seed, table)
        self._seed, self._rng = match_seed, None  # chance's RNG, made at the first chance node (as in a match)
        self.reason: str | None = None
        self._others()

    @property
    def done(self) -> bool:
        return self.state.is_terminal() or self.reason is not None

    @property
    def score(self) -> float:
        """The learner's score of a finished game (as the verifier computes it); 0 for a forfeit."""
        if self.reason is not None or not self.state.is_terminal():
            return 0.0
        return learner_score(list(self.state.returns()), self.task.seat)

    def prompt(self) -> str:
        """The turn prompt the learner answers now."""
        return turn_prompt(self.state, self.task.seat)

    def _others(self) -> bool:
        """Play the opponent and chance up to the learner's turn or the end; True if anyone moved."""
        moved = False
        while not self.state.is_terminal() and self.state.current_player() != self.task.seat:
            player = self.state.current_player()
            if player >= 0:
                action = int(self._opponent(self.state))
            else:
                action, self._rng = no_player_action(self.task, self.state, player, self._rng, self._seed)
            self.state.apply_action(action)
            self.history.append(action)
            moved = True
        return moved

    def step(self, answer: str | None) -> Step:
        """Apply the learner's answer; the reply is the next user message, or the end."""
        if self.done:
            return Step(None, True, self.reason)
        action = parse_answer(answer)
        if action is None or action not in self.state.legal_actions(self.task.seat):
            self.reason = "answer.unparseable" if action is None else "action.illegal"
            return Step(None, True, self.reason)
        self.state.apply_action(action)
        self.history.append(action)
        if self._others() and self.state.is_terminal():
            return Step({"role": "user", "content": final_prompt(self.state, self.task.seat)}, True)
        if self.state.is_terminal():
            return Step(None, True)
        return Step({"role": "user", "content": self.prompt()}, False)
