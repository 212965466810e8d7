"""The reasoning-gym verifier: regenerates the item from the record's task spec and scores the answer.

It trusts nothing in the record. In order, each failure with its own reason:

- ``record.not_object``: the record is no mapping; ``record.env_mismatch``: it is not of this verifier's env;
- ``record.metadata_not_object``: metadata is not a JSON object (extra keys, e.g. ``history``, are fine);
- ``task.env_mismatch``: the spec's task, config or level is not the env's (task and effective config,
  at one of the env's curriculum levels when it declares any; config compared value for value and
  type for type);
- ``task.spec_invalid:<what>``: the spec is not an object, has other keys, or its seed, size or index
  is not an int in range (seed 0..2**31-1, size 1..1,000,000, index 0..size-1);
- ``task.id_mismatch``: the record's task id is not the one derived from the spec (a missing one neither);
- ``record.tools_mismatch``: the record offers tools; ``trajectory.unexpected_tool_call:<i>``: a message
  calls or answers one;
- ``trajectory.turn_order``: the messages are not exactly system, user, assistant;
- ``task.build_failed:<ExceptionType>``: the item cannot be regenerated from the spec;
- ``prompt.system_mismatch`` / ``prompt.mismatch``: the system prompt is not the family's, the user
  message is not the regenerated question;
- then the answer (``grading``): ``answer.missing``, ``answer.multiple``, ``answer.unclosed``,
  ``answer.nested``, ``answer.not_final``, ``answer.empty``, ``answer.too_long``,
  ``answer.non_ascii_digits``, ``answer.unsafe_expression``, ``answer.scorer_error:<Type>``,
  ``answer.partial_credit`` (the score is kept), ``answer.wrong``.

(``env.options_refused:<key>`` when the env's own options are refused: ``options.check``.)

The score is the task's ``score_answer`` on the regenerated item; a claimed score is not read (the
verify stage keeps it beside the recomputed one). ``verify`` never raises: whatever slips past the
checks above fails the record with ``verify.internal_error:<ExceptionType>``.

The verifier pickles as its env alone; the resolved task, the partitions' spec texts and the dataset
and item caches (``items``) are per process, made on first use. The item cache also keeps each
item's task id, so a record of an item this process made (generated, or verified before) costs no
hashing; for any other, the task id is checked before the item is regenerated.
"""

import dataclasses
from typing import Any, Mapping

from orbit.envs.base import EnvOptionError, EnvSpec, Verdict
from orbit.envs.reasoning_gym import items
from orbit.envs.reasoning_gym.grading import grade
from orbit.envs.reasoning_gym.guards import answer_guard
from orbit.envs.reasoning_gym.options import MAX_SIZE
from orbit.envs.reasoning_gym.prompts import SYSTEM_PROMPT
from orbit.io.jsonmemo import loads_shared
from orbit.io.plain_messages import PlainTexts, chat_order

VERIFIER_NAME = "reasoning_gym"
VERIFIER_VERSION = "1"

NOT_OBJECT = "record.not_object"
ENV_MISMATCH = "record.env_mismatch"
METADATA_INVALID = "record.metadata_not_object"
TASK_ENV_MISMATCH = "task.env_mismatch"
SPEC_INVALID = "task.spec_invalid"
TASK_ID_MISMATCH = "task.id_mismatch"
BUILD_FAILED = "task.build_failed"
TOOLS_MISMATCH = "record.tools_mismatch"
TOOL_USE = "trajectory.unexpected_tool_call"
TURN_ORDER = "trajectory.turn_order"
SYSTEM_MISMATCH = "prompt.system_mismatch"
PROMPT_MISMATCH = "prompt.mismatch"
INTERNAL_ERROR = "verify.internal_error"
ENV_REFUSED = "env.options_refused"

SPEC_KEYS = frozenset({"task", "config", "seed", "size", "index"})
LEVEL_SPEC_KEYS = SPEC_KEYS | {"level"}
ROLES = ["system", "user", "assistant"]
_ORDER = chat_order(3)  # the roles list the verify stage shares between plain rows in this order
_MISSING = object()
MAX_PARTITIONS = 8  # [spec texts, dataset] remembered per verifier (a dataset may hold much data)


_VERDICTS: dict[tuple, Verdict] = {}  # the verdicts of score 0 or 1, made once (a frozen dataclass is slow to make)
MAX_VERDICTS = 4096


def _verdict(score: float, reasons: tuple[str, ...] = ()) -> Verdict:
    if score != 0.0 and score != 1.0:
        return Verdict(score, reasons)
    key = (score, reasons)
    found = _VERDICTS.get(key)
    if found is None:
        if len(_VERDICTS) >= MAX_VERDICTS:
            _VERDICTS.clear()
        found = _VERDICTS[key] = Verdict(float(score), reasons)
    return found


PASS = Verdict(1.0, ())


