"""A chat policy in the learner's seat: one policy call per learner move.

The opponent and chance are the same seeded bots as in self-play, so a
policy's sample is a pure function of (round, env, task seed, sample index) and
the policy's answers. An unparseable or illegal answer ends the match as a loss
with a named reason (in ``match_steps``); a failed request ends it with the
request's reason in ``metadata.sample_error``.

Each move's request carries a ``Decoding``: the answer budget (``ANSWER_MAX_TOKENS``) and the
legal move IDs, which an endpoint with constrained decoding turns into a JSON schema. The
answer is still read by ``parse_answer`` and checked against the legal moves, here and again
by the verifier. ``usage.cost`` is null unless the policy priced some request.
"""

from typing import Awaitable, Callable, Mapping

from orbit.envs.openspiel.bots import make_bot
from orbit.envs.openspiel.cfr import PolicyTable
from orbit.envs.openspiel.match import MatchResult, learner_score, match_steps
from orbit.envs.openspiel.prompts import ANSWER_FORMAT, ANSWER_KEY, ANSWER_MAX_TOKENS, legal_ids
from orbit.policies.base import Decoding
from orbit.envs.openspiel.tasks import GameTask, load_game, match_seed
from orbit.io.schema import make_record

# complete(messages, tools, step, seed, decoding=None) -> Turn (orbit.policies.base.Turn)
Complete = Callable[..., Awaitable]


async def play_policy_match(task: GameTask, *, env: str, round_key: str, sample_idx: int, policy_id: str,
                            opponent: Mapping, complete: Complete, cfr_table: PolicyTable | None = None,
                            extra_metadata: Mapping | None = None, max_tokens: int = ANSWER_MAX_TOKENS) -> dict:
    game = load_game(task)
    seed = match_seed(round_key, env, task.seed, sample_idx)
    steps = match_steps(task, make_bot(opponent, game, seed + 2, cfr_table), seed)
    turn = next(steps)
    step, sample_error, result = 0, None, None
    prompt_tokens = completion_tokens = 0
    cost = None
    while result is None:
        decoding = Decoding(max_tokens=max_tokens, choices=legal_ids(turn.state, task.seat), choice_key=ANSWER_KEY)
        reply = await complete(turn.messages, None, step, seed + step, decoding=decoding)
        prompt_tokens += reply.prompt_tokens
        completion_tokens += reply.completion_tokens
        if reply.cost is not None:
            cost = (cost or 0.0) + reply.cost
        if not reply.ok:
            sample_error = reply.error
            result = MatchResult(messages=list(turn.messages), history=list(turn.state.history()),
                                 returns=None, terminated=reply.error)
            break
        try:
            turn = steps.send(reply.message.get("content") or "")
        except StopIteration as stop:
            result = stop.value
        step += 1
    metadata = {
        "task": task.to_json(), "history": result.history, "returns": result.returns,
        "terminated": result.terminated, "opponent": dict(opponent),
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "calls": step + (sample_error is not None), "cost": cost},
        "answer_format": ANSWER_FORMAT,
        **dict(extra_metadata or {}),
    }
    if sample_error:
        metadata["sample_error"] = sample_error
    return make_record(
        env=env, task_id=task.task_id, round_key=round_key, sample_idx=sample_idx, source="policy",
        policy=policy_id, seed=seed, messages=result.messages, score=learner_score(result.returns, task.seat),
        metadata=metadata,
    )
