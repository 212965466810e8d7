"""Model answers are never run as code by the scorers that would run them."""

import builtins
import json

import pytest

from orbit.envs.base import EnvSpec
from orbit.envs.reasoning_gym import items
from orbit.envs.reasoning_gym.family import FAMILY
from orbit.envs.reasoning_gym.guards import safe_expression
from orbit.envs.reasoning_gym.library import EVAL_TASKS

from rg_env import generate

PAYLOADS = [
    "__import__('builtins').setattr(__import__('builtins'), 'ORBIT_PWNED', 1)",
    "exec(chr(105)+chr(109))",
    "setattr(Integer, 'x', 1)",
    "(1).__class__",
    "x.func",
    "9**9**9**9",
    "(9**999)**999",
    "2**123456",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_expression_screen_refuses_code_and_runaway_powers(payload):
    assert not safe_expression(payload)


@pytest.mark.parametrize("answer", ["82 + 20 + 67 - 50", "49*(85 - 1)/14 - 42 - 73", "8*(5*1 - 2)",
                                    "-9*x**8/10 + 3*x**4/2 + 10*x**2/9 + C", "2*(2 - 8*x)**(3/2)/3 + C",
                                    "3*Integral(x**3*cos(3*x), x) + C", "exp(2*X) + log(X)/2 + sqrt(X) + C",
                                    "1.5*x^2 + atan(x)"])
def test_the_expression_screen_lets_expressions_through(answer):
    assert safe_expression(answer)


def _spec(task, n=2):
    return EnvSpec(name=task, family="reasoning_gym", description="", options={"task": task}, num_tasks=n)


def _reply(record, content):
    record = json.loads(json.dumps(record))
    record["messages"][-1]["content"] = content
    return record


def test_a_countdown_answer_that_is_code_never_reaches_the_scorer():
    spec = _spec("countdown")
    record = generate(spec)[0]
    verifier = FAMILY.verifier(spec)
    assert verifier.verify(record).score == 1.0  # the oracle expression passes the screen
    verdict = verifier.verify(_reply(record, f"<answer>{PAYLOADS[0]}</answer>"))
    assert verdict.reasons == ("answer.unsafe_expression",) and not hasattr(builtins, "ORBIT_PWNED")


@pytest.mark.parametrize("task", EVAL_TASKS)
def test_scorers_that_eval_get_literals_only(task):
    spec = _spec(task, 1)
    record = generate(spec)[0]
    verifier = FAMILY.verifier(spec)
    assert verifier.verify(record).score == 1.0
    verdict = verifier.verify(_reply(record, f"<answer>{PAYLOADS[0]}</answer>"))
    assert verdict.score == 0.0 and not hasattr(builtins, "ORBIT_PWNED")


def test_a_list_literal_still_gets_the_scorers_partial_credit():
    spec = _spec("spiral_matrix", 1)
    record = generate(spec)[0]
    oracle = record["messages"][-1]["content"][len("<answer>"):-len("</answer>")]
    as_list = "[" + ", ".join(oracle.split()) + "]"
    verdict = FAMILY.verifier(spec).verify(_reply(record, f"<answer>{as_list}</answer>"))
    assert verdict.reasons == ("answer.partial_credit",) and verdict.score == pytest.approx(0.1)
    items.clear_caches()
