"""The LiveWeb trace verifier: replays a trajectory against the cache and grades its answers.

It trusts only the task spec in the record's metadata (seed, template ids,
parameters) and the cache. It rebuilds the task from the seed and checks that the
spec and the question match, replays every tool call in order through a fresh
``LiveWebEnvironment`` and requires each tool message to answer the call just
before it with exactly the replayed observation, then grades each answer in the
final ``stop`` with its site plugin against ground truth recomputed from
``api_data``. The score is the fraction of questions answered correctly, or 0
when any trace rule is broken; ``reasons`` names every broken rule.

Rules: ``tool.unknown``, ``tool.arguments_not_json``, ``tool.arguments_invalid``,
``tool_call.not_single`` (one call per assistant message), ``tool_call.malformed`` (calls not a list
of objects), ``tool_call.missing_id`` (a call without a non-empty string id), ``tool_call_id.unmatched``
(a tool message that answers no pending call),
``observation.fabricated``, ``observation.missing``, ``navigation.outside_cache``
(a URL the cache does not hold: the episode left the recorded web),
``cache.page_invalid``, ``trajectory.unexpected_message``, ``trajectory.call_after_stop``,
``trajectory.missing_stop``, ``task.spec_invalid``, ``task.prompt_mismatch``,
``task.build_failed``, ``record.env_mismatch`` (the record is not of this verifier's env),
``record.metadata_not_object``, ``record.tools_mismatch`` (tools other than LiveWeb's own),
``prompt.system_mismatch`` (the prompt is not LiveWeb's system prompt and the task's question),
``score.claim_invalid`` (a claimed score that is not a finite number
in [0, 1]); ``answer.missing:<i>`` and ``answer.wrong:<i>`` (question
``i``, from 1) only lower the score.
"""

import json
import math
from typing import Any, Mapping

from orbit.envs.base import EnvSpec, Verdict
from orbit.envs.registry import find_env
from orbit.envs.liveweb.cache import PageCache, PageError
from orbit.envs.liveweb.environment import (
    CALL_AFTER_STOP, OUTSIDE_CACHE, PAGE_INVALID, LiveWebEnvironment,
)
from orbit.envs.liveweb.tasks import MAX_SUBTASKS, Task, build_task, choose_templates
from orbit.envs.liveweb.teacher import BUILD_FAILED
from orbit.envs.liveweb.tools import (
    ARGUMENTS_INVALID, ARGUMENTS_NOT_JSON, SYSTEM_PROMPT, TOOL_SCHEMAS, TOOLS_JSON, UNKNOWN_TOOL,
)
from orbit.io.schema import prompt_of

VERIFIER_NAME = "liveweb_trace"
VERIFIER_VERSION = "1"

SPEC_INVALID = "task.spec_invalid"
PROMPT_MISMATCH = "task.prompt_mismatch"
NOT_SINGLE = "tool_call.not_single"
ID_UNMATCHED = "tool_call_id.unmatched"
FABRICATED = "observation.fabricated"
MISSING_OBSERVATION = "observation.missing"
UNEXPECTED_MESSAGE = "trajectory.unexpected_message"
MISSING_STOP = "trajectory.missing_stop"
MALFORMED_CALLS = "tool_call.malformed"
MISSING_ID = "tool_call.missing_id"
ENV_MISMATCH = "record.env_mismatch"
METADATA_INVALID = "record.metadata_not_object"
CLAIM_INVALID = "score.claim_invalid"
SYSTEM_MISMATCH = "prompt.system_mismatch"
TOOLS_MISMATCH = "record.tools_mismatch"
MAX_SEED = 2**63 - 1
ANSWER_MISSING = "answer.missing"
ANSWER_WRONG = "answer.wrong"
# Environment errors that invalidate a trace; other failed actions (a click on a
# link id the page lacks) are honest mistakes the episode may recover from.
TRACE_ERRORS = frozenset({UNKNOWN_TOOL, ARGUMENTS_NOT_JSON, ARGUMENTS_INVALID, OUTSIDE_CACHE, PAGE_INVALID,
                          CALL_AFTER_STOP})


