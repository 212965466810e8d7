"""The env registry: the one place that lists Orbit's environments.

The env dimension of every round x env asset is built from ``ENV_NAMES``. To add
an environment, add an ``EnvSpec`` here; a new family also adds one line to
``FAMILIES`` naming the module whose ``FAMILY`` object generates and verifies.
"""

import importlib
from typing import Mapping

from orbit.envs.base import EnvFamily, EnvSpec
from orbit.io.keys import validate_env

# family name -> module exposing ``FAMILY: EnvFamily``
FAMILIES: Mapping[str, str] = {
    "openspiel": "orbit.envs.openspiel.family",
    "liveweb": "orbit.envs.liveweb.family",
}

_SPECS = [
    EnvSpec(
        name="tic_tac_toe",
        family="openspiel",
        description="Tic-tac-toe against C++ MCTS (30 simulations); self-play learner: MCTS (200), winners kept.",
        options={
            "game": "tic_tac_toe",
            "learner": {"kind": "mcts", "simulations": 200},
            "opponent": {"kind": "mcts", "simulations": 30},
        },
        num_tasks=200,
    ),
    EnvSpec(
        name="connect_four",
        family="openspiel",
        description="Connect Four against C++ MCTS (10 simulations); self-play learner: MCTS (100), winners kept.",
        options={
            "game": "connect_four",
            "learner": {"kind": "mcts", "simulations": 100},
            "opponent": {"kind": "mcts", "simulations": 10},
        },
        num_tasks=100,
    ),
    EnvSpec(
        name="kuhn_poker",
        family="openspiel",
        description="Kuhn poker against the C++ CFR average policy; self-play learner: CFR too, winners kept.",
        options={
            "game": "kuhn_poker",
            "learner": {"kind": "cfr", "iterations": 1000},
            "opponent": {"kind": "cfr", "iterations": 1000},
        },
        num_tasks=300,
    ),
    EnvSpec(
        name="leduc_poker",
        family="openspiel",
        description="Leduc poker against the C++ CFR average policy; self-play learner: CFR too, winners kept.",
        options={
            "game": "leduc_poker",
            "learner": {"kind": "cfr", "iterations": 300},
            "opponent": {"kind": "cfr", "iterations": 300},
        },
        num_tasks=300,
    ),
    EnvSpec(
        name="liveweb",
        family="liveweb",
        description="LiveWeb: multi-site browsing questions answered by tool calls over a cached web, "
                    "teacher trajectories verified by replay.",
        options={"subtasks": 2},
        num_tasks=200,
    ),
]

ENVS: Mapping[str, EnvSpec] = {spec.name: spec for spec in _SPECS}
ENV_NAMES: tuple[str, ...] = tuple(ENVS)


def env_spec(name: str) -> EnvSpec:
    return ENVS[validate_env(name, ENV_NAMES)]


def family_of(spec: EnvSpec) -> EnvFamily:
    module = importlib.import_module(FAMILIES[spec.family])
    return module.FAMILY
