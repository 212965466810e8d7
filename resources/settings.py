"""Run-wide settings shared by the stage assets."""

from pathlib import Path
from typing import List, Optional

import dagster as dg

from orbit.io.home import orbit_home
from orbit.io.lakefs import lake_path, lake_root

UNIFORM_POLICY = "embedded:uniform"


class OrbitSettings(dg.ConfigurableResource):
    """Where the lake and checkpoints live, how many worker processes generation may use, the policy and
    size of rounds nobody configured by hand, and how far the flywheel turns."""

    lake: str = str(lake_root())
    workers: int = 2
    checkpoints: str = str(orbit_home() / "checkpoints")
    """The folder the checkpoint sensor watches (external trainers write here too)."""
    max_rounds: int = 8
    """The checkpoint sensor registers no round beyond this many ($ORBIT_MAX_ROUNDS)."""
    next_rounds: str = "auto"
    """What the checkpoint sensor does with a new checkpoint ($ORBIT_NEXT_ROUNDS): 'auto' registers it as the next
    round (the flywheel turns by itself, up to max_rounds, after any round, one added in the UI included);
    'manual' only lists it, and a user starts the next round (orbit round add, or Add partition in the UI)."""
    policy_envs: Optional[List[str]] = None
    """Envs whose partitions sample the round's registered policy (unset: every declared env; an embedded
    table policy only plays the game envs; an endpoint policy plays every env, liveweb included)."""
    default_policy: str = UNIFORM_POLICY
    """The policy of a round added without one (UI, GraphQL, a backfill) when no checkpoint is ready yet."""
    round_num_tasks: Optional[int] = None
    """Size of new rounds (recorded in the round registry; unset: each env's default)."""
    round_samples_per_task: Optional[int] = None
    round_best_of: Optional[int] = None
    """Fixed N policy samples per task; unset: adaptive best-of-N with ``round_budget``."""
    round_budget: Optional[int] = None
    """Policy samples per partition for adaptive best-of-N (unset: 4 per task)."""

    def lake_path(self) -> Path:
        """The lake: a ``Path``, or an ``S3Path`` for an object-store prefix (``s3://bucket/prefix``)."""
        return lake_path(self.lake)

    def duckdb_path(self) -> Path:
        return self.lake_path() / "orbit.duckdb"

    def checkpoints_path(self) -> Path:
        return Path(self.checkpoints)

    def round_sizes(self) -> dict:
        """The size recorded for a new round."""
        sizes = {"num_tasks": self.round_num_tasks, "samples_per_task": self.round_samples_per_task,
                 "best_of": self.round_best_of, "budget": self.round_budget}
        return {k: v for k, v in sizes.items() if v is not None}
