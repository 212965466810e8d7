"""FAMILY.check refuses what the family cannot run, naming the option by its dotted key."""

import pytest

from orbit.envs.base import EnvOptionError, EnvSpec
from orbit.envs.reasoning_gym.family import FAMILY

from rg_env import leg_spec


def _spec(num_tasks=10, **options) -> EnvSpec:
    return EnvSpec(name="e", family="reasoning_gym", description="", options=options, num_tasks=num_tasks)


def _refusal(spec) -> EnvOptionError:
    with pytest.raises(EnvOptionError) as caught:
        FAMILY.check(spec)
    return caught.value


def test_good_envs_pass_again_and_again():
    for _ in range(3):  # a passed check is remembered
        FAMILY.check(leg_spec())
        FAMILY.check(_spec(task="chain_sum"))
        FAMILY.check(leg_spec(config={}, curriculum_level=2))
        FAMILY.check(leg_spec(config={}, levels=[0, 1, 5]))


def test_an_unknown_task_is_refused_with_close_names():
    error = _refusal(_spec(task="leg_count"))
    assert error.key == "task" and "leg_counting" in error.message
    assert _refusal(_spec(task=3)).key == "task"
    assert _refusal(_spec()).key == "task"


@pytest.mark.parametrize("task", ["composite", "ransom_note", "codeio"])
def test_tasks_the_family_cannot_verify_are_refused(task):
    error = _refusal(_spec(task=task))
    assert error.key == "task" and "not supported" in error.message


def test_config_keys_and_values():
    error = _refusal(leg_spec(config={"min_animal": 2}))
    assert error.key == "config.min_animal" and "min_animals" in error.message
    error = _refusal(leg_spec(config={"min_animals": 0}))
    assert error.key == "config.min_animals" and "positive" in error.message
    error = _refusal(leg_spec(config={"min_animals": 5, "max_animals": 4}))
    assert error.key == "config.max_animals"
    assert _refusal(leg_spec(config={"min_animals": "two"})).key == "config"
    assert _refusal(leg_spec(config=[1, 2])).key == "config"
    for reserved in ("seed", "size"):
        assert _refusal(leg_spec(config={"min_animals": 2, reserved: 1})).key == f"config.{reserved}"


def test_curriculum_options():
    assert _refusal(_spec(task="acre", curriculum_level=1)).key == "curriculum_level"  # acre has no curriculum
    assert _refusal(_spec(task="acre", levels=[0, 1])).key == "levels"
    assert _refusal(leg_spec(curriculum_level=1)).key == "config.min_animals"  # the level sets it
    assert _refusal(leg_spec(config={}, curriculum_level=99)).key == "curriculum_level"
    assert _refusal(leg_spec(config={}, curriculum_level=-1)).key == "curriculum_level"
    assert _refusal(leg_spec(config={}, curriculum_level=True)).key == "curriculum_level"
    assert _refusal(leg_spec(config={}, levels=[])).key == "levels"
    assert _refusal(leg_spec(config={}, levels=[0, "1"])).key == "levels[1]"
    assert _refusal(leg_spec(config={}, levels=[0, 1], curriculum_level=1)).key == "levels"


def test_unknown_options_and_sizes():
    error = _refusal(leg_spec(confg={}))
    assert error.key == "confg" and "config" in error.message
    assert _refusal(leg_spec(max_tokens=0)).key == "max_tokens"
    assert _refusal(leg_spec(num_tasks=2_000_000)).key == "num_tasks"


def test_an_unknown_answer_grammar_is_refused():
    from rg_env import leg_spec

    assert _refusal(leg_spec(answer_grammar="float")).key == "answer_grammar"
    FAMILY.check(leg_spec(answer_grammar="integer"))
