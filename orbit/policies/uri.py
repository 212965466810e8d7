"""Policy URIs: the one string that names the policy of a run.

* ``openai:<base_url>#<model>``: an OpenAI-compatible endpoint, e.g.
  ``openai:http://127.0.0.1:8000/v1#qwen2.5-7b``
* ``embedded:uniform``: the untrained table policy (uniform over legal actions)
* ``embedded:<checkpoint path>``: a table policy saved by ``TablePolicy.save``; a relative path
  is relative to ORBIT_HOME (how checkpoints inside the home are recorded, so the home can move)
"""

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orbit.io.lake import from_home
from orbit.policies.base import Policy
from orbit.policies.endpoint import EndpointPolicy
from orbit.policies.table_policy import UNIFORM, TablePolicy

USAGE = "expected 'openai:<base_url>#<model>', 'embedded:uniform' or 'embedded:<checkpoint path>'"
EMBEDDED_SETTINGS = ("temperature",)


class InvalidPolicyURI(ValueError):
    """A policy URI that does not name a usable policy."""


@dataclass(frozen=True)
class PolicyURI:
    scheme: str
    base_url: str | None = None
    model: str | None = None
    checkpoint: Path | None = None  # None for embedded:uniform


def parse_policy_uri(uri: str) -> PolicyURI:
    """Check a URI's syntax (without touching the network or the filesystem)."""
    if not isinstance(uri, str):
        raise InvalidPolicyURI(f"invalid policy URI {uri!r}: {USAGE}")
    scheme, sep, rest = uri.partition(":")
    if not sep or not rest:
        raise InvalidPolicyURI(f"invalid policy URI {uri!r}: {USAGE}")
    if scheme == "openai":
        base_url, _, model = rest.partition("#")
        try:
            parts = urlsplit(base_url)
            host, port = parts.hostname, parts.port  # port: ValueError when not a number in 0-65535
        except ValueError as exc:
            raise InvalidPolicyURI(f"invalid policy URI {uri!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.netloc or not host:
            raise InvalidPolicyURI(f"invalid policy URI {uri!r}: {base_url!r} is not an http(s) base URL")
        if port is not None and not 1 <= port <= 65535:
            raise InvalidPolicyURI(f"invalid policy URI {uri!r}: port {port} is not in 1-65535")
        if parts.username is not None or parts.password is not None:
            raise InvalidPolicyURI("invalid policy URI: credentials do not belong in a URI (they would be stored "
                                   "with every round); name an environment variable with api_key_env")
        if not model or any(c.isspace() for c in model):
            raise InvalidPolicyURI(f"invalid policy URI {uri!r}: name the model after '#', e.g. "
                                   f"'openai:{base_url}#qwen2.5-7b'")
        return PolicyURI("openai", base_url=base_url, model=model)
    if scheme == "embedded":
        return PolicyURI("embedded", checkpoint=None if rest == UNIFORM else from_home(rest))
    raise InvalidPolicyURI(f"unknown policy scheme {scheme!r} in {uri!r}: {USAGE}")


def load_policy(uri: str, **settings: Any) -> Policy:
    """Build the policy a URI names; ``settings`` are the policy's keyword options.

    ``openai`` takes ``EndpointPolicy``'s options (temperature, max_tokens,
    concurrency, timeout_s, api_key_env, prices...); ``embedded`` takes ``temperature``.
    """
    parsed = parse_policy_uri(uri)
    if parsed.scheme == "openai":
        _check_settings(uri, settings, _keyword_options(EndpointPolicy))
        return EndpointPolicy(parsed.base_url, parsed.model, **settings)
    _check_settings(uri, settings, EMBEDDED_SETTINGS)
    if parsed.checkpoint is None:
        return TablePolicy(**settings)
    if not parsed.checkpoint.is_file():
        raise InvalidPolicyURI(f"invalid policy URI {uri!r}: checkpoint {str(parsed.checkpoint)!r} is not a file")
    try:
        return TablePolicy.load(parsed.checkpoint, **settings)
    except (OSError, ValueError) as exc:
        raise InvalidPolicyURI(f"invalid policy URI {uri!r}: cannot read checkpoint: {exc}") from exc


def _keyword_options(cls: type) -> tuple[str, ...]:
    params = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _check_settings(uri: str, settings: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise InvalidPolicyURI(f"unknown settings {unknown} for {uri!r}; known: {', '.join(known)}")
