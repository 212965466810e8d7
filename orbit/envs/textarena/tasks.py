"""A TextArena task: (env id, reset seed, learner seat), its id, and the seeds derived from it.

Task ``i`` of a partition has seed ``stable_hash("textarena", env name, round, base seed, i)`` (below
2**63) and seat ``i mod players``. A sample's seed (its record's ``seed``, the learner agent's seed,
the policy's sampling seed) adds the sample index; the fixed opponent's seed is the task's own
(``opponent_seed``), so a trainer's rollout of the task regenerates the same opponent.
"""

import hashlib
from dataclasses import dataclass
from typing import Any

from orbit.io.schema import stable_hash

MAX_SEED = 2**63 - 1
TASK_KEYS = frozenset({"env_id", "seed", "seat"})


class TaskError(ValueError):
    """A task spec that does not describe a task of the env: ``reason`` is the verifier's reason id."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Task:
    env_id: str
    seed: int
    seat: int

    @property
    def task_id(self) -> str:
        return f"{self.env_id}-s{self.seed}-p{self.seat}"

    def to_json(self) -> dict:
        return {"env_id": self.env_id, "seat": self.seat, "seed": self.seed}

    @classmethod
    def from_json(cls, spec: Any, env_id: str, num_players: int) -> "Task":
        """The task ``spec`` describes, which must be one of ``env_id``; ``TaskError`` names what is wrong."""
        if type(spec) is not dict:
            raise TaskError("task.spec_invalid:task")
        if spec.get("env_id") != env_id:
            raise TaskError("task.env_mismatch")
        if spec.keys() != TASK_KEYS:
            raise TaskError("task.spec_invalid:keys")
        seed, seat = spec["seed"], spec["seat"]
        if type(seed) is not int or not 0 <= seed <= MAX_SEED:
            raise TaskError("task.spec_invalid:seed")
        if type(seat) is not int or not 0 <= seat < num_players:
            raise TaskError("task.spec_invalid:seat")
        return cls(env_id, seed, seat)


def _seed(*parts: Any) -> int:
    return int(stable_hash(*parts, length=16), 16) >> 1


def task_seed(env_name: str, round_key: str, base_seed: int, index: int) -> int:
    return _seed("textarena", env_name, round_key, base_seed, index)


def tasks_of(env_name: str, env_id: str, num_players: int, round_key: str, base_seed: int, n: int) -> list[Task]:
    return [Task(env_id, task_seed(env_name, round_key, base_seed, i), i % num_players) for i in range(n)]


def sample_seed(env_name: str, round_key: str, task: Task, sample_idx: int) -> int:
    """The seed of one sample of a task: the record's seed and the learner's."""
    return _seed("textarena-sample", env_name, round_key, task.seed, task.seat, int(sample_idx))


def opponent_seed(task: Task) -> int:
    """The fixed opponent's seed: the task's alone (a trainer's rollout knows the task, not the sample).
    A digest of the task's id (every replay needs it: one hash, no JSON)."""
    digest = hashlib.blake2b(f"textarena-opponent:{task.task_id}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1
