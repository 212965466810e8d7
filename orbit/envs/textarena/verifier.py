"""The replay verifier: re-steps a record's actions through a fresh TextArena env and recomputes the score.

It trusts nothing the record claims. The record must be of this env (``record.env_mismatch``), its
metadata a JSON object (``record.metadata_not_object``), its task one of the env's game
(``task.env_mismatch``; ``task.spec_invalid:<task|keys|seed|seat>``) whose id is the record's
(``task.id_mismatch``), with no tools (``record.tools_mismatch``, ``trajectory.unexpected_tool_call:<i>``)
and the family's system prompt (``prompt.system_mismatch``). ``metadata.actions`` must be at most
MAX_ACTIONS ``[player id, text]`` pairs (``actions.invalid[:<i>]``) of steppable texts
(``actions.too_long:<i>``, ``actions.unsafe:<i>``).

Then a fresh env is reset with the task's seed and every action is stepped in order (``<i>``: the
action's index): it must be the turn of the player it names (``actions.wrong_player:<i>``); the game
must not be over (``actions.after_end:<i>``); an action TextArena rejected must be retried by the same
player, and one that lost the game must be the last (``actions.illegal:<i>``, also for a text TextArena
fails on). Before each learner action the next user message must be the observation the replay shows
the learner (``observation.mismatch:<message index>``) and the next assistant message the action's text
(``actions.chat_mismatch:<i>``). The other player's actions are stepped like the learner's, under the same
rules, and are not held to the fixed opponent's choices (as the OpenSpiel verifier steps its bots'
moves): regenerating each would add about a quarter to a two-player replay. The replay must end
the game (``game.not_terminal``) and use every message (``trajectory.extra_messages``). Claimed rewards
and score, when present, must be the replay's (``outcome.mismatch``, ``score.claim_mismatch``,
``score.claim_invalid``). The score: 1.0 when the learner won or solved the game, else 0.0 (a loss or a
draw is a reason-free 0.0). ``verify`` never raises: anything unforeseen is ``replay.error:<type>``.

The replay compares as it goes: each learner turn's observation is made once, from what is new, and
compared with its message; nothing else is built.
"""

import math
from typing import Any, Mapping

from orbit.envs.base import EnvOptionError, EnvSpec, Verdict
from orbit.envs.textarena.episode import MAX_ACTIONS
from orbit.envs.textarena.games import LLM_VIEW, MAX_ACTION_CHARS, MAX_TOTAL_ACTION_CHARS, SUPPORTED
from orbit.envs.textarena.options import spec_options
from orbit.envs.textarena.prompts import system_prompt
from orbit.envs.textarena.session import FORFEITED, REJECTED, Session, hidden_kinds, learner_score
from orbit.envs.textarena.tasks import Task, TaskError
from orbit.io.jsonmemo import loads_shared
from orbit.io.plain_messages import PlainTexts

SCORE_TOLERANCE = 1e-9

ENV_UNKNOWN = "record.env_unknown"
ENV_MISMATCH = "record.env_mismatch"
METADATA_INVALID = "record.metadata_not_object"
TASK_ID_MISMATCH = "task.id_mismatch"
TOOLS_MISMATCH = "record.tools_mismatch"
TOOL_USE = "trajectory.unexpected_tool_call"
ACTIONS_INVALID = "actions.invalid"
NOT_TERMINAL = "game.not_terminal"


def _text(m: Any) -> str | None:
    content = m.get("content") if isinstance(m, dict) else None
    return content if isinstance(content, str) else None


def _numbers_equal(claimed: Any, actual: list[float]) -> bool:
    return (type(claimed) is list and len(claimed) == len(actual)
            and all(type(c) in (int, float) and math.isfinite(c) and c == a for c, a in zip(claimed, actual)))


