"""The reward scores a game played to its end on its outcome, as the verify stage scores the same trajectory.

Real self-play records of every game env are verified by the stage, then the same games are handed to
the reward the way a trainer does: the GRPO export's columns (through the real export code) and the
whole conversation as ms-swift's multi-turn ``messages``, closed by ``final_prompt`` when the last
move was not the learner's. No history is passed: the reward reads it back from the turn prompts.
"""

import json
import random

import pytest
from helpers import generate

from orbit.envs import env_spec, family_of
from orbit.envs.openspiel.chat_replay import final_prompt, history_from_chat
from orbit.envs.openspiel.session import GameSession
from orbit.envs.openspiel.tasks import GameTask, load_game
from orbit.rewards import UNFINISHED_REWARD, reward_func, score
from orbit.stages.export import grpo_fields
from orbit.stages.verify import verify_record

GAMES = ["tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker"]


def _columns(record):
    fields = grpo_fields(record)
    return {k: fields[k] for k in ("env", "task_id", "task_spec", "task_history")}


def _last_mover_not_learner(record) -> bool:
    meta = json.loads(record["metadata"])
    task = GameTask.from_json(meta["task"])
    state = load_game(task).new_initial_state()
    last = None
    for action in meta["history"]:
        last = state.current_player()
        state.apply_action(action)
    return state.is_terminal() and last != task.seat


def _rollout(record) -> list[dict]:
    """The conversation a multi-turn rollout of this game produces."""
    messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if _last_mover_not_learner(record):
        meta = json.loads(record["metadata"])
        task = GameTask.from_json(meta["task"])
        state = load_game(task).new_initial_state()
        for action in meta["history"]:
            state.apply_action(action)
        messages.append({"role": "user", "content": final_prompt(state, task.seat)})
    return messages


def _reward(record, messages, **extra):
    columns = _columns(record)
    completion = [m for m in messages if m["role"] == "assistant"][-1]["content"]
    return reward_func([completion], messages=[messages], **{k: [v] for k, v in {**columns, **extra}.items()})[0]


@pytest.mark.parametrize("env", GAMES)
def test_a_whole_game_scores_what_the_verify_stage_scores(env):
    spec = env_spec(env)
    verifier = family_of(spec).verifier(spec)
    records = generate(env, n=30, samples=2)
    seen = set()
    for record in records:
        stage, _, reasons = verify_record(record, verifier, spec.pass_threshold)
        assert set(reasons) <= {"score.below_threshold"}, reasons  # lost and drawn games do not pass
        got = _reward(record, _rollout(record))
        assert got == stage, (record["task_id"], got, stage)
        seen.add(stage)
        # the full history handed over by the rollout gives the same score
        meta = json.loads(record["metadata"])
        assert _reward(record, _rollout(record), history=json.dumps(meta["history"])) == stage
    assert 0.0 in seen and 1.0 in seen, seen  # lost and won games both occur: a loss scores below a win


def test_without_its_closing_message_a_game_lost_on_the_opponents_move_is_unfinished_never_won():
    records = [r for r in generate("tic_tac_toe", n=40, samples=2) if _last_mover_not_learner(r)]
    assert records
    for record in records:
        messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
        assert _reward(record, messages) == UNFINISHED_REWARD


def test_a_conversation_no_game_line_explains_scores_zero():
    record = next(r for r in generate("tic_tac_toe", n=20, samples=1) if len(r["messages"]) >= 5)
    messages = _rollout(record)
    # the second turn prompt shows a board the opponent's move cannot have made
    messages[3] = {"role": "user", "content": messages[3]["content"].replace(".", "o", 1)}
    value, reasons = score("tic_tac_toe", _columns(record)["task_spec"], messages,
                           task_id=record["task_id"], task_history=_columns(record)["task_history"])
    assert value == 0.0 and reasons[0] == "rollout.no_matching_line", reasons


def _play_out(session, rng) -> list[dict]:
    """The rest of a GameSession's game against a learner answering a random legal ID: every message after
    the first turn prompt (answers, the next turn prompts, the closing message)."""
    rest = []
    while True:
        answer = str(rng.choice(session.state.legal_actions(session.task.seat)))
        rest.append({"role": "assistant", "content": answer})
        step = session.step(answer)
        if step.message is not None:
            rest.append(step.message)
        if step.done:
            return rest


@pytest.mark.parametrize("env", GAMES)
def test_a_game_session_plays_what_the_reward_reads_back(env):
    """GameSession (the environment side of a multi-turn rollout) against a learner that answers a
    random legal ID: the reward of the conversation is the session's own outcome."""
    record = generate(env, n=6, samples=1)
    rng = random.Random(7)
    outcomes = set()
    for seed, rec in enumerate(record):
        columns = _columns(rec)
        session = GameSession(env, columns["task_spec"], columns["task_history"], seed=seed)
        messages = [{"role": m["role"], "content": m["content"]} for m in grpo_fields(rec)["prompt"]]
        messages += _play_out(session, rng)
        value, reasons = score(env, columns["task_spec"], messages, task_id=columns["task_id"],
                               task_history=columns["task_history"])
        assert value == session.score and set(reasons) <= {"score.below_threshold"}, (value, session.score, reasons)
        replay = history_from_chat(session.task, json.loads(columns["task_history"]), messages)
        assert replay.history == session.history and replay.problem is None
        outcomes.add(value)
    assert outcomes


@pytest.mark.parametrize("env", ["tic_tac_toe", "leduc_poker"])
def test_a_completion_holding_the_rest_of_the_game_scores_its_outcome(env):
    """TRL's shape: ``prompts`` is the export's first turn and the completion is every message after it
    (a rollout_func returning the game's later turns, the environment's closing message included)."""
    rng = random.Random(3)
    seen = set()
    for seed, rec in enumerate(generate(env, n=8, samples=1)):
        columns = _columns(rec)
        prompt = grpo_fields(rec)["prompt"]
        session = GameSession(env, columns["task_spec"], columns["task_history"], seed=seed)
        rest = _play_out(session, rng)
        got = reward_func([rest], prompts=[prompt], **{k: [v] for k, v in columns.items()})[0]
        assert got == session.score, (got, session.score)
        seen.add(got)
    assert len(seen) > 1, seen
