"""A chat policy in the learner's seat: one ``complete`` call per learner turn.

The policy's answer is stepped as the action text, raw (TextArena finds e.g. ``[4]`` in it; an answer
it rejects is a retry or, repeated, a loss, as TextArena rules). The other seat is the fixed opponent, a
pure function of the task, or with ``opponent = "self"`` the same policy in its own conversation. So a
sample is a pure function of (round, env, task, sample index) and the policy's answers. A failed request
ends the episode (score 0, ``metadata.sample_error``); so do ``max_turns`` learner turns (``terminated:
"max_turns"``) and an answer the family does not step (``action.too_long``: longer than MAX_ACTION_CHARS,
past MAX_TOTAL_ACTION_CHARS in all, or a text SimpleNegotiation's parser would stall on). Every request
asks for at most ``ANSWER_MAX_TOKENS`` (the env's ``max_tokens`` overrides it in the generate stage).
"""

from typing import Awaitable, Callable, Mapping

from orbit.envs.textarena import agents
from orbit.envs.textarena.episode import (MAX_ACTIONS, MAX_TURNS_REACHED, TOO_LONG, Episode, episode_metadata,
                                          record_of)
from orbit.envs.textarena.games import MAX_TOTAL_ACTION_CHARS
from orbit.envs.textarena.options import Options
from orbit.envs.textarena.prompts import ANSWER_MAX_TOKENS, system_prompt
from orbit.envs.textarena.session import Session
from orbit.envs.textarena.tasks import Task, opponent_seed, sample_seed
from orbit.io.schema import message
from orbit.policies.base import Decoding

# complete(messages, tools, step, seed, decoding=None) -> Turn (orbit.policies.base.Turn)
Complete = Callable[..., Awaitable]
_SEED_MOD = 2**63


async def play_policy(options: Options, task: Task, *, env: str, round_key: str, sample_idx: int, policy_id: str,
                      complete: Complete, extra_metadata: Mapping | None = None,
                      max_tokens: int = ANSWER_MAX_TOKENS) -> dict:
    game, seat = options.game, task.seat
    seed = sample_seed(env, round_key, task, sample_idx)
    session = Session(game, task.seed, isolated=True)  # rollouts interleave: the game keeps its own random
    episode = Episode(task, [message("system", system_prompt(task.env_id, seat))])
    actions = episode.actions
    self_play = options.opponent == "self"
    conversations = {seat: episode.messages}
    if self_play:
        for pid in range(game.num_players):
            conversations.setdefault(pid, [message("system", system_prompt(task.env_id, pid))])
    decoding = Decoding(max_tokens=max_tokens)
    other_seed = opponent_seed(task)
    calls = turns = prompt_tokens = completion_tokens = chars = 0
    cost = sample_error = None
    while not session.done:
        pid = session.current
        if len(actions) >= MAX_ACTIONS or (pid == seat and turns >= options.max_turns):
            episode.terminated = MAX_TURNS_REACHED
            break
        chat = conversations.get(pid)
        if chat is not None:
            chat.append(message("user", session.observe(pid)))
            reply = await complete(list(chat), None, calls, (seed + calls) % _SEED_MOD, decoding=decoding)
            calls += 1
            prompt_tokens += reply.prompt_tokens
            completion_tokens += reply.completion_tokens
            if reply.cost is not None:
                cost = (cost or 0.0) + reply.cost
            if not reply.ok:
                sample_error = episode.terminated = reply.error or "policy.error"
                break
            text = reply.message.get("content") or ""
            chat.append(message("assistant", text))
            turns += pid == seat
        else:
            text = agents.act(options.opponent, game, session.env, pid, other_seed, len(actions))
        actions.append([pid, text])
        chars += len(text)
        if game.unsafe(text) or chars > MAX_TOTAL_ACTION_CHARS:
            episode.terminated = TOO_LONG
            break
        try:
            session.step(text)
        except Exception as exc:  # noqa: BLE001 - TextArena's parser failing on an answer ends the episode
            episode.terminated = f"env.error:{type(exc).__name__}"
            break
    if session.done:
        episode.finish(session)
    extra = {"usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "calls": calls,
                       "cost": cost}, **dict(extra_metadata or {})}
    if sample_error is not None:
        extra["sample_error"] = sample_error
    metadata = episode_metadata(episode, options, "policy", extra)
    return record_of(env, round_key, sample_idx, "policy", policy_id, seed, episode, metadata)
