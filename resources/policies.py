"""The policy resource: turns a policy URI into a ready policy, plus its request cache."""

from pathlib import Path
from typing import Optional

import dagster as dg

from orbit.home import orbit_home
from orbit.policies.base import Policy
from orbit.policies.request_cache import RequestCache, partition_cache_path
from orbit.policies.uri import load_policy, parse_policy_uri


class PolicyResource(dg.ConfigurableResource):
    """How Orbit talks to policies. The API key is read from the environment variable named by
    ``api_key_env`` when a request is made; it never enters config, metadata or logs."""

    temperature: float = 1.0
    """Sampling temperature for endpoints."""
    embedded_temperature: Optional[float] = None
    """Override the temperature saved with an embedded checkpoint (unset: the checkpoint's own)."""
    max_tokens: int = 1024
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 4
    api_key_env: str = "ORBIT_API_KEY"
    cache_root: str = str(orbit_home() / "cache" / "requests")

    def load(self, uri: str) -> Policy:
        if parse_policy_uri(uri).scheme == "openai":
            return load_policy(uri, temperature=self.temperature, max_tokens=self.max_tokens,
                               concurrency=self.concurrency, timeout_s=self.timeout_s,
                               max_retries=self.max_retries, api_key_env=self.api_key_env)
        if self.embedded_temperature is None:
            return load_policy(uri)
        return load_policy(uri, temperature=self.embedded_temperature)

    def request_cache(self, round_key: str, env: str) -> RequestCache:
        return RequestCache(partition_cache_path(Path(self.cache_root), round_key, env))
