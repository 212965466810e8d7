"""Playing one episode with the fixed agents, and the record an episode makes.

The learner's conversation is the system prompt, then per learner turn its observation since its last
turn (user) and its action text (assistant). ``metadata.actions`` is every action of the episode in
order, ``[player id, text]``, both players' and retries after a rejected move included: what the
verifier re-steps.
"""

from dataclasses import dataclass, field
from typing import Any, Mapping

from orbit.envs.textarena import agents
from orbit.envs.textarena.options import Options
from orbit.envs.textarena.prompts import answer_format, system_prompt
from orbit.envs.textarena.session import Session, learner_score
from orbit.envs.textarena.tasks import Task, opponent_seed, sample_seed
from orbit.io.schema import make_record, message

MAX_ACTIONS = 2_000  # actions of both players an episode (and a replay) may hold
MAX_TURNS_REACHED = "max_turns"
TOO_LONG = "action.too_long"


@dataclass
class Episode:
    task: Task
    messages: list[dict]
    actions: list[list] = field(default_factory=list)
    rewards: list[float] | None = None
    terminated: str | None = None

    @property
    def score(self) -> float:
        return learner_score(self.rewards, self.task.seat)

    def finish(self, session: Session) -> None:
        """Take the outcome from a session whose game ended."""
        self.rewards = session.rewards()
        self.terminated = session.reason(self.task.seat) or "game_over"


def opponent_label(options: Options) -> str | None:
    return options.opponent if options.game.num_players > 1 else None


def episode_metadata(episode: Episode, options: Options, learner: str, extra: Mapping | None = None) -> dict:
    return {"task": episode.task.to_json(), "actions": episode.actions, "rewards": episode.rewards,
            "terminated": episode.terminated, "learner": learner, "opponent": opponent_label(options),
            "answer_format": answer_format(options.env_id), **dict(extra or {})}


def play_agents(options: Options, task: Task, learner_seed: int) -> Episode:
    """The learner agent (``options.learner``) in ``task.seat`` against the fixed opponent (or itself, for
    ``opponent = "self"``), to the game's end, ``max_turns`` learner turns or MAX_ACTIONS actions."""
    game, seat = options.game, task.seat
    session = Session(game, task.seed, isolated=True)
    episode = Episode(task, [message("system", system_prompt(task.env_id, seat))])
    actions, messages = episode.actions, episode.messages
    other_kind, other_seed = options.opponent, opponent_seed(task)
    if other_kind == "self":
        other_kind, other_seed = options.learner, learner_seed
    turns = 0
    while not session.done:
        if len(actions) >= MAX_ACTIONS:
            episode.terminated = MAX_TURNS_REACHED
            return episode
        pid = session.current
        if pid == seat:
            if turns >= options.max_turns:
                episode.terminated = MAX_TURNS_REACHED
                return episode
            messages.append(message("user", session.observe(seat)))
            text = agents.act(options.learner, game, session.env, seat, learner_seed, len(actions))
            messages.append(message("assistant", text))
            turns += 1
        else:
            text = agents.act(other_kind, game, session.env, pid, other_seed, len(actions))
        actions.append([pid, text])
        session.step(text)
    episode.finish(session)
    return episode


def selfplay_record(env_name: str, round_key: str, options: Options, task: Task, sample_idx: int) -> dict:
    seed = sample_seed(env_name, round_key, task, sample_idx)
    episode = play_agents(options, task, seed)
    return record_of(env_name, round_key, sample_idx, "selfplay", f"textarena:{options.learner}", seed, episode,
                     episode_metadata(episode, options, options.learner))


def record_of(env_name: str, round_key: str, sample_idx: int, source: str, policy: str, seed: int,
              episode: Episode, metadata: dict[str, Any]) -> dict:
    """The episode's record (``source`` selfplay or policy; ``policy``: the learner's id)."""
    return make_record(env=env_name, task_id=episode.task.task_id, round_key=round_key, sample_idx=sample_idx,
                       source=source, policy=policy, seed=seed, messages=episode.messages, score=episode.score,
                       metadata=metadata)
