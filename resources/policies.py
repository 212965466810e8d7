"""The policy resource: turns a policy URI into a ready policy, plus its request cache."""

import json
from pathlib import Path
from typing import Any, Optional

import dagster as dg

from orbit.io.home import orbit_home
from orbit.policies.base import Policy
from orbit.policies.request_cache import RequestCache, partition_cache_path
from orbit.policies.uri import load_policy, parse_policy_uri

ENDPOINT_OVERRIDES = ("temperature", "top_p", "max_tokens", "concurrency", "timeout_s", "max_retries",
                      "constrained", "tool_choice", "check_timeout_s", "check_retries",
                      "prompt_price_per_mtok", "completion_price_per_mtok")


class PolicyResource(dg.ConfigurableResource):
    """How Orbit talks to policies. The API key is read from the environment variable named by
    ``api_key_env`` when a request is made; it never enters config, metadata or logs."""

    temperature: float = 1.0
    """Sampling temperature for endpoints."""
    embedded_temperature: Optional[float] = None
    """Override the temperature saved with an embedded checkpoint (unset: the checkpoint's own)."""
    max_tokens: int = 1024
    """Cap on tokens per answer; each env asks for less (games 48, LiveWeb 384 per turn)."""
    concurrency: int = 8
    """Requests in flight per endpoint (and samples in flight per partition). llama-cpp-python serves
    one request at a time: use 1 there."""
    timeout_s: float = 60.0
    max_retries: int = 4
    api_key_env: str = "ORBIT_API_KEY"
    constrained: str = "auto"
    """Constrained decoding of game moves: auto (probe the server), json_schema (OpenAI, vLLM, SGLang,
    Ollama), json_object (llama-cpp-python) or off."""
    tool_choice: str = "auto"
    """tool_choice sent with tools (auto, required, none; empty: not sent)."""
    check_timeout_s: float = 30.0
    """Per-try timeout of the availability check (GET /models); a busy llama.cpp answers it late."""
    check_retries: int = 4
    """Extra tries of the availability check on timeouts, connection errors and 5xx."""
    prompt_price_per_mtok: Optional[float] = None
    """Price per million prompt tokens (set both prices or neither; unset: cost is null)."""
    completion_price_per_mtok: Optional[float] = None
    endpoints_json: str = "{}"
    """Per-endpoint overrides keyed by base URL, e.g.
    {"http://127.0.0.1:8080/v1": {"concurrency": 1, "constrained": "json_object"}}."""
    cache_root: str = str(orbit_home() / "cache" / "requests")
    slots_dir: Optional[str] = str(orbit_home() / "locks" / "endpoints")
    """Lock files that make an endpoint's concurrency hold across processes (parallel runs); unset: per process."""

    def endpoint_settings(self, uri: str) -> dict[str, Any]:
        """The endpoint options for a policy URI: the resource's, then its base URL's overrides."""
        settings = {"temperature": self.temperature, "max_tokens": self.max_tokens, "concurrency": self.concurrency,
                    "timeout_s": self.timeout_s, "max_retries": self.max_retries, "api_key_env": self.api_key_env,
                    "constrained": self.constrained, "tool_choice": self.tool_choice or None,
                    "check_timeout_s": self.check_timeout_s, "check_retries": self.check_retries,
                    "prompt_price_per_mtok": self.prompt_price_per_mtok,
                    "completion_price_per_mtok": self.completion_price_per_mtok, "slots_dir": self.slots_dir}
        overrides = json.loads(self.endpoints_json or "{}")
        if not isinstance(overrides, dict):
            raise ValueError("endpoints_json must be a JSON object keyed by base URL")
        base_url = parse_policy_uri(uri).base_url.rstrip("/")
        own = next((v for k, v in overrides.items() if str(k).rstrip("/") == base_url), {})
        unknown = sorted(set(own) - set(ENDPOINT_OVERRIDES))
        if unknown:
            raise ValueError(f"endpoints_json: unknown settings {unknown}; known: {', '.join(ENDPOINT_OVERRIDES)}")
        return {**settings, **own}

    def concurrency_for(self, uri: str) -> int:
        """Samples in flight for this policy: its endpoint's concurrency (the resource's for embedded policies)."""
        if parse_policy_uri(uri).scheme == "openai":
            return int(self.endpoint_settings(uri)["concurrency"])
        return self.concurrency

    def load(self, uri: str) -> Policy:
        if parse_policy_uri(uri).scheme == "openai":
            return load_policy(uri, **self.endpoint_settings(uri))
        if self.embedded_temperature is None:
            return load_policy(uri)
        return load_policy(uri, temperature=self.embedded_temperature)

    def request_cache(self, round_key: str, env: str) -> RequestCache:
        return RequestCache(partition_cache_path(Path(self.cache_root), round_key, env))
