"""The verifier as an online reward: GRPO scores a completion by replaying its task.

Where trainers run, install it without Dagster: ``pip install ./packaging/orbit-reward`` (from Orbit's
repository). One scorer, two trainer entry points:

- ms-swift (external ORM plugin)::

      swift rlhf --rlhf_type grpo ... --reward_funcs orbit_verifier \
          --external_plugins "$(python -c 'import orbit.rewards as m; print(m.__file__)')"

  Loading this file registers ``orbit_verifier`` in ``swift.rewards.orms`` (when ms-swift is
  importable). ms-swift calls it with the completions and every dataset column, plus ``messages``:
  the whole conversation, ending in the completion or, for a multi-turn rollout the environment
  closed, in the environment's last message.
- TRL: ``GRPOTrainer(..., reward_funcs=orbit.rewards.reward_func)``; TRL passes ``prompts``,
  ``completions`` (text or assistant messages) and the dataset columns.

Both need the GRPO export's columns ``env``, ``task_spec`` (the task as the generator recorded it),
``task_id`` and ``task_history`` (for games: the chance and opponent actions before the learner's
first turn); a rollout that knows every action may add ``history``. The trajectory is rebuilt as a
record, the env's family makes it whole (a game's history read back from its conversation,
``orbit.envs.openspiel.chat_replay``), and it goes through ``orbit.stages.verify.verify_record``
with the env's own verifier, the one the verify stage uses.

What a completion can be scored on. A finished episode (a LiveWeb trajectory ending in ``stop``, a
game played to the end) gets the verifier's score in [0, 1]: a won game 1, a lost one 0, a draw 0.5.
A one-turn completion of a multi-turn env usually does not finish the episode: it can be checked
for everything the verifier checks up to that turn -- a game answer parses and names a legal action
for the shown board; a LiveWeb tool call is well-formed, names a known tool, and works on the
replayed page -- but not for the outcome (who wins, whether the answers are right). Such a valid but
unfinished turn earns ``UNFINISHED_REWARD`` (0.1, or ``ORBIT_REWARD_UNFINISHED``); a turn that
breaks a rule earns 0. A LiveWeb ``stop`` call in one turn is graded in full.

Text completions may carry tool calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
blocks (Hermes/Qwen style) or as one bare JSON object of that shape.
"""

import json
import logging
import math
import os
import re
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

from orbit.io.schema import message, tool_call

