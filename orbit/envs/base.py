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


# ------------------------------------------------------------------------------------------ dedup hooks
#
# The dedup stage (``orbit.stages.dedup``) asks an env's family two things about a record (a dict of the
# verified schema: ``messages``, ``metadata``, ``tools``, ...). A family may define either as a method
# of the same name; these are the defaults, and the only place the rules live.
#
# - ``trajectory_key(record) -> str``: the record's canonical trajectory. Two records with the same
#   key (in the same env) are exact duplicates, whatever their task ids. Games: the game and its
#   action history; tool use: the canonical tool-call sequence and answers; text families (the
#   default): a hash of the prompt and the normalised final answer.
# - ``dedup_text(record) -> (text, kind)``: what the near-duplicate stage MinHashes: the assistant
#   turns only (system prompts, tool schemas and board renderings are boilerplate that would merge
#   distinct trajectories). ``kind`` is ``"prose"`` (word 5-gram shingles) or ``"code"`` (character
#   n-grams: code and JSON). An empty text has no signature and is deduplicated exactly only.

def normalise_text(text: Any) -> str:
    """Casefolded, whitespace collapsed: what makes two answers the same answer."""
    return " ".join(str(text or "").casefold().split())


def _messages(record: Mapping[str, Any]) -> list:
    messages = record.get("messages")
    if not isinstance(messages, (list, tuple)):
        return []
    return [m for m in messages if type(m) is dict or isinstance(m, Mapping)]


def prompt_digest(record: Mapping[str, Any]) -> str:
    """sha256 of the messages before the first assistant turn (roles and contents)."""
    import hashlib
    import json

    prompt = []
    for m in _messages(record):
        if m.get("role") == "assistant":
            break
        prompt.append([m.get("role"), m.get("content")])
    blob = json.dumps(prompt, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    return hashlib.sha256(blob).hexdigest()


def assistant_turns(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in _messages(record) if m.get("role") == "assistant"]


def canonical_tool_calls(message: Mapping[str, Any]) -> list[str]:
    """A message's tool calls as ``name(canonical JSON arguments)``: key order and spacing do not matter;
    arguments that are not JSON are kept as their text."""
    import json

    out = []
    for call in message.get("tool_calls") or []:
        fn = (call or {}).get("function") or {} if isinstance(call, Mapping) else {}
        args = fn.get("arguments") if isinstance(fn, Mapping) else None
        try:
            args = json.dumps(json.loads(args), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError):
            args = str(args or "")
        out.append(f"{fn.get('name') if isinstance(fn, Mapping) else ''}({args})")
    return out


def default_trajectory_key(record: Mapping[str, Any]) -> str:
    """Text families: the prompt's hash and the normalised final answer (the last assistant turn, its
    tool calls included)."""
    turns = assistant_turns(record)
    last = turns[-1] if turns else {}
    answer = normalise_text(last.get("content")) + "".join(canonical_tool_calls(last)) if last else ""
    return f"text\x00{prompt_digest(record)}\x00{answer}"


def default_dedup_text(record: Mapping[str, Any]) -> tuple[str, str]:
    """The assistant turns (contents and tool calls); ``code`` kind when any turn calls a tool (JSON)."""
    parts, kind = [], "prose"
    for m in assistant_turns(record):
        if m.get("content"):
            parts.append(str(m["content"]))
        calls = canonical_tool_calls(m)
        if calls:
            kind = "code"
            parts.extend(calls)
    return "\n".join(parts), kind
