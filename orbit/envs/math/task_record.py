"""What the math and code families share: what their verifiers check of a record before grading its answer: the env, the task spec
against the env's task file, the task id, no tools, and the system/user/assistant chat whose prompts are
the family's system prompt and the task's own text; and a policy's one-request sample."""

from typing import Any, Callable, Mapping

from orbit.policies.accounting import call_usage
from orbit.envs.base import Verdict
from orbit.io.jsonmemo import loads_shared
from orbit.io.plain_messages import PlainTexts
from orbit.io.schema import make_record, message
from orbit.policies.base import Decoding

ENV_MISMATCH = "record.env_mismatch"
METADATA_INVALID = "record.metadata_not_object"
SPEC_INVALID = "task.spec_invalid"
TASK_UNKNOWN = "task.unknown"
TASK_ENV_MISMATCH = "task.env_mismatch"
TASK_ID_MISMATCH = "task.id_mismatch"
TOOLS_MISMATCH = "record.tools_mismatch"
TOOL_USE = "trajectory.unexpected_tool_call"
TURN_ORDER = "trajectory.turn_order"
SYSTEM_MISMATCH = "prompt.system_mismatch"
PROMPT_MISMATCH = "prompt.mismatch"
ROLES = ("system", "user", "assistant")


def chat_texts(record: Mapping[str, Any]) -> tuple[list, list] | str:
    """(roles, texts) of a record's chat without tool use, or the reason id why it is not one."""
    messages = record.get("messages")
    if type(messages) is PlainTexts:
        return list(messages.roles), list(messages.texts)
    if not isinstance(messages, (list, tuple)) or not all(isinstance(m, Mapping) for m in messages):
        return TURN_ORDER
    for i, m in enumerate(messages):
        if m.get("tool_calls") or m.get("tool_call_id") is not None or m.get("role") == "tool":
            return f"{TOOL_USE}:{i}"
    return [m.get("role") for m in messages], [m.get("content") for m in messages]


def check_task_record(record: Mapping[str, Any], env_name: str, tasks_by_id: Mapping[str, Any], system_prompt: str,
                      prompt_of: Callable[[Any], str]) -> Verdict | tuple[Any, Any]:
    """A failed verdict, or ``(task, reply)``: the record's task from the env's task file and the assistant's
    text, once everything but the answer checks out."""
    if record.get("env") != env_name:
        return Verdict(0.0, (ENV_MISMATCH,))
    try:
        meta = loads_shared(record.get("metadata") or "{}")
    except (TypeError, ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        return Verdict(0.0, (METADATA_INVALID,))
    spec = meta.get("task")
    if not isinstance(spec, dict) or type(spec.get("id")) is not str:
        return Verdict(0.0, (SPEC_INVALID,))
    task = tasks_by_id.get(spec["id"])
    if task is None:
        return Verdict(0.0, (TASK_UNKNOWN,))
    if spec != task.spec:
        return Verdict(0.0, (TASK_ENV_MISMATCH,))
    if record.get("task_id") != task.task_id:
        return Verdict(0.0, (TASK_ID_MISMATCH,))
    if record.get("tools") is not None:
        return Verdict(0.0, (TOOLS_MISMATCH,))
    chat = chat_texts(record)
    if isinstance(chat, str):
        return Verdict(0.0, (chat,))
    roles, texts = chat
    if tuple(roles) != ROLES:
        return Verdict(0.0, (TURN_ORDER,))
    reasons = []
    if texts[0] != system_prompt:
        reasons.append(SYSTEM_MISMATCH)
    if texts[1] != prompt_of(task):
        reasons.append(PROMPT_MISMATCH)
    if reasons:
        return Verdict(0.0, tuple(reasons))
    return task, texts[2]


async def answer_once(request: Any, task: Any, sample_idx: int, policy_id: str, complete, extra_metadata, *,
                      seed: int, messages: list[dict], answer_format: str, max_tokens: int) -> dict:
    """A policy's one-request sample of a math or code task: the record of its reply (score left to the
    verifier), or of the failed request (score 0, ``metadata.sample_error``)."""
    reply = await complete(messages, None, 0, seed, decoding=Decoding(max_tokens=max_tokens))
    metadata: dict[str, Any] = {
        "task": task.spec, "sampling_seed": seed, "answer_format": answer_format,
        "usage": call_usage(reply),
        **dict(extra_metadata or {}),
    }
    if reply.finish_reason is not None:
        metadata["finish_reason"] = reply.finish_reason
    if not reply.ok:
        metadata["sample_error"] = reply.error
        score = 0.0
    else:
        turn = dict(reply.message or {})
        messages = messages + [message("assistant", turn.get("content"), tool_calls=turn.get("tool_calls") or None)]
        score = None  # the verifier scores the reply
    return make_record(env=request.env.name, task_id=task.task_id, round_key=request.round_key,
                       sample_idx=sample_idx, source="policy", policy=policy_id, seed=seed, messages=messages,
                       score=score, metadata=metadata)
