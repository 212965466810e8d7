"""Environments: each env is a name, a family (how it generates and verifies) and options."""

from orbit.envs.base import EnvFamily, EnvOptionError, EnvSpec, GenerationRequest, Verdict, Verifier
from orbit.envs.registry import (EnvsFileError, env_names, env_spec, envs, envs_file, family_of, find_env,
                                 inactive_envs)

__all__ = [
    "EnvFamily", "EnvOptionError", "EnvSpec", "GenerationRequest", "Verdict", "Verifier",
    "EnvsFileError", "env_names", "env_spec", "envs", "envs_file", "family_of", "find_env", "inactive_envs",
]