def _plain(value: Any) -> Any:
    """Options as plain dicts and lists (a read-only mapping does not pickle)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class AnswerVerifier:
    parallel_safe = True  # a verdict depends on the record alone: batches may be verified anywhere
    columns = ("env", "task_id", "messages", "tools", "metadata")  # all it reads of a record
    reads_plain_texts = True  # of a plain chat message it reads the role and the text only (PlainTexts)
    name = VERIFIER_NAME
    version = VERIFIER_VERSION

    def __init__(self, env: EnvSpec):
        self.env = env
        self._env_name = env.name
        self._resolved: items.ResolvedEnv | None = None  # per process, on first use (never pickled)
        self._guard = None
        self._partitions: dict[tuple, list] = {}  # [spec texts, dataset] per (config, seed, size), per process

    def __getstate__(self) -> dict:
        return {"env": dataclasses.replace(self.env, options=_plain(self.env.options))}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["env"])

    def resolved(self) -> items.ResolvedEnv:
        """The env's task at its levels (``items.resolve``; raises ``EnvOptionError`` for options it refuses)."""
        if self._resolved is None:
            self._resolved = items.resolve(self.env)  # reasoning-gym is imported here, once per process
            self._guard = answer_guard(self._resolved.options.task)
        return self._resolved

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        try:
            return self._verify(record)
        except Exception as exc:  # a hostile record must never take the partition down
            return _verdict(0.0, (f"{INTERNAL_ERROR}:{type(exc).__name__}",))

    def _spec(self, resolved: items.ResolvedEnv, spec: Any):
        """[partition, dataset or None] and the index of a record's task spec, or the reason id it is refused."""
        if type(spec) is not dict:
            return f"{SPEC_INVALID}:not_object", None
        options = resolved.options
        if spec.get("task") != options.task:
            return TASK_ENV_MISMATCH, None
        if options.levels is None:
            if "level" in spec:
                return TASK_ENV_MISMATCH, None
            config = resolved.levels[None]
            keys = SPEC_KEYS
        else:
            level = spec.get("level")
            config = resolved.levels.get(level) if type(level) is int else None
            if config is None:
                return TASK_ENV_MISMATCH, None
            keys = LEVEL_SPEC_KEYS
        if not config.same_config(spec.get("config")):
            return TASK_ENV_MISMATCH, None
        if spec.keys() != keys:
            return f"{SPEC_INVALID}:keys", None
        seed, size, index = spec["seed"], spec["size"], spec["index"]
        if type(seed) is not int or not 0 <= seed <= items.MAX_SEED:
            return f"{SPEC_INVALID}:seed", None
        if type(size) is not int or not 1 <= size <= MAX_SIZE:
            return f"{SPEC_INVALID}:size", None
        if type(index) is not int or not 0 <= index < size:
            return f"{SPEC_INVALID}:index", None
        memo = self._partitions.get((config.cache_key, seed, size))
        if memo is None:
            if len(self._partitions) >= MAX_PARTITIONS:
                self._partitions.clear()
            memo = self._partitions[(config.cache_key, seed, size)] = [items.Partition(config, seed, size), None]
        return memo, index

    def _verify(self, record: Mapping[str, Any]) -> Verdict:
        if type(record) is not dict and not isinstance(record, Mapping):
            return _verdict(0.0, (NOT_OBJECT,))
        if record.get("env") != self._env_name:
            return _verdict(0.0, (ENV_MISMATCH,))
        try:
            meta = loads_shared(record.get("metadata") or "{}")  # parsed once with the structural rules
        except (TypeError, ValueError, RecursionError):
            meta = None
        if type(meta) is not dict:
            return _verdict(0.0, (METADATA_INVALID,))
        resolved = self._resolved
        if resolved is None:
            try:
                resolved = self.resolved()
            except EnvOptionError as exc:  # the env itself cannot run (the registry's check refuses it first)
                return _verdict(0.0, (f"{ENV_REFUSED}:{exc.key}",))
        memo, index = self._spec(resolved, meta.get("task"))
        if type(memo) is str:
            return _verdict(0.0, (memo,))
        part = memo[0]
        made = items.cached_entry(part, index)  # (item, task id) when this process has made them already
        if record.get("task_id") != (part.task_id(index) if made is None else made[1]):
            return _verdict(0.0, (TASK_ID_MISMATCH,))
        if record.get("tools") is not None:  # the family offers no tools
            return _verdict(0.0, (TOOLS_MISMATCH,))
        messages = record.get("messages")
        if type(messages) is PlainTexts:  # plain chat: no tool use, every text a str (orbit.io.plain_messages)
            roles = messages.roles
            if roles is not _ORDER and roles != ROLES:
                return _verdict(0.0, (TURN_ORDER,))
            system, question, reply = messages.texts
        else:
            if not isinstance(messages, (list, tuple)) or not all(isinstance(m, Mapping) for m in messages):
                return _verdict(0.0, (TURN_ORDER,))
            tool_use = tuple(f"{TOOL_USE}:{i}" for i, m in enumerate(messages)
                             if m.get("tool_calls") or m.get("tool_call_id") is not None or m.get("role") == "tool")
            if tool_use:
                return _verdict(0.0, tool_use)
            if [m.get("role") for m in messages] != ROLES:
                return _verdict(0.0, (TURN_ORDER,))
            system, question, reply = (m.get("content") for m in messages)
        try:
            entry = (made or items.entry(part, index))[0]
            dataset = memo[1]
            if dataset is None:
                dataset = memo[1] = items.dataset(part.level, part.seed, part.size)
        except Exception as exc:  # the dataset's own code, on a spec the checks let through
            return _verdict(0.0, (f"{BUILD_FAILED}:{type(exc).__name__}",))
        if type(entry) is not dict or question != entry.get("question"):
            return _verdict(0.0, (SYSTEM_MISMATCH, PROMPT_MISMATCH) if system != SYSTEM_PROMPT else (PROMPT_MISMATCH,))
        if system != SYSTEM_PROMPT:
            return _verdict(0.0, (SYSTEM_MISMATCH,))
        score, reasons = grade(reply, entry, dataset, self._guard)
        return PASS if score == 1.0 and not reasons else _verdict(score, reasons)
