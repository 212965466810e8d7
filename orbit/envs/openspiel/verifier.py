"""The game verifier: replays the match from the task spec and recomputes the score.

It trusts nothing the generator claims. It checks that the task spec in the
record's metadata belongs to the env (same game, the env's own parameters) and
that the record's task id is the task's, rebuilds the initial state, replays
every action of both sides (and of chance) from the recorded history, checks each
learner turn's observation text and legal-action list against the replay, parses
each answer, and recomputes the returns. The trajectory must be the system prompt
then user/assistant pairs, with no tools and no tool calls. Claimed returns and score must be
finite numbers that agree with the replay. Any disagreement fails the record with
a named reason.

The replay itself (``_replay``) only ever reads validated values: the checks on
the record's shape run first, in ``verify``.
"""

import math
from typing import Any, Mapping, Sequence

from orbit.envs.base import EnvSpec, Verdict
from orbit.envs.registry import find_env
from orbit.envs.openspiel.match import CHANCE, TERMINAL, learner_score
from orbit.envs.openspiel.prompts import parse_answer, prompt_for, split_turn_prompt, system_prompt
from orbit.envs.openspiel.replay_cache import facts, game_tree
from orbit.io.jsonmemo import loads_shared
from orbit.io.plain_messages import PlainTexts, chat_order
from orbit.envs.openspiel.tasks import GameTask, TaskEnvMismatch, TaskSpecError, load_game

SCORE_TOLERANCE = 1e-9
MAX_HISTORY = 10_000

ENV_UNKNOWN = "record.env_unknown"
ENV_MISMATCH = "record.env_mismatch"
METADATA_INVALID = "record.metadata_not_object"
TASK_ENV_MISMATCH = "task.env_mismatch"
TASK_ID_MISMATCH = "task.id_mismatch"
TOOL_USE = "trajectory.unexpected_tool_call"
TOOLS_MISMATCH = "record.tools_mismatch"
CLAIM_INVALID = "score.claim_invalid"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_INT = frozenset({int})
_FLOAT_INT = frozenset({float, int})


