"""A chat policy browsing LiveWeb through a real OpenAI-compatible server on 127.0.0.1."""

import json

from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.envs.liveweb.teacher import Teacher
from orbit.policies.base import Turn
from orbit.policies.endpoint import EndpointPolicy
from orbit.policies.server import start_server
from orbit.policies.table_policy import TablePolicy
from orbit.stages.generate import SamplingPlan, run_sampling
from orbit.io.schema import message
from orbit.stages.verify import verify_record


class TeacherReplayPolicy:
    """Answers each turn with the teacher's next assistant message for the same task (test helper)."""

    id = "teacher-replay"

    def __init__(self, cache, tasks, wrong_answer=False):
        teacher = Teacher(cache)
        self.scripts = {t.prompt: [m for m in teacher.trajectory(t)] for t in tasks}
        self.wrong_answer = wrong_answer

    def complete(self, messages, tools=None, *, seed):
        script = self.scripts[messages[1]["content"]]
        nxt = dict(script[len(messages)])
        calls = nxt.get("tool_calls")
        if self.wrong_answer and calls and calls[0]["function"]["name"] == "stop":
            calls = [dict(calls[0], function={"name": "stop", "arguments": json.dumps({"answers": ["nope"] * 4})})]
        return Turn(message=message("assistant", nxt.get("content"), tool_calls=calls), prompt_tokens=1,
                    completion_tokens=1)

    async def acomplete(self, messages, tools=None, *, seed):
        return self.complete(messages, tools, seed=seed)

    def check(self):
        pass

    async def aclose(self):
        pass

    def close(self):
        pass


def _setup(cache_dir, n=6):
    spec = env_spec("liveweb")
    family = family_of(spec)
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=n, samples_per_task=1,
                                options={"cache_dir": str(cache_dir)})
    tasks = [t for _, t in family.policy_tasks(request)]
    return spec, family, request, tasks


def test_policy_tool_calls_over_http_replay_and_verify(demo_cache):
    spec, family, request, tasks = _setup(demo_cache.root)
    verifier = family.verifier(spec, {"cache_dir": str(demo_cache.root)})
    with start_server(TeacherReplayPolicy(demo_cache, tasks)) as server:
        base, model = server.policy_uri[len("openai:"):].split("#")
        records, stats = run_sampling(request, family, verifier, 1.0, EndpointPolicy(base, model),
                                      SamplingPlan(best_of=1))
    assert stats.attempts == len(tasks) == stats.passes
    for rec in records:
        assert rec["source"] == "policy" and rec["policy"] == model
        assert any(m["role"] == "tool" for m in rec["messages"])
        score, passed, reasons = verify_record(rec, verifier, 1.0)
        assert passed and score == 1.0, reasons


def test_wrong_answers_and_policies_without_tool_calls_fail_with_reasons(demo_cache):
    spec, family, request, tasks = _setup(demo_cache.root, n=3)
    verifier = family.verifier(spec, {"cache_dir": str(demo_cache.root)})
    records, stats = run_sampling(request, family, verifier, 1.0, TeacherReplayPolicy(demo_cache, tasks, True),
                                  SamplingPlan(best_of=1))
    for rec in records:
        _, passed, reasons = verify_record(rec, verifier, 1.0)
        assert not passed and any(r.startswith("answer.wrong") for r in reasons)
    # the embedded table policy has no legal-action list to choose from: a named failure, not a crash
    records, stats = run_sampling(request, family, verifier, 1.0, TablePolicy(), SamplingPlan(best_of=1))
    assert stats.passes == 0 and len(records) == 3
    for rec in records:
        assert json.loads(rec["metadata"])["sample_error"].startswith("policy.no_legal_actions")
        assert not verify_record(rec, verifier, 1.0)[1]


def test_turn_limit_ends_the_episode(demo_cache):
    spec, family, request, tasks = _setup(demo_cache.root, n=2)
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=2, samples_per_task=1,
                                options={"cache_dir": str(demo_cache.root), "max_turns": 2})
    verifier = family.verifier(spec, {"cache_dir": str(demo_cache.root)})
    records, _ = run_sampling(request, family, verifier, 1.0, TeacherReplayPolicy(demo_cache, tasks),
                              SamplingPlan(best_of=1))
    for rec in records:
        assert json.loads(rec["metadata"])["terminated"] == "policy.turn_limit"
        reasons = verify_record(rec, verifier, 1.0)[2]
        assert "trajectory.missing_stop" in reasons
