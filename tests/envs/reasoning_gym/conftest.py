"""Shared fixtures: the leg_counting env, its teacher rows and its verifier (real reasoning-gym)."""

import pytest

from orbit.envs.base import EnvSpec
from orbit.envs.reasoning_gym.family import FAMILY
from rg_env import generate, leg_spec


@pytest.fixture(scope="session")
def spec() -> EnvSpec:
    return leg_spec()


@pytest.fixture(scope="session")
def records(spec) -> list[dict]:
    """40 teacher rows of round r0000: 20 tasks, 2 samples each."""
    return generate(spec, samples=2)


@pytest.fixture(scope="session")
def verifier(spec):
    return FAMILY.verifier(spec)
