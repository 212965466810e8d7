"""What an environment family provides: a generator of raw records and a verifier.

A family (OpenSpiel self-play, LiveWeb, ...) turns a ``GenerationRequest`` into
record batches of ``orbit.io.schema.RECORD_SCHEMA`` and builds a ``Verifier`` that
recomputes each record's score from the trajectory alone.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class EnvSpec:
    name: str
    family: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    pass_threshold: float = 1.0
    num_tasks: int = 100
    samples_per_task: int = 1
    source: str = field(default="built-in", compare=False)
    """Where the env was declared: ``built-in``, or the envs file that declares or overrides it."""


class EnvOptionError(ValueError):
    """An env option a family refuses; ``key`` is the option's dotted path (``config.min_animals``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


@dataclass(frozen=True)
class GenerationRequest:
    """One (round, env) partition's worth of generation."""

    env: EnvSpec
    round_key: str
    num_tasks: int
    samples_per_task: int
    base_seed: int = 0
    workers: int = 2
    options: Mapping[str, Any] = field(default_factory=dict)
    lake: Path | None = None

    def option(self, key: str, default: Any = None) -> Any:
        if key in self.options:
            return self.options[key]
        return self.env.options.get(key, default)


@dataclass(frozen=True)
class Verdict:
    """A verifier's recomputed score and the ids of the rules the record failed."""

    score: float
    reasons: tuple[str, ...] = ()


class Verifier(Protocol):
    """Optional attributes: ``parallel_safe = True`` when a verdict depends on the record alone (the
    verify stage may then verify batches in worker processes), and ``columns``, the record fields
    ``verify`` reads (the verify stage then decodes only those)."""

    name: str
    version: str

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        """Recompute the score of one record (a dict of RECORD_SCHEMA) from its trajectory alone."""


class EnvFamily(Protocol):
    """What every family provides. Families that a chat policy can play also provide
    ``policy_tasks(request) -> list[(task_id, task)]`` and
    ``async rollout(request, task, sample_idx, policy_id, complete, extra_metadata) -> record``,
    where ``complete(messages, tools, step, seed)`` returns the policy's next ``Turn``. A family whose
    episodes span turns may provide ``rollout_record(env, record, prefix, history) -> (record, problem)``:
    the reward's record of a trainer rollout made whole for the verifier (a game's history read back
    from its conversation)."""

    name: str

    def check(self, spec: EnvSpec) -> None:
        """Refuse an env this family cannot run, before any round: raise ``EnvOptionError`` naming the
        option. Optional: the registry calls it when the family has it, for every declared env."""

    def generate(self, request: GenerationRequest) -> Iterator[pa.RecordBatch]:
        """Yield raw record batches for one partition, deterministically from the request."""

    def verifier(self, env: EnvSpec, options: Mapping[str, Any] | None = None) -> Verifier:
        """The env's verifier."""
