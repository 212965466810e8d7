"""Dagster resources and the IO manager, chosen per deployment in ``resources_for``."""

import os
from pathlib import Path

from resources.lake import LakeIOManager
from resources.policies import PolicyResource
from resources.settings import UNIFORM_POLICY, OrbitSettings

from orbit.io.home import orbit_home
from orbit.io.lakefs import is_remote, lake_root

# Settings of the deployment the Dagster UI and daemon load, read from the environment.
SIZE_ENV = {"round_num_tasks": "ORBIT_ROUND_TASKS", "round_samples_per_task": "ORBIT_ROUND_SAMPLES_PER_TASK",
            "round_best_of": "ORBIT_ROUND_BEST_OF", "round_budget": "ORBIT_ROUND_BUDGET"}


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= 10_000_000):
        raise ValueError(f"{name}={raw!r}: expected a whole number from 1 to 10000000")
    return int(raw)


def _env_policy(name: str) -> str | None:
    """A policy URI from the environment, checked when read: an invalid one is refused naming the variable."""
    from orbit.policies.uri import InvalidPolicyURI, parse_policy_uri

    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        parse_policy_uri(raw)
    except InvalidPolicyURI as exc:
        raise ValueError(f"{name}: {exc}") from None
    return raw


NEXT_ROUNDS = ("auto", "manual")


def env_next_rounds() -> str:
    """$ORBIT_NEXT_ROUNDS: 'auto' (default) or 'manual'; anything else is refused naming the variable."""
    raw = os.environ.get("ORBIT_NEXT_ROUNDS", "").strip() or "auto"
    if raw not in NEXT_ROUNDS:
        raise ValueError(f"ORBIT_NEXT_ROUNDS={raw[:40]!r}: expected one of {', '.join(NEXT_ROUNDS)}")
    return raw


def autonomy() -> str:
    """The flywheel's autonomy as the deployment sets it, for the UI's sensor descriptions."""
    max_rounds = _env_int("ORBIT_MAX_ROUNDS") or OrbitSettings.model_fields["max_rounds"].default
    return (f"next_rounds={env_next_rounds()} ($ORBIT_NEXT_ROUNDS: auto registers each new checkpoint as the next "
            f"round; manual only lists it), max_rounds={max_rounds} ($ORBIT_MAX_ROUNDS)")


def resources_for(lake: str | None = None, workers: int | None = None, home: str | None = None,
                  **settings) -> dict:
    """Resources of one deployment: the lake, worker count, where request caches live, and the settings
    (keyword arguments of ``OrbitSettings``; unset ones from ``ORBIT_*`` environment variables)."""
    lake = str(lake or lake_root())
    # beside a folder lake its home; an object-store lake has its checkpoints and caches in ORBIT_HOME
    home = Path(home) if home else (Path(lake).parent if lake and not is_remote(lake) else orbit_home())
    workers = workers or _env_int("ORBIT_WORKERS") or 2
    from_env = {field: _env_int(var) for field, var in SIZE_ENV.items()}
    from_env["default_policy"] = _env_policy("ORBIT_DEFAULT_POLICY") or UNIFORM_POLICY
    if _env_int("ORBIT_MAX_ROUNDS"):
        from_env["max_rounds"] = _env_int("ORBIT_MAX_ROUNDS")
    from_env["next_rounds"] = env_next_rounds()
    merged = {**{k: v for k, v in from_env.items() if v is not None}, **settings}
    return {
        "io_manager": LakeIOManager(root=lake),
        "settings": OrbitSettings(lake=lake, workers=workers, checkpoints=str(home / "checkpoints"), **merged),
        "policies": PolicyResource(cache_root=str(home / "cache" / "requests"),
                                   slots_dir=str(home / "locks" / "endpoints")),
    }


__all__ = ["LakeIOManager", "OrbitSettings", "PolicyResource", "resources_for"]
