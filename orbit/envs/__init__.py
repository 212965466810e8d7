"""Environments: each env is a name, a family (how it generates and verifies) and options."""

from orbit.envs.base import EnvFamily, EnvSpec, GenerationRequest, Verdict, Verifier
from orbit.envs.registry import ENVS, ENV_NAMES, env_spec, family_of

__all__ = [
    "EnvFamily", "EnvSpec", "GenerationRequest", "Verdict", "Verifier",
    "ENVS", "ENV_NAMES", "env_spec", "family_of",
]