def _spec_of(metadata: Any) -> tuple[int, list[Mapping[str, Any]]] | None:
    spec = metadata.get("task") if isinstance(metadata, dict) else None
    if not isinstance(spec, dict):
        return None
    seed, subtasks = spec.get("seed"), spec.get("subtasks")
    if isinstance(seed, bool) or not isinstance(seed, int) or not isinstance(subtasks, list):
        return None
    if not -MAX_SEED <= seed <= MAX_SEED:
        return None
    if not 1 <= len(subtasks) <= MAX_SUBTASKS or not all(isinstance(s, dict) for s in subtasks):
        return None
    if not all(isinstance(s.get("template"), str) and isinstance(s.get("params"), dict) for s in subtasks):
        return None
    return seed, subtasks


def _claim_valid(claimed: Any) -> bool:
    """No claim, or a finite number in [0, 1] (a bool is not a number)."""
    if claimed is None:
        return True
    if isinstance(claimed, bool) or not isinstance(claimed, (int, float)):
        return False
    return (isinstance(claimed, int) or math.isfinite(claimed)) and 0 <= claimed <= 1


def _tools_valid(tools: Any) -> bool:
    """No tools column, or exactly LiveWeb's tool schemas (what the model was shown is what it is trained on)."""
    if tools is None or tools == TOOLS_JSON:
        return True
    try:
        return isinstance(tools, str) and json.loads(tools) == TOOL_SCHEMAS
    except (ValueError, RecursionError):
        return False


def _call_id(call: Mapping[str, Any]) -> str | None:
    call_id = call.get("id")
    return call_id if isinstance(call_id, str) and call_id else None


