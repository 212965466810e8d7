"""A chat policy browsing the LiveWeb tool environment: one policy call per assistant turn.

The policy sees the same system prompt, question and tool schemas as the
teacher's trajectories. Its tool calls are executed against the cache by
``LiveWebEnvironment`` and the observations appended as tool messages; the
episode ends at ``stop``, at an answer without a tool call, at a failed request
(``metadata.sample_error``), or at the turn limit (``policy.turn_limit``). The
trace verifier then grades the record like any other.

Each request carries a ``Decoding`` with the per-turn answer budget (``MAX_TOKENS``; env option
``max_tokens`` overrides it). Assistant tool-call turns are stored with ``content: None`` and
sent with ``content: ""`` (the endpoint does that). ``usage.cost`` is null unless some request
was priced.
"""

from typing import Any, Awaitable, Callable, Mapping

from orbit.envs.liveweb.cache import PageCache
from orbit.envs.liveweb.environment import LiveWebEnvironment
from orbit.envs.liveweb.tasks import Task
from orbit.envs.liveweb.tools import SYSTEM_PROMPT, TOOL_SCHEMAS, TOOLS_JSON
from orbit.policies.base import Decoding
from orbit.io.schema import make_record, message, stable_hash

DEFAULT_MAX_TURNS = 30
MAX_TOKENS = 384
TURN_LIMIT = "policy.turn_limit"

Complete = Callable[..., Awaitable]


async def browse(task: Task, cache: PageCache, *, env_name: str, round_key: str, sample_idx: int, policy_id: str,
                 complete: Complete, max_turns: int = DEFAULT_MAX_TURNS,
                 extra_metadata: Mapping[str, Any] | None = None, max_tokens: int = MAX_TOKENS) -> dict:
    seed = int(stable_hash("liveweb-rollout", round_key, task.seed, sample_idx, length=8), 16)
    env = LiveWebEnvironment(cache)
    env.reset()
    messages = [message("system", SYSTEM_PROMPT), message("user", task.prompt)]
    metadata: dict[str, Any] = {"task": task.spec(), "sampling_seed": seed, **dict(extra_metadata or {})}
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0, "cost": None}
    decoding = Decoding(max_tokens=max_tokens)
    for step in range(max_turns):
        reply = await complete(messages, TOOL_SCHEMAS, step, seed + step, decoding=decoding)
        usage["calls"] += 1
        usage["prompt_tokens"] += reply.prompt_tokens
        usage["completion_tokens"] += reply.completion_tokens
        if reply.cost is not None:
            usage["cost"] = (usage["cost"] or 0.0) + reply.cost
        if not reply.ok:
            metadata["sample_error"] = reply.error
            break
        turn = dict(reply.message)
        messages.append(message("assistant", turn.get("content"), tool_calls=turn.get("tool_calls") or None))
        calls = turn.get("tool_calls") or []
        if not calls:
            break  # an answer in prose: the verifier reports the missing stop
        for call in calls:
            fn = call.get("function") or {}
            result = env.step(fn.get("name") or "", fn.get("arguments") or "")
            messages.append(message("tool", result.observation, tool_call_id=call.get("id"), name=fn.get("name")))
        if env.done:
            break
    else:
        metadata["terminated"] = TURN_LIMIT
    metadata["usage"] = usage
    return make_record(env=env_name, task_id=task.task_id, round_key=round_key, sample_idx=sample_idx,
                       source="policy", policy=policy_id, seed=task.seed, messages=messages, score=None,
                       metadata=metadata, tools=TOOLS_JSON)
