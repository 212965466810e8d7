"""Helpers of the reasoning_gym tests: the leg_counting env (built here: the registry wiring is not
this family's) and a teacher partition of it, with the real reasoning-gym."""

import pyarrow as pa

from orbit.envs.base import EnvSpec, GenerationRequest
from orbit.envs.reasoning_gym.family import FAMILY

LEG_OPTIONS = {"task": "leg_counting", "config": {"min_animals": 2, "max_animals": 4}}


def leg_spec(num_tasks: int = 20, **options) -> EnvSpec:
    return EnvSpec(name="leg_counting", family="reasoning_gym", description="Count the legs of a few animals.",
                   options={**LEG_OPTIONS, **options}, num_tasks=num_tasks)


def generate(spec: EnvSpec, round_key: str = "r0000", n: int | None = None, samples: int = 1,
             base_seed: int = 0) -> list[dict]:
    request = GenerationRequest(env=spec, round_key=round_key, num_tasks=spec.num_tasks if n is None else n,
                                samples_per_task=samples, base_seed=base_seed, workers=1)
    return pa.Table.from_batches(list(FAMILY.generate(request))).to_pylist()
