"""An Orbit env family from a package: add up integers, verified by recomputing the sum.

Declare an env of it in ``$ORBIT_HOME/envs.toml``::

    [envs.sums]
    family = "sums"
    terms = 4          # integers per task (2-20)
    max_value = 99     # each from 0 to max_value
    num_tasks = 50

Task ``i`` of a partition has its numbers drawn from ``seed = base_seed + i``; the teacher writes the
right answer, so a round yields rows with no model. The verifier trusts nothing in the record: it
draws the numbers again from the recorded seed and the env's options, checks the prompt shows them,
reads the one final ``<answer>`` and compares.
"""

import json
import random
import re
from typing import Any, Iterator, Mapping

import pyarrow as pa

from orbit.envs.base import EnvOptionError, EnvSpec, GenerationRequest, Verdict
from orbit.io.schema import make_record, message, records_to_batch

SYSTEM = "Add up the numbers. End with the sum as <answer>N</answer>."
ANSWER_RE = re.compile(r"<answer>\s*(-?[0-9]+)\s*</answer>\s*\Z", re.ASCII)
OPTIONS = {"terms": (2, 20, 4), "max_value": (1, 10**9, 99)}


def numbers(seed: int, terms: int, max_value: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(0, max_value) for _ in range(terms)]


def question(values: list[int]) -> str:
    return "What is " + " + ".join(map(str, values)) + "?"


def option(spec: EnvSpec, key: str) -> int:
    return int(spec.options.get(key, OPTIONS[key][2]))


class SumsVerifier:
    name, version = "sums", "1"
    parallel_safe = True  # a verdict depends on the record alone

    def __init__(self, env: EnvSpec):
        self.env = env

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        if record.get("env") != self.env.name:
            return Verdict(0.0, ("record.env_mismatch",))
        try:
            seed = json.loads(record.get("metadata") or "{}").get("task", {}).get("seed")
        except (AttributeError, TypeError, ValueError, RecursionError):
            return Verdict(0.0, ("record.metadata_not_object",))
        if type(seed) is not int:
            return Verdict(0.0, ("task.spec_invalid:seed",))
        values = numbers(seed, option(self.env, "terms"), option(self.env, "max_value"))
        messages = record.get("messages") or []
        roles = [m.get("role") if isinstance(m, Mapping) else None for m in messages]
        if roles != ["system", "user", "assistant"]:
            return Verdict(0.0, ("trajectory.turn_order",))
        if messages[0].get("content") != SYSTEM or messages[1].get("content") != question(values):
            return Verdict(0.0, ("prompt.mismatch",))
        found = ANSWER_RE.search(str(messages[2].get("content") or ""))
        if found is None:
            return Verdict(0.0, ("answer.missing",))
        return Verdict(1.0 if int(found.group(1)) == sum(values) else 0.0)


class SumsFamily:
    name = "sums"

    def check(self, spec: EnvSpec) -> None:
        for key, value in spec.options.items():
            if key not in OPTIONS:
                raise EnvOptionError(key, f"not an option of the sums family (it takes {', '.join(OPTIONS)})")
            low, high, _ = OPTIONS[key]
            if type(value) is not int or not low <= value <= high:
                raise EnvOptionError(key, f"expected a whole number from {low} to {high}, got {value!r}")

    def generate(self, request: GenerationRequest) -> Iterator[pa.RecordBatch]:
        spec, rows = request.env, []
        for i in range(request.num_tasks):
            seed = request.base_seed + i
            values = numbers(seed, option(spec, "terms"), option(spec, "max_value"))
            chat = [message("system", SYSTEM), message("user", question(values)),
                    message("assistant", f"<answer>{sum(values)}</answer>")]
            for sample_idx in range(request.samples_per_task):
                rows.append(make_record(env=spec.name, task_id=f"{spec.name}-s{seed}", round_key=request.round_key,
                                        sample_idx=sample_idx, source="teacher", policy="sums:teacher", seed=seed,
                                        messages=chat, score=1.0, metadata={"task": {"seed": seed}}))
        yield records_to_batch(rows)

    def verifier(self, env: EnvSpec, options: Mapping[str, Any] | None = None) -> SumsVerifier:
        return SumsVerifier(env)


FAMILY = SumsFamily()