def unit_setting(name: str, default: float) -> float:
    """A reward setting from the environment: a finite number in [0, 1], else an error naming it."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1] (a reward), got {text[:40]!r}")
    return value


UNFINISHED_REWARD = unit_setting("ORBIT_REWARD_UNFINISHED", 0.1)
MAX_COMPLETION_CHARS = 200_000  # a longer completion is scored as it is cut (the verifier fails it on content)
LOG = logging.getLogger("orbit.rewards")
LAST_REASONS: list[list[str]] = []
"""The reasons behind the last ``reward_func`` call's rewards, one list per completion (a trainer's
callback or a test can read them; the reward itself never raises)."""
UNFINISHED_REASONS = ("game.not_terminal", "trajectory.missing_stop", "observation.missing")
TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


@lru_cache(maxsize=None)
def _verifier(env: str, cache_dir: str | None):
    from orbit.envs import env_spec, family_of

    spec = env_spec(env)
    options = {"cache_dir": cache_dir} if cache_dir else None
    return family_of(spec).verifier(spec, options) if options else family_of(spec).verifier(spec), spec


def _as_messages(completion: Any) -> list[dict]:
    """A completion (text, a message, or a list of messages) as record messages."""
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        out = []
        for m in completion:
            calls = []
            for k, call in enumerate(m.get("tool_calls") or []):
                fn = call.get("function", call)
                args = fn.get("arguments", {})
                calls.append(tool_call(call.get("id") or f"call_r{k}", fn.get("name"),
                                       args if isinstance(args, str) else json.dumps(args, sort_keys=True)))
            out.append(message(m.get("role", "assistant"), m.get("content"), tool_calls=calls or None,
                               tool_call_id=m.get("tool_call_id"), name=m.get("name")))
        return out
    text = "" if completion is None else str(completion)
    blocks = TOOL_CALL_RE.findall(text)
    if not blocks and text.strip().startswith("{"):
        blocks = [text.strip()]
    calls = []
    for k, block in enumerate(blocks):
        try:
            parsed = json.loads(block)
        except ValueError:
            continue
        if isinstance(parsed, dict) and "name" in parsed:
            args = parsed.get("arguments", {})
            calls.append(tool_call(f"call_r{k}", str(parsed["name"]),
                                   args if isinstance(args, str) else json.dumps(args, sort_keys=True)))
    content = TOOL_CALL_RE.sub("", text).strip() if calls else text
    if calls and text.strip().startswith("{") and not TOOL_CALL_RE.search(text):
        content = ""
    return [message("assistant", content or None, tool_calls=calls or None)]


def _clean(messages: Iterable[Mapping[str, Any]]) -> list[dict]:
    return _as_messages([dict(m) for m in messages if m])


def score(env: str, task_spec: str | Mapping[str, Any], trajectory: Sequence[Mapping[str, Any]], *,
          task_id: str | None = None, task_history: str | Sequence[int] | None = None,
          history: str | Sequence[int] | None = None, tools: str | None = None,
          cache_dir: str | None = None) -> tuple[float, list[str]]:
    """The reward of one trajectory (prompt + completion, or a whole rollout) and the verifier's reasons.

    ``task_history``: the moves before the learner's first turn (the GRPO export's column); ``history``:
    every action of the episode, when the rollout knows it. A game's conversation without ``history``
    has its history read back from the turn prompts (``chat_replay``), so a game played to its end
    scores its outcome, as the verify stage scores the same trajectory."""
    from orbit.stages.verify import BELOW_THRESHOLD, verify_record

    from orbit.envs import EnvsFileError, find_env

    try:
        if find_env(env) is None:
            return 0.0, ["reward.env_unknown"]
    except EnvsFileError:
        LOG.warning("the envs file does not load; every reward is 0.0", exc_info=True)
        return 0.0, ["reward.envs_file_invalid"]
    try:
        spec = json.loads(task_spec) if isinstance(task_spec, str) else task_spec
        prefix = json.loads(task_history) if isinstance(task_history, str) else task_history
        full = json.loads(history) if isinstance(history, str) else history
    except (ValueError, RecursionError):
        return 0.0, ["reward.column_not_json"]
    if not isinstance(spec, Mapping):
        return 0.0, ["reward.task_spec_not_object"]
    spec = dict(spec)
    prefix = [] if prefix is None else prefix
    if not isinstance(prefix, (list, tuple)) or not all(type(a) is int for a in prefix):
        return 0.0, ["reward.task_history_invalid"]
    if full is not None and (not isinstance(full, (list, tuple)) or not all(type(a) is int for a in full)):
        return 0.0, ["reward.history_invalid"]
    prefix, full = list(prefix), None if full is None else list(full)
    metadata: dict[str, Any] = {"task": spec}
    if prefix or env != "liveweb":
        metadata["history"] = prefix
    record = {"env": env, "task_id": task_id, "seed": spec.get("seed") if isinstance(spec, dict) else None,
              "messages": list(trajectory), "tools": tools, "score": None, "metadata": json.dumps(metadata)}
    verifier, env_spec = _verifier(env, cache_dir or os.environ.get("ORBIT_LIVEWEB_CACHE"))
    problem = None
    complete = getattr(_family(env_spec), "rollout_record", None)
    if complete is not None:  # the family completes a rollout's record (a game: its history from the chat)
        record, problem = complete(env_spec, record, prefix, full)
    value, passed, reasons = verify_record(record, verifier, env_spec.pass_threshold)
    if problem:
        return 0.0, [problem, *reasons]
    if not reasons or (passed and value > 0) or set(reasons) == {BELOW_THRESHOLD}:
        return float(value), reasons  # the verifier's score: a lost game 0, a draw what the env gives it
    kinds = {r.split(":", 1)[0] for r in reasons}
    if kinds <= set(UNFINISHED_REASONS):
        return UNFINISHED_REWARD, reasons
    return 0.0, reasons


def _family(env_spec):
    from orbit.envs import family_of

    return family_of(env_spec)


def _column(kwargs: Mapping[str, Any], name: str, n: int) -> list:
    value = kwargs.get(name)
    if isinstance(value, (list, tuple)):
        value = list(value)
        return value + [None] * (n - len(value))
    return [value] * n


def _trajectory(completion: Any, prompt: Any, conversation: Any) -> list[dict]:
    if isinstance(conversation, (list, tuple)) and conversation:  # ms-swift: the whole conversation
        conversation = list(conversation)
        last = conversation[-1] if isinstance(conversation[-1], Mapping) else {}
        if last.get("role", "assistant") == "assistant":  # ending in the completion
            return _clean(conversation[:-1]) + _as_messages(last if last.get("tool_calls") else completion)
        return _clean(conversation)  # a multi-turn rollout closed by the environment (a game's final observation)
    if not isinstance(prompt, (list, tuple)):
        prompt = [{"role": "user", "content": prompt if isinstance(prompt, str) else ""}]
    return _clean(prompt) + _as_messages(completion)


def _one(completion: Any, prompt: Any, conversation: Any, env: Any, spec: Any, task_id: Any, history: Any,
         full_history: Any, tools: Any) -> tuple[float, list[str]]:
    if not isinstance(env, str) or not env:
        return 0.0, ["reward.env_missing"]
    if spec is None:
        return 0.0, ["reward.task_spec_missing"]
    if isinstance(completion, str) and len(completion) > MAX_COMPLETION_CHARS:
        completion = completion[:MAX_COMPLETION_CHARS]
    trajectory = _trajectory(completion, prompt, conversation)
    return score(env, spec, trajectory, task_id=task_id if isinstance(task_id, str) else None,
                 task_history=history, history=full_history, tools=tools if isinstance(tools, str) else None)


def reward_func(completions: Sequence[Any], prompts: Sequence[Any] | None = None, **kwargs: Any) -> list[float]:
    """TRL ``reward_funcs`` callable (also what the ms-swift ORM calls): one reward per completion.

    Never raises: whatever a completion or a column holds (text a model degenerated into, mistyped
    columns, an unknown env), each reward is a float in [0, 1]; a completion that cannot be scored gets
    0 with its reason in ``LAST_REASONS`` and the ``orbit.rewards`` log."""
    try:
        completions = list(completions)
    except TypeError:
        completions = [completions]
    n = len(completions)
    prompts = list(prompts) if isinstance(prompts, (list, tuple)) else _column(kwargs, "prompt", n)
    columns = [_column(kwargs, name, n) for name in
               ("messages", "env", "task_spec", "task_id", "task_history", "history", "tools")]
    rewards, reasons = [], []
    for i, completion in enumerate(completions):
        try:
            value, why = _one(completion, prompts[i] if i < len(prompts) else None,
                              *(column[i] if i < len(column) else None for column in columns))
            value = float(value)
        except Exception as exc:  # noqa: BLE001 -- RecursionError included: one completion never stops a trainer
            value, why = 0.0, [f"reward.error:{type(exc).__name__}"]
            LOG.warning("orbit reward: completion %d scored 0 (%s)", i, why[0])
        if not math.isfinite(value):
            value, why = 0.0, [*why, "reward.not_finite"]
        rewards.append(min(1.0, max(0.0, value)))
        reasons.append([str(r) for r in why])
    LAST_REASONS[:] = reasons
    return rewards


try:  # ms-swift: --external_plugins <this file> --reward_funcs orbit_verifier
    from swift.rewards import ORM, orms
except ImportError:  # not running under ms-swift
    ORM, orms = object, None


class OrbitVerifierORM(ORM):
    """ms-swift ORM wrapper of ``reward_func``."""

    def __init__(self, args: Any = None, **kwargs: Any):
        self.args = args

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return reward_func(completions, **kwargs)


if orms is not None:
    orms["orbit_verifier"] = OrbitVerifierORM
