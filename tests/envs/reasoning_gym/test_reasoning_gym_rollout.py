"""A chat policy answering tasks: a scripted policy that reads the question, and a failed request."""

import asyncio
import json
import re

from orbit.envs.base import GenerationRequest
from orbit.envs.reasoning_gym.family import FAMILY
from orbit.envs.reasoning_gym.prompts import SYSTEM_PROMPT
from orbit.io.schema import message
from orbit.policies.base import Turn
from orbit.stages.verify import verify_record

LEGS = {"snake": 0, "sea slug": 0, "jellyfish": 0, "flatworm": 0, "leech": 0, "chicken": 2, "bird": 2, "human": 2,
        "duck": 2, "dog": 4, "cat": 4, "cow": 4, "horse": 4, "lion": 4, "elephant": 4, "giraffe": 4, "tiger": 4,
        "deer": 4, "sheep": 4, "starfish": 5, "insect": 6, "ant": 6, "butterfly": 6, "beetle": 6, "bee": 6,
        "wasp": 6, "grasshopper": 6, "cricket": 6, "cockroach": 6, "praying mantis": 6, "firefly": 6, "spider": 8,
        "scorpion": 8, "crab": 10, "lobster": 10, "shrimp": 10, "woodlouse": 14}


def count_legs(question: str) -> int:
    """The scripted policy's arithmetic: read "N animal(s)" pairs from the question and add up the legs."""
    listed = question.split("if you have ", 1)[1].rstrip("?\n")
    total = 0
    for part in listed.split(", "):
        count, name = part.split(" ", 1)
        name = name if name in LEGS else name[:-1]  # "5 woodlouses", "2 leechs"
        total += int(count) * LEGS[name]
    return total


class ScriptedPolicy:
    """A policy that reasons a little and answers from the question; ``wrong`` answers off by one."""

    def __init__(self, wrong=False):
        self.wrong, self.calls = wrong, []

    async def complete(self, messages, tools, step, seed, decoding=None):
        self.calls.append((messages, tools, step, seed, decoding))
        total = count_legs(messages[1]["content"]) + (1 if self.wrong else 0)
        return Turn(message=message("assistant", f"Counting each animal's legs.\n<answer>{total}</answer>"),
                    prompt_tokens=50, completion_tokens=9, cost=0.001, finish_reason="stop")


async def failing_complete(messages, tools, step, seed, decoding=None):
    return Turn.failed("http.500")


def _play(spec, complete, n=6, sample_idx=0):
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=n, samples_per_task=1, workers=1)
    tasks = FAMILY.policy_tasks(request)

    async def run():
        return [await FAMILY.rollout(request, task, sample_idx, "policy:scripted", complete, {"run": "t"})
                for _, task in tasks]

    return tasks, asyncio.run(run())


def test_policy_tasks_are_the_teacher_rows_tasks(spec, records):
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=20, samples_per_task=2, workers=1)
    tasks = FAMILY.policy_tasks(request)
    assert [task_id for task_id, _ in tasks] == [r["task_id"] for r in records[::2]]
    assert [t.question for _, t in tasks] == [r["messages"][1]["content"] for r in records[::2]]


def test_a_scripted_policy_passes_and_a_wrong_one_fails(spec, verifier):
    policy = ScriptedPolicy()
    tasks, rows = _play(spec, policy.complete)
    assert len(rows) == 6
    for (task_id, task), row in zip(tasks, rows):
        assert row["task_id"] == task_id and row["source"] == "policy" and row["policy"] == "policy:scripted"
        assert row["score"] == 1.0 and row["seed"] == task.seed
        meta = json.loads(row["metadata"])
        assert meta["task"] == task.spec and meta["run"] == "t" and meta["finish_reason"] == "stop"
        assert meta["usage"] == {"prompt_tokens": 50, "completion_tokens": 9, "calls": 1, "cost": 0.001}
        assert verify_record(row, verifier, 1.0) == (1.0, True, [])
    messages, tools, step, seed, decoding = policy.calls[0]
    assert [m["content"] for m in messages] == [SYSTEM_PROMPT, tasks[0][1].question]
    assert tools is None and step == 0 and decoding.max_tokens == 512
    assert len({call[3] for call in policy.calls}) == 6  # a sampling seed per task
    _, wrong = _play(spec, ScriptedPolicy(wrong=True).complete)
    assert all(r["score"] == 0.0 and verify_record(r, verifier, 1.0) == (0.0, False, ["answer.wrong"]) for r in wrong)


def test_the_answer_budget_is_an_option():
    from rg_env import leg_spec

    policy = ScriptedPolicy()
    _play(leg_spec(max_tokens=64), policy.complete, n=1)
    assert policy.calls[0][4].max_tokens == 64


def test_a_failed_request_is_a_failed_sample(spec, verifier):
    _, rows = _play(spec, failing_complete, n=2)
    for row in rows:
        meta = json.loads(row["metadata"])
        assert row["score"] == 0.0 and meta["sample_error"] == "http.500"
        assert [m["role"] for m in row["messages"]] == ["system", "user"]
        score, passed, reasons = verify_record(row, verifier, 1.0)
        assert not passed and "http.500" in reasons


def test_the_scripted_policys_reading_matches_the_oracle(records):
    for record in records[::2]:
        oracle = int(re.fullmatch(r"<answer>(\d+)</answer>", record["messages"][2]["content"]).group(1))
        assert count_legs(record["messages"][1]["content"]) == oracle


def test_an_answer_grammar_constrains_the_request_and_is_recorded(verifier):
    from rg_env import leg_spec

    from orbit.envs.reasoning_gym.prompts import ANSWER_GRAMMARS

    policy = ScriptedPolicy()
    _, rows = _play(leg_spec(answer_grammar="integer"), policy.complete, n=2)
    assert all(call[4].grammar == ANSWER_GRAMMARS["integer"] for call in policy.calls)
    assert all(json.loads(r["metadata"])["answer_grammar"] == "integer" for r in rows)
    assert all(verify_record(r, verifier, 1.0) == (1.0, True, []) for r in rows)  # graded as written
    plain = ScriptedPolicy()
    _, rows = _play(leg_spec(), plain.complete, n=1)
    assert plain.calls[0][4].grammar is None and "answer_grammar" not in json.loads(rows[0]["metadata"])
