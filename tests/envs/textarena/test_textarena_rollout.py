"""A chat policy in the learner's seat, and a trainer's conversation made a record for the reward."""

import asyncio
import json
import re

import pytest
from ta_helpers import GAMES, TWO_PLAYER, chat, generate, meta, request, reward_record, spec

from orbit.envs.textarena.family import FAMILY
from orbit.envs.textarena.prompts import ANSWER_MAX_TOKENS
from orbit.io.schema import message
from orbit.policies.base import Turn
from orbit.stages.verify import verify_record

MOVES = re.compile(r"Available Moves: (.*)")
KUHN = re.compile(r"Your available actions are: (.*)")


def scripted_complete(calls: list, fail_at: int | None = None, first_invalid: bool = True):
    """A ``complete`` coroutine that plays a legal move read from the last observation: the first move the
    board lists (TicTacToe's "Available Moves", KuhnPoker's "available actions"). Its first answer of a
    conversation is an invalid move (TextArena asks again); call ``fail_at`` fails like an HTTP 500."""
    async def complete(messages, tools, step, seed, decoding=None):
        calls.append({"step": step, "seed": seed, "decoding": decoding, "n": len(messages), "tools": tools})
        await asyncio.sleep(0)  # let other rollouts run in between, as a real endpoint does
        if fail_at is not None and len(calls) - 1 == fail_at:
            return Turn.failed("http.500")
        seen = "\n".join(m["content"] for m in messages if m["role"] == "user")
        if first_invalid and len(messages) == 2:
            return Turn(message=message("assistant", "I will play [9], the best cell."), prompt_tokens=50,
                        completion_tokens=8)
        listed = (MOVES.findall(seen) or KUHN.findall(seen))[-1]
        move = re.findall(r"'(\[[^\]]+\])'", listed)[0]
        return Turn(message=message("assistant", f"I play {move}."), prompt_tokens=len(messages) * 10,
                    completion_tokens=4, cost=0.001)
    return complete


SAMPLING = {"sampling": {"strategy": "fixed"}}


def rollout(env, task, sample_idx, complete, **options):
    return asyncio.run(FAMILY.rollout(request(env, **options), task, sample_idx, "test-policy", complete, SAMPLING))


def test_a_policy_plays_the_learner_seat_and_its_records_verify():
    env = spec("TicTacToe-v0")
    verifier = FAMILY.verifier(env)
    tasks = FAMILY.policy_tasks(request(env, n=4))
    seen_scores = set()
    for task_id, task in tasks:
        for sample_idx in range(2):
            calls = []
            record = rollout(env, task, sample_idx, scripted_complete(calls))
            m = meta(record)
            assert record["source"] == "policy" and record["policy"] == "test-policy" and record["task_id"] == task_id
            assert m["learner"] == "policy" and m["opponent"] == "random" and m["sampling"] == {"strategy": "fixed"}
            answers = [msg["content"] for msg in record["messages"] if msg["role"] == "assistant"]
            assert answers[0] == "I will play [9], the best cell."  # rejected: the learner was asked again
            assert "attempted an invalid move" in record["messages"][3]["content"]
            assert [text for pid, text in m["actions"] if pid == task.seat] == answers  # raw texts are the actions
            assert m["usage"]["calls"] == len(calls) == len(answers)
            assert m["usage"]["completion_tokens"] == 8 + 4 * (len(answers) - 1)
            assert all(c["decoding"].max_tokens == ANSWER_MAX_TOKENS and c["decoding"].choices is None
                       and c["tools"] is None for c in calls)
            assert [c["step"] for c in calls] == list(range(len(calls)))
            score, _, reasons = verify_record(record, verifier, env.pass_threshold)
            assert set(reasons) <= {"score.below_threshold"} and score == record["score"], reasons
            seen_scores.add(score)
            # the same answers give the same record
            assert rollout(env, task, sample_idx, scripted_complete([])) == record
    assert seen_scores == {0.0, 1.0}  # the first-listed-move policy wins some and loses some


def test_a_failed_request_ends_the_episode_as_a_failed_sample():
    env = spec("TicTacToe-v0")
    _, task = FAMILY.policy_tasks(request(env, n=1))[0]
    record = rollout(env, task, 0, scripted_complete([], fail_at=1))
    m = meta(record)
    assert m["sample_error"] == "http.500" and m["terminated"] == "http.500" and m["rewards"] is None
    assert record["score"] == 0.0 and m["usage"]["calls"] == 2
    score, passed, reasons = verify_record(record, FAMILY.verifier(env), env.pass_threshold)
    assert not passed and score == 0.0 and "http.500" in reasons


