"""A chat policy answering one task: one request, one reply, graded like the verifier grades it.

The policy sees the family's system prompt and the item's question; its request carries a
``Decoding`` with the answer budget (env option ``max_tokens``, default 512) and, with the env option
``answer_grammar``, the grammar the reply must match (``metadata.answer_grammar`` names it). The claimed score is
the reply's grade (``grading.grade`` on the item); the verifier recomputes it. A failed request
(``not turn.ok``) gives a record of the prompt alone, score 0 and ``metadata.sample_error``.
``metadata.usage`` counts the request's tokens and cost (null unless priced).
"""

from typing import Any, Awaitable, Callable, Mapping

from orbit.policies.accounting import call_usage
from orbit.envs.reasoning_gym import items
from orbit.envs.reasoning_gym.grading import grade
from orbit.envs.reasoning_gym.guards import answer_guard
from orbit.envs.reasoning_gym.options import DEFAULT_MAX_TOKENS
from orbit.envs.reasoning_gym.prompts import ANSWER_FORMAT, ANSWER_GRAMMARS, prompt_messages
from orbit.io.schema import make_record, message, stable_hash
from orbit.policies.base import Decoding

# complete(messages, tools, step, seed, decoding=None) -> Turn (orbit.policies.base.Turn)
Complete = Callable[..., Awaitable]


def sampling_seed(env_name: str, round_key: str, task_id: str, sample_idx: int) -> int:
    return int(stable_hash("reasoning_gym-rollout", env_name, round_key, task_id, int(sample_idx), length=8), 16)


async def answer_task(task: items.Task, *, env_name: str, round_key: str, sample_idx: int, policy_id: str,
                      complete: Complete, max_tokens: int = DEFAULT_MAX_TOKENS,
                      extra_metadata: Mapping[str, Any] | None = None, answer_grammar: str | None = None) -> dict:
    seed = sampling_seed(env_name, round_key, task.task_id, sample_idx)
    messages = prompt_messages(task.question)
    grammar = ANSWER_GRAMMARS[answer_grammar] if answer_grammar else None
    reply = await complete(messages, None, 0, seed, decoding=Decoding(max_tokens=max_tokens, grammar=grammar))
    metadata: dict[str, Any] = {
        "task": task.spec, "sampling_seed": seed, "answer_format": ANSWER_FORMAT,
        **({"answer_grammar": answer_grammar} if answer_grammar else {}),
        "usage": call_usage(reply),
        **dict(extra_metadata or {}),
    }
    if reply.finish_reason is not None:
        metadata["finish_reason"] = reply.finish_reason
    score = 0.0
    if not reply.ok:
        metadata["sample_error"] = reply.error
    else:
        turn = dict(reply.message or {})
        calls = turn.get("tool_calls") or None
        messages = messages + [message("assistant", turn.get("content"), tool_calls=calls)]
        if calls is None:
            entry = items.item(task.level, task.seed, task.size, task.index)
            dataset = items.dataset(task.level, task.seed, task.size)
            score, _ = grade(turn.get("content"), entry, dataset, answer_guard(task.level.task))
            score = min(max(score, 0.0), 1.0)
    return make_record(env=env_name, task_id=task.task_id, round_key=round_key, sample_idx=sample_idx,
                       source="policy", policy=policy_id, seed=task.seed, messages=messages, score=score,
                       metadata=metadata)