class TraceVerifier:
    """Verifier of LiveWeb records over one page cache (pages are memoised across records)."""

    name = VERIFIER_NAME
    version = VERIFIER_VERSION

    def __init__(self, cache: PageCache, spec: EnvSpec | None = None):
        """``spec``: the partition's env; without it the record must name a LiveWeb env."""
        self.cache = cache
        self.spec = spec
        self.env = LiveWebEnvironment(cache)

    def _env_ok(self, record: Mapping[str, Any]) -> bool:
        name = record.get("env")
        if self.spec is not None:
            return name == self.spec.name
        spec = find_env(name)
        return spec is not None and spec.family == "liveweb"

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        if not self._env_ok(record):
            return Verdict(0.0, (ENV_MISMATCH,))
        try:
            metadata = json.loads(record.get("metadata") or "{}")
        except (TypeError, ValueError, RecursionError):
            return Verdict(0.0, (METADATA_INVALID,))
        if not isinstance(metadata, dict):
            return Verdict(0.0, (METADATA_INVALID,))
        if not _claim_valid(record.get("score")):
            return Verdict(0.0, (CLAIM_INVALID,))
        if not _tools_valid(record.get("tools")):
            return Verdict(0.0, (TOOLS_MISMATCH,))
        if "task_error" in metadata:
            return Verdict(0.0, self._build_failure(metadata))
        messages = record.get("messages")
        messages = list(messages) if isinstance(messages, (list, tuple)) else []
        task = self._rebuild(record, metadata, messages)
        if isinstance(task, str):
            return Verdict(0.0, (task,))
        reasons = self._replay(messages, len(prompt_of(messages)))
        if not self.env.done:
            reasons.append(MISSING_STOP)
            return Verdict(0.0, tuple(reasons))
        answer_reasons = self._grade(task, self.env.answers)
        score = 0.0 if reasons else 1.0 - len(answer_reasons) / len(task.subtasks)
        return Verdict(score, tuple(reasons + answer_reasons))

    @staticmethod
    def _build_failure(metadata: Mapping[str, Any]) -> tuple[str, ...]:
        reason = str(metadata.get("task_error_reason") or BUILD_FAILED)
        detail = f"{reason}:{metadata['task_error']}"
        return (detail,) if reason == BUILD_FAILED else (BUILD_FAILED, detail)

    def _rebuild(self, record: Mapping[str, Any], metadata: Any, messages: list[Any]) -> Task | str:
        """The task recomputed from the spec's seed, or the reason id why it cannot be trusted."""
        spec = _spec_of(metadata)
        if spec is None:
            return SPEC_INVALID
        seed, subtasks = spec
        if [t.id for t in choose_templates(seed, len(subtasks))] != [s.get("template") for s in subtasks]:
            return SPEC_INVALID
        try:
            task = build_task(self.cache, seed, len(subtasks))
        except PageError as exc:
            return f"{PAGE_INVALID}:{exc}"
        except Exception as exc:  # cache data no template foresaw: the task cannot be rebuilt
            return f"{BUILD_FAILED}:{type(exc).__name__}: {exc}"
        if [dict(s.params) for s in task.subtasks] != [s.get("params") for s in subtasks]:
            return SPEC_INVALID
        if record.get("task_id") != task.task_id or record.get("seed") not in (None, seed):
            return SPEC_INVALID
        prompt = prompt_of(messages)
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if not users or users[-1].get("content") != task.prompt:
            return PROMPT_MISMATCH
        first = prompt[0] if isinstance(prompt[0], dict) else {}
        if len(prompt) != 2 or first.get("role") != "system" or first.get("content") != SYSTEM_PROMPT:
            return SYSTEM_MISMATCH
        return task

    def _replay(self, messages: list[Any], start: int) -> list[str]:
        """Replay every call after the prompt (which holds only system and user messages).

        Returns the reason ids, suffixed with the message index, of the rules broken.
        """
        self.env.reset()
        reasons = [f"{UNEXPECTED_MESSAGE}:{i}" for i, m in enumerate(messages[:start])
                   if not isinstance(m, Mapping) or m.get("role") not in ("system", "user")]
        pending: list[tuple[Any, Any, str, bool]] = []  # (call id, name, observation, is the accepted stop)
        for index in range(start, len(messages)):
            m = messages[index] if isinstance(messages[index], Mapping) else {}
            role = m.get("role")
            if role == "assistant":
                reasons += [f"{MISSING_OBSERVATION}:{index}" for _ in pending]
                pending = []
                calls = m.get("tool_calls") or []
                if not isinstance(calls, (list, tuple)) or not all(isinstance(c, Mapping) for c in calls):
                    reasons.append(f"{MALFORMED_CALLS}:{index}")
                    continue
                if len(calls) > 1:
                    reasons.append(f"{NOT_SINGLE}:{index}")
                for call in calls:
                    function = call.get("function")
                    function = function if isinstance(function, Mapping) else {}
                    call_id = _call_id(call)
                    if call_id is None or any(call_id == p[0] for p in pending):
                        reasons.append(f"{MISSING_ID}:{index}")
                    try:
                        result = self.env.step(function.get("name"), function.get("arguments"))
                    except RecursionError:
                        reasons.append(f"{ARGUMENTS_NOT_JSON}:{index}")
                        continue
                    if result.error in TRACE_ERRORS:
                        reasons.append(f"{result.error}:{index}")
                    is_stop = function.get("name") == "stop" and result.error is None
                    pending.append((call_id, function.get("name"), result.observation, is_stop))
            elif role == "tool":
                tool_call_id = m.get("tool_call_id")
                if not pending or not isinstance(tool_call_id, str) or pending[0][0] is None \
                        or tool_call_id != pending[0][0]:
                    reasons.append(f"{ID_UNMATCHED}:{index}")
                    continue
                _, name, observation, _ = pending.pop(0)
                if m.get("name") not in (None, name):
                    reasons.append(f"{ID_UNMATCHED}:{index}")
                elif m.get("content") != observation:
                    reasons.append(f"{FABRICATED}:{index}")
            else:
                reasons.append(f"{UNEXPECTED_MESSAGE}:{index}")
        # the final stop may go unanswered; any other call needs its result
        reasons += [f"{MISSING_OBSERVATION}:{len(messages)}" for *_, is_stop in pending if not is_stop]
        return reasons

    @staticmethod
    def _grade(task: Task, answers: list | dict) -> list[str]:
        reasons = []
        for number, subtask in enumerate(task.subtasks, 1):
            if isinstance(answers, list):
                answer = answers[number - 1] if number <= len(answers) else None
            else:
                answer = answers.get(str(number))
            if answer is None:
                reasons.append(f"{ANSWER_MISSING}:{number}")
            elif not subtask.template.site.check(answer, subtask.truth):
                reasons.append(f"{ANSWER_WRONG}:{number}")
        return reasons