def test_max_turns_bounds_a_policy_episode():
    env = spec("KuhnPoker-v0", max_turns=1)
    _, task = FAMILY.policy_tasks(request(env, n=1))[0]
    record = rollout(env, task, 0, scripted_complete([], first_invalid=False))
    m = meta(record)
    assert m["terminated"] == "max_turns" and record["score"] == 0.0 and m["usage"]["calls"] == 1
    assert verify_record(record, FAMILY.verifier(env), 1.0)[2] == ["game.not_terminal"]


def test_interleaved_rollouts_are_the_sequential_ones():
    """KuhnPoker deals each round from Python's global random: rollouts that interleave at every request
    (as the generate stage runs them) still give the records they give one at a time."""
    env = spec("KuhnPoker-v0")
    tasks = [task for _, task in FAMILY.policy_tasks(request(env, n=6))]
    alone = [rollout(env, task, 0, scripted_complete([], first_invalid=False)) for task in tasks]

    async def together():
        return await asyncio.gather(*(FAMILY.rollout(request(env), task, 0, "test-policy",
                                                     scripted_complete([], first_invalid=False), SAMPLING)
                                      for task in tasks))

    mixed = asyncio.run(together())
    assert mixed == alone
    verifier = FAMILY.verifier(env)
    assert all(set(verify_record(r, verifier, 1.0)[2]) <= {"score.below_threshold"} for r in mixed)


def test_self_play_puts_the_policy_in_both_seats():
    env = spec("TicTacToe-v0", opponent="self")
    _, task = FAMILY.policy_tasks(request(env, n=2))[1]  # seat 1
    calls = []
    record = rollout(env, task, 0, scripted_complete(calls, first_invalid=False))
    m = meta(record)
    assert m["opponent"] == "self" and m["usage"]["calls"] == len(calls) == len(m["actions"])
    assert set(verify_record(record, FAMILY.verifier(env), 1.0)[2]) <= {"score.below_threshold"}
    # a trainer's conversation holds one seat: the other seat's moves cannot be read back
    _, problem = FAMILY.rollout_record(env, reward_record(env, record), [], None)
    assert problem == "reward.self_play_unreplayable"


@pytest.fixture(scope="module")
def generated() -> dict[str, list[dict]]:
    return {env_id: generate(spec(env_id), n=4 if env_id == "Sudoku-v0" else 8) for env_id in GAMES}


def _reward(env, record, messages=None, history=None) -> tuple[float, list[str], str | None]:
    """What the reward does: the family completes the conversation's record, the verifier scores it."""
    made, problem = FAMILY.rollout_record(env, reward_record(env, record, messages), [], history)
    score, _, reasons = verify_record(made, FAMILY.verifier(env), env.pass_threshold)
    return score, reasons, problem


@pytest.mark.parametrize("env_id", list(GAMES))
def test_a_whole_conversation_scores_what_the_verify_stage_scores(generated, env_id):
    env = spec(env_id)
    verifier = FAMILY.verifier(env)
    for record in generated[env_id]:
        stage, _, _ = verify_record(record, verifier, env.pass_threshold)
        score, reasons, problem = _reward(env, record)
        assert problem is None and set(reasons) <= {"score.below_threshold"}, reasons
        assert score == stage == record["score"]
        # a multi-turn rollout's closing observation is no turn of the record
        closed = chat(record) + [{"role": "user", "content": "[GAME] The game is over."}]
        assert _reward(env, record, closed)[0] == stage
        # a rollout that knows every action may hand them over
        assert _reward(env, record, history=meta(record)["actions"])[0] == stage


def test_the_rebuilt_actions_are_the_recorded_ones(generated):
    for env_id in TWO_PLAYER:
        env = spec(env_id)
        for record in generated[env_id]:
            made, problem = FAMILY.rollout_record(env, reward_record(env, record), [], None)
            assert problem is None and json.loads(made["metadata"])["actions"] == meta(record)["actions"]


def test_a_conversation_that_stops_early_is_unfinished(generated):
    env = spec("ConnectFour-v0")
    record = generated["ConnectFour-v0"][0]
    score, reasons, problem = _reward(env, record, chat(record)[:5])
    assert score == 0.0 and problem is None and reasons == ["game.not_terminal"]
    # an answer the conversation changed is the conversation's own move: the game goes another way
    changed = chat(record)
    changed[2]["content"] = "[col 0]" if changed[2]["content"] != "[col 0]" else "[col 6]"
    assert _reward(env, record, changed)[0] == 0.0


def test_a_policy_rollout_with_a_retry_scores_the_same_through_the_reward():
    env = spec("TicTacToe-v0")
    verifier = FAMILY.verifier(env)
    for _, task in FAMILY.policy_tasks(request(env, n=4)):
        record = rollout(env, task, 0, scripted_complete([]))
        stage = verify_record(record, verifier, env.pass_threshold)[0]
        assert _reward(env, record)[0] == stage