def _is_number(value: Any) -> bool:
    """A JSON number that is finite (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _text(message: Any) -> str | None:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


_ANSWERS: dict[str, int | None] = {}  # parse_answer is a pure function of the text; answers repeat
MAX_ANSWERS = 65_536


def _parse_answer(content: str | None) -> int | None:
    if content is None:
        return parse_answer(content)
    if content in _ANSWERS:
        return _ANSWERS[content]
    if len(_ANSWERS) >= MAX_ANSWERS:
        _ANSWERS.clear()
    action = _ANSWERS[content] = parse_answer(content)
    return action


class GameReplayVerifier:
    parallel_safe = True  # a verdict depends on the record alone: batches may be verified anywhere
    columns = ("env", "task_id", "messages", "tools", "score", "metadata")  # all it reads of a record
    reads_plain_texts = True  # of a plain chat message it reads the role and the text only (PlainTexts)
    name = "game_replay"
    version = "3"  # answer format v3 (orbit.policies.answers.parse_answer: bare ID, {"move": ID}, final <answer>ID</answer>)

    def __init__(self, env: EnvSpec | None = None):
        """``env``: the partition's env; without it the env named by the record (which must be a game env)."""
        self.env = env
        self._expected = None if env is None else self._spec_game(env)

    @staticmethod
    def _spec_game(spec: EnvSpec) -> tuple[str, dict] | str:
        """(game, params) of a game env, or the reason id why it is none."""
        game = spec.options.get("game")
        if spec.family != "openspiel" or not isinstance(game, str):
            return ENV_UNKNOWN
        return game, dict(spec.options.get("params") or {})

    def _env_game(self, record: Mapping[str, Any]) -> tuple[str, dict] | str:
        """(game, params) the record's task must have, or the reason id why there is none."""
        spec = self.env
        if spec is None:
            name = record.get("env")
            spec = find_env(name)
            return ENV_UNKNOWN if spec is None else self._spec_game(spec)
        if record.get("env") != spec.name:
            return ENV_MISMATCH
        return self._expected

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        try:
            meta = loads_shared(record.get("metadata") or "{}")  # parsed once with the structural rules
        except (TypeError, ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict):
            return Verdict(0.0, (METADATA_INVALID,))
        expected = self._env_game(record)
        if isinstance(expected, str):
            return Verdict(0.0, (expected,))
        try:
            task = GameTask.from_json(meta.get("task"), expect=expected)
        except TaskEnvMismatch:
            return Verdict(0.0, (TASK_ENV_MISMATCH,))
        except TaskSpecError as exc:
            return Verdict(0.0, (f"task.spec_invalid:{exc}",))
        if record.get("task_id") != task.task_id:
            return Verdict(0.0, (TASK_ID_MISMATCH,))
        if record.get("tools") is not None:  # games offer no tools
            return Verdict(0.0, (TOOLS_MISMATCH,))
        history = meta.get("history")
        if not isinstance(history, list) or len(history) > MAX_HISTORY or not (
                _INT.issuperset(map(type, history)) or all(_is_int(a) for a in history)):
            return Verdict(0.0, ("history.invalid",))
        messages = record.get("messages")
        if type(messages) is not PlainTexts:  # plain chat needs none of these scans (see orbit.io.plain_messages)
            messages = list(messages) if isinstance(messages, (list, tuple)) else []
            if not messages:
                return Verdict(0.0, ("trajectory.empty",))
            if not all(isinstance(m, dict) for m in messages):
                return Verdict(0.0, ("trajectory.turn_order",))
            tool_use = [f"{TOOL_USE}:{i}" for i, m in enumerate(messages)
                        if m.get("tool_calls") or m.get("tool_call_id") is not None or m.get("role") == "tool"]
            if tool_use:
                return Verdict(0.0, tuple(tool_use))
        return self._replay(record, meta, task, history, messages)

    @staticmethod
    def _check_turn(expected: str, legal: Sequence[int], roles: list, texts: list, cursor: int,
                    expected_action: int | None, reasons: list[str]) -> bool:
        """Check the user/assistant pair at ``cursor`` against the replay's turn prompt ``expected`` and
        legal actions; False stops the replay."""
        if cursor >= len(roles):
            reasons.append("game.not_terminal")
            return False
        if roles[cursor] != "user" or cursor + 1 >= len(roles) or roles[cursor + 1] != "assistant":
            reasons.append("trajectory.turn_order")
            return False
        shown = texts[cursor] or ""
        if shown != expected:  # equal prompts have equal parts: split and compare only what differs
            shown_obs, shown_legal = split_turn_prompt(shown)
            expected_obs, expected_legal = split_turn_prompt(expected)
            if shown_obs != expected_obs:
                reasons.append("observation.mismatch")
            if shown_legal != expected_legal:
                reasons.append("legal_actions.mismatch")
        action = _parse_answer(texts[cursor + 1])
        if action is None:
            reasons.append("answer.unparseable")
            return False
        if action not in legal:
            reasons.append("action.illegal")
            return False
        if expected_action is None:
            reasons.append("game.not_terminal")
            return False
        if action != expected_action:
            reasons.append("action.history_mismatch")
            return False
        return True

    def _replay(self, record: Mapping[str, Any], meta: Mapping[str, Any], task: GameTask, history: list[int],
                messages: list[Mapping[str, Any]]) -> Verdict:
        reasons: list[str] = []
        if type(messages) is PlainTexts:  # plain chat as its roles and texts (every one a str)
            roles, texts = messages.roles, messages.texts
            system_text = texts[0]
            in_order = roles is chat_order(len(roles))  # system, user, assistant, user, ... (shared list)
        else:
            roles = [m.get("role") for m in messages]
            texts = [_text(m) for m in messages]
            system_text = messages[0].get("content")
            in_order = False
        if roles[0] != "system" or system_text != system_prompt(task.game, task.seat):
            reasons.append("prompt.system_mismatch")
        n_messages = len(messages)
        seat = task.seat
        cursor = 1  # index of the next user message
        tree = game_tree(load_game(task))  # facts per history prefix, remembered across records
        # The position: its facts (player to move or TERMINAL or CHANCE, legal actions or chance
        # outcomes, returns), its remembered node (None once the line leaves the tree) and its pyspiel
        # state (made from ``path`` only when a prompt or a node not remembered needs it; off the
        # tree it is always there and steps with the history).
        node = tree.root
        player, legal, returns = node.player, node.legal, node.returns
        state = None
        path: list[int] = []
        # One step per recorded action. A learner turn is checked against the replay: the next
        # user/assistant pair must be in order, show this position's prompt, and answer the recorded action.
        for action in history:
            if player == TERMINAL:
                reasons.append("history.past_terminal")
                break
            if player == CHANCE:
                if action not in legal:
                    reasons.append("history.illegal_chance")
                    break
            elif player == seat:
                expected = node.prompt if node is not None else None
                if expected is None:
                    if state is None:
                        state = tree.state_at(path)
                    expected = prompt_for(tree.text, state, seat, tuple(legal))
                    if node is not None:
                        node.prompt = expected
                if not (cursor + 1 < n_messages
                        and (in_order or roles[cursor] == "user" and roles[cursor + 1] == "assistant")
                        and texts[cursor] == expected and _ANSWERS.get(texts[cursor + 1]) == action
                        and action in legal):
                    # anything but a turn whose answer was read before and whose prompt is the expected one
                    if not self._check_turn(expected, legal, roles, texts, cursor, action, reasons):
                        break
                cursor += 2
            elif action not in legal:
                reasons.append("history.illegal_action")
                break
            if node is None:  # off the tree: the state steps alone (``facts``, inline)
                state.apply_action(action)
                player = state.current_player()
                if player >= 0:
                    legal = state.legal_actions()
                elif player == CHANCE:
                    legal = tuple([a for a, _ in state.chance_outcomes()])
                else:
                    returns = tuple(map(float, state.returns()))
                continue
            node.visits += 1
            child = node.children.get(action)
            if child is not None:
                node = child
                player, legal, returns = child.player, child.legal, child.returns
                state = None  # made from the path only if a later prompt or node needs it
            else:
                if state is None:
                    state = tree.state_at(path)
                state.apply_action(action)
                player, legal, returns = facts(state)
                node = tree.admit(node, action, (player, legal, returns))
            path.append(action)
        else:
            if player != TERMINAL:
                # A forfeited match ends on the learner's invalid answer; anything else is truncated.
                if player == seat and cursor < n_messages:
                    expected = (node.prompt if node is not None else None) or prompt_for(
                        tree.text, tree.state_at(path) if state is None else state, seat, tuple(legal))
                    self._check_turn(expected, legal, roles, texts, cursor, None, reasons)
                else:
                    reasons.append("game.not_terminal")
        if reasons:
            return Verdict(0.0, tuple(dict.fromkeys(reasons)))
        if cursor != n_messages:  # every message after the system prompt was a checked turn
            return Verdict(0.0, ("trajectory.extra_messages",))
        score = learner_score(returns, task.seat)
        claimed_returns = meta.get("returns")
        if claimed_returns is not None and not (  # the same numbers (finite ones: the replay's are), no bools
            type(claimed_returns) is list and claimed_returns == list(returns)
            and (_FLOAT_INT.issuperset(map(type, claimed_returns)) or all(map(_is_number, claimed_returns)))
        ):
            reasons.append("outcome.mismatch")
        claimed = record.get("score")
        if claimed is not None:
            if not _is_number(claimed):
                reasons.append(CLAIM_INVALID)
            elif not 0.0 <= claimed <= 1.0 or abs(float(claimed) - score) > SCORE_TOLERANCE:
                reasons.append("score.claim_mismatch")
        return Verdict(0.0 if reasons else score, tuple(reasons))
