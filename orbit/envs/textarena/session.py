"""One TextArena game in progress: a fresh env reset with the task's seed, stepped with action texts.

``observe(pid)`` is the text TextArena's default observation wrapper gives ``pid`` since it last
observed, one line per message (``[GAME] ...`` / ``[Player 1] ...``, or `` ...`` for the messages view):
joined as ``"\\n" + observe()`` per turn they are the wrapper's own observation string. ``step`` applies
``ActionFormattingWrapper`` and says what TextArena made of the action (``status``).

TextArena's reset seeds Python's global ``random``, and KuhnPoker deals each round from it. A session
that shares the process with other games in flight (a policy's rollouts interleave at every request)
is ``isolated``: it keeps its own generator state and swaps it in around each step that draws.
"""

import random

from orbit.envs.textarena.games import LLM_VIEW, Game, format_action, new_env

MOVED, REJECTED, FORFEITED, ENDED = "moved", "rejected", "forfeited", "ended"
"""What a step did: a move played, a move TextArena rejected and asks the same player to redo, a
rejected move that lost the game (a repeated invalid move), a move that ended the game."""

_HIDDEN = None  # the ObservationType members the messages view leaves out (set on first use)


def hidden_kinds() -> tuple:
    """The ObservationType members the messages view leaves out (player actions, admin notes)."""
    global _HIDDEN
    if _HIDDEN is None:
        from textarena.core import ObservationType

        _HIDDEN = (ObservationType.PLAYER_ACTION, ObservationType.GAME_ADMIN)
    return _HIDDEN


class Session:
    __slots__ = ("game", "env", "state", "isolated", "_rng_state")

    def __init__(self, game: Game, seed: int, isolated: bool = False):
        self.game = game
        self.env = env = new_env(game.env_id)
        self.isolated = isolated
        self._rng_state = None
        if isolated:
            saved = random.getstate()
            env.reset(num_players=game.num_players, seed=seed)
            if game.random_in_step:
                self._rng_state = random.getstate()
            random.setstate(saved)
        else:
            env.reset(num_players=game.num_players, seed=seed)
        self.state = env.state

    @property
    def current(self) -> int:
        return self.state.current_player_id

    @property
    def done(self) -> bool:
        return self.state.done

    def observe(self, pid: int) -> str:
        """What ``pid`` was shown since it last observed (TextArena's ``get_observation`` for it)."""
        state = self.state
        pending = state.observations[pid]
        state.observations[pid] = []
        if self.game.view == LLM_VIEW:
            roles = state.role_mapping
            return "\n".join([f"[GAME] {text}" if sender == -1 else f"[{roles.get(sender, f'Player {sender}')}] {text}"
                              for sender, text, _ in pending])
        hidden = hidden_kinds()
        return "\n".join([f" {text}" for _, text, kind in pending if kind not in hidden])

    def step(self, text: str) -> str:
        """Step the action text of the player to move; returns MOVED, REJECTED, FORFEITED or ENDED.
        TextArena's own exceptions (a parser meeting an absurd text) propagate."""
        state = self.state
        pid, turn = state.current_player_id, state.turn
        if self._rng_state is not None:
            saved = random.getstate()
            random.setstate(self._rng_state)
            try:
                self.env.step(format_action(text))
            finally:
                self._rng_state = random.getstate()
                random.setstate(saved)
        else:
            self.env.step(format_action(text))
        if state.done:
            return FORFEITED if state.game_info.get(pid, {}).get("invalid_move") else ENDED
        return REJECTED if state.turn == turn else MOVED

    def rewards(self) -> list[float] | None:
        """TextArena's final rewards by player id (None until the game ends)."""
        rewards = self.state.rewards
        if not self.state.done or not isinstance(rewards, dict):
            return None
        return [float(rewards.get(pid, 0.0)) for pid in range(self.game.num_players)]

    def reason(self, pid: int) -> str | None:
        info = self.state.game_info.get(pid) if isinstance(self.state.game_info, dict) else None
        reason = info.get("reason") if isinstance(info, dict) else None
        return str(reason) if reason is not None else None


def learner_score(rewards: list[float] | None, seat: int) -> float:
    """1.0 when the learner won (two players: its reward above the other's, or 1) or solved (one player:
    reward 1), else 0.0: draws, losses, partial credit and unfinished games score 0."""
    if rewards is None or not 0 <= seat < len(rewards):
        return 0.0
    mine = rewards[seat]
    if len(rewards) == 1:
        return 1.0 if mine >= 1.0 else 0.0
    others = [r for pid, r in enumerate(rewards) if pid != seat]
    return 1.0 if mine >= 1.0 or all(mine > r for r in others) else 0.0