class TextArenaReplayVerifier:
    parallel_safe = True  # a verdict depends on the record alone
    columns = ("env", "task_id", "messages", "tools", "score", "metadata")  # all it reads of a record
    reads_plain_texts = True  # of a plain message it reads the role and text only
    name = "textarena_replay"
    version = "1"

    def __init__(self, env: EnvSpec):
        """``env``: the partition's env. Only its name and option values are kept (the verifier is pickled
        to worker processes; the game table is looked up per record)."""
        self.env = env
        try:
            options = spec_options(env.options) if env.family == "textarena" else None
        except EnvOptionError:
            options = None
        self.env_id = options.env_id if options is not None else None

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        try:
            return self._verify(record)
        except Exception as exc:  # noqa: BLE001 - a verdict, never an exception, whatever the record holds
            return Verdict(0.0, (f"replay.error:{type(exc).__name__}",))

    def _verify(self, record: Mapping[str, Any]) -> Verdict:
        if record.get("env") != self.env.name:
            return Verdict(0.0, (ENV_MISMATCH,))
        try:
            meta = loads_shared(record.get("metadata") or "{}")
        except (TypeError, ValueError, RecursionError):
            meta = None
        if type(meta) is not dict:
            return Verdict(0.0, (METADATA_INVALID,))
        game = SUPPORTED.get(self.env_id)
        if game is None:
            return Verdict(0.0, (ENV_UNKNOWN,))
        try:
            task = Task.from_json(meta.get("task"), game.env_id, game.num_players)
        except TaskError as exc:
            return Verdict(0.0, (exc.reason,))
        if record.get("task_id") != task.task_id:
            return Verdict(0.0, (TASK_ID_MISMATCH,))
        if record.get("tools") is not None:  # games offer no tools
            return Verdict(0.0, (TOOLS_MISMATCH,))
        messages = record.get("messages")
        if type(messages) is PlainTexts:  # plain chat: roles and texts, every one a str
            roles, texts = messages.roles, messages.texts
        else:
            if not isinstance(messages, (list, tuple)) or not messages:
                return Verdict(0.0, ("trajectory.empty",))
            if not all(isinstance(m, dict) for m in messages):
                return Verdict(0.0, ("trajectory.turn_order",))
            tool_use = tuple(f"{TOOL_USE}:{i}" for i, m in enumerate(messages)
                             if m.get("tool_calls") or m.get("tool_call_id") is not None or m.get("role") == "tool")
            if tool_use:
                return Verdict(0.0, tool_use)
            roles = [m.get("role") for m in messages]
            texts = [_text(m) for m in messages]
        actions = meta.get("actions")
        if type(actions) is not list or len(actions) > MAX_ACTIONS:
            return Verdict(0.0, (ACTIONS_INVALID,))
        reasons: list[str] = []
        if roles[0] != "system" or texts[0] != system_prompt(task.env_id, task.seat):
            reasons.append("prompt.system_mismatch")
        rewards = self._replay(game, task, actions, roles, texts, reasons)
        if reasons:
            return Verdict(0.0, tuple(dict.fromkeys(reasons)))
        score = learner_score(rewards, task.seat)
        claimed_rewards = meta.get("rewards")
        if claimed_rewards is not None and not _numbers_equal(claimed_rewards, rewards):
            reasons.append("outcome.mismatch")
        claimed = record.get("score")
        if claimed is not None:
            if isinstance(claimed, bool) or not isinstance(claimed, (int, float)) or not math.isfinite(claimed):
                reasons.append("score.claim_invalid")
            elif abs(float(claimed) - score) > SCORE_TOLERANCE:
                reasons.append("score.claim_mismatch")
        return Verdict(0.0 if reasons else score, tuple(reasons))

    def _replay(self, game, task: Task, actions: list, roles: list, texts: list, reasons: list[str]) -> list | None:
        """Step ``actions`` from the task's start, checking the conversation as it goes; the final rewards,
        or None when a reason was added. The step is ``Session.step`` inlined (a replay is one process's
        only game in flight, so the session needs no random isolation)."""
        seat = task.seat
        session = Session(game, task.seed)
        state, env_step = session.state, session.env.step
        observations, names = state.observations, state.role_mapping
        llm_view = game.view == LLM_VIEW
        hidden = hidden_kinds()
        n_messages = len(roles)
        players, slow = game.num_players, game.slow_pattern
        chars = 0  # of the texts so far
        cursor = 1  # the next user message
        last = None  # what the previous step did: REJECTED, FORFEITED, or None
        for i, pair in enumerate(actions):
            # the action's shape first: a [player id, text] pair of a text TextArena can parse in time
            if type(pair) is not list or len(pair) != 2:
                reasons.append(f"{ACTIONS_INVALID}:{i}")
                return None
            pid, text = pair
            if type(pid) is not int or not 0 <= pid < players or type(text) is not str:
                reasons.append(f"{ACTIONS_INVALID}:{i}")
                return None
            chars += len(text)
            if len(text) > MAX_ACTION_CHARS or chars > MAX_TOTAL_ACTION_CHARS:
                reasons.append(f"actions.too_long:{i}")
                return None
            if slow is not None and slow.search(text) is not None:
                reasons.append(f"actions.unsafe:{i}")
                return None
            if state.done:
                reasons.append(f"actions.illegal:{i - 1}" if last is FORFEITED else f"actions.after_end:{i}")
                return None
            if pid != state.current_player_id:
                reasons.append(f"actions.illegal:{i - 1}" if last is REJECTED else f"actions.wrong_player:{i}")
                return None
            if pid == seat:
                if cursor + 1 >= n_messages or roles[cursor] != "user" or roles[cursor + 1] != "assistant":
                    reasons.append(f"actions.chat_mismatch:{i}")
                    return None
                pending = observations[seat]  # Session.observe, inlined
                observations[seat] = []
                if llm_view:
                    shown = "\n".join([f"[GAME] {message}" if sender == -1 else
                                       f"[{names.get(sender, f'Player {sender}')}] {message}"
                                       for sender, message, _ in pending])
                else:
                    shown = "\n".join([f" {message}" for _, message, kind in pending if kind not in hidden])
                if texts[cursor] != shown:
                    reasons.append(f"observation.mismatch:{cursor}")
                if texts[cursor + 1] != text:
                    reasons.append(f"actions.chat_mismatch:{i}")
                    return None
                cursor += 2
            turn = state.turn
            try:
                env_step(text if "[" in text or "]" in text else f"[{text}]")  # ActionFormattingWrapper
            except Exception:  # noqa: BLE001 - TextArena failing on a text: not a move it takes
                reasons.append(f"actions.illegal:{i}")
                return None
            if state.done:
                last = FORFEITED if state.game_info[pid].get("invalid_move") else None
            else:
                last = REJECTED if state.turn == turn else None
        if not state.done:
            reasons.append(NOT_TERMINAL)
            return None
        if cursor != n_messages:  # every message after the system prompt was a checked turn
            reasons.append("trajectory.extra_messages")
            return None
        return session.rewards()
