"""An embedded tabular policy for game envs: no GPU, no download.

Game prompts end with a block listing the legal actions::

    Legal actions (answer with one ID):
    0 -> x(0,0)
    4 -> x(1,1)

and the assistant answers with one ID. The table maps a state (the last user
message's content, keyed by its stable hash) to per-action counts and samples
among the legal actions with weights ``(count + alpha) ** (1 / temperature)``
(``temperature == 0`` is greedy). A fresh table is uniform. It is trained by
counting the actions chosen in passed trajectories and saved as one Parquet
file (``state_hash, state_text, action, count``) whose schema metadata holds the
policy id, alpha and the number of records it was trained on.
"""

import json
import math
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa

from orbit.io.lake import read_table, write_table
from orbit.policies.base import Decoding, Messages, Tools, Turn
from orbit.io.schema import message, stable_hash

UNIFORM = "uniform"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LEGAL_HEADER = "Legal actions"
ACTION_LINE_RE = re.compile(r"^(\d+) -> (.+)$")
NO_LEGAL_ACTIONS = "policy.no_legal_actions"

METADATA_KEY = b"orbit.table_policy"
FORMAT_VERSION = 1
CHECKPOINT_SCHEMA = pa.schema(
    [
        pa.field("state_hash", pa.string(), nullable=False),
        pa.field("state_text", pa.string()),
        pa.field("action", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)


def legal_actions(prompt: str) -> list[str]:
    """Action IDs listed under the last ``Legal actions`` line of a prompt (empty when there is none)."""
    lines = prompt.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(LEGAL_HEADER)]
    if not starts:
        return []
    ids: list[str] = []
    for line in lines[starts[-1] + 1:]:
        match = ACTION_LINE_RE.match(line.strip())
        if not match:
            break
        if match.group(1) not in ids:
            ids.append(match.group(1))
    return ids


def state_text(messages: Messages) -> str | None:
    """The state a game prompt shows: the content of the last user message."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content") or ""
    return None


def state_hash(text: str) -> str:
    return stable_hash("table_policy.state", text)


def count_words(messages: Iterable[Mapping[str, Any]]) -> int:
    """Token count of the embedded policy: whitespace-separated words of every message's content."""
    return sum(len((m.get("content") or "").split()) for m in messages)


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"invalid table-policy name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


class TablePolicy:
    """State -> action-count table implementing the ``Policy`` protocol."""

    def __init__(self, *, name: str = UNIFORM, alpha: float = 1.0, temperature: float = 1.0,
                 counts: Mapping[str, Mapping[str, int]] | None = None,
                 texts: Mapping[str, str] | None = None, trained_on_rows: int = 0):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.name = validate_name(name)
        self.id = f"embedded:{name}"
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.counts = {s: dict(actions) for s, actions in (counts or {}).items()}
        self.texts = dict(texts or {})
        self.trained_on_rows = int(trained_on_rows)

    def __repr__(self) -> str:
        return (f"TablePolicy(id={self.id!r}, states={len(self.counts)}, alpha={self.alpha}, "
                f"temperature={self.temperature}, trained_on_rows={self.trained_on_rows})")

    # -- training ---------------------------------------------------------------------------------

    @classmethod
    def train(cls, records: pa.Table | Iterable[Mapping[str, Any]], *, name: str, alpha: float = 1.0,
              temperature: float = 1.0) -> "TablePolicy":
        """Count the action chosen after every game prompt in passed trajectories.

        Records carrying ``passed=False`` are skipped; an answer that is not one of
        the prompt's legal action IDs is not counted.
        """
        from orbit.policies.answers import parse_answer  # the games' answer format (bare ID, {"move": ID}, <answer>)

        if validate_name(name) == UNIFORM:
            raise ValueError(f"{UNIFORM!r} names the untrained policy; pick another name")
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        texts: dict[str, str] = {}
        rows = 0
        for record in _iter_records(records):
            if record.get("passed") is False:
                continue
            used = False
            messages = record.get("messages") or []
            for prompt, answer in zip(messages, messages[1:]):
                if prompt.get("role") != "user" or answer.get("role") != "assistant":
                    continue
                text = prompt.get("content") or ""
                parsed = parse_answer(answer.get("content"))
                action = None if parsed is None else str(parsed)
                if action in legal_actions(text):
                    key = state_hash(text)
                    counts[key][action] += 1
                    texts[key] = text
                    used = True
            rows += int(used)
        return cls(name=name, alpha=alpha, temperature=temperature, counts=counts, texts=texts,
                   trained_on_rows=rows)

    # -- acting -----------------------------------------------------------------------------------

    def probabilities(self, text: str, legal: list[str]) -> list[float]:
        """Sampling probabilities over ``legal`` in the state shown by ``text``."""
        counts = self.counts.get(state_hash(text), {})
        smoothed = [counts.get(a, 0) + self.alpha for a in legal]
        if self.temperature == 0 or not any(smoothed):
            best = max(smoothed)
            winners = [float(c == best) for c in smoothed]
            return [w / sum(winners) for w in winners]
        logs = [math.log(c) / self.temperature if c > 0 else -math.inf for c in smoothed]
        top = max(logs)
        weights = [math.exp(x - top) for x in logs]
        return [w / sum(weights) for w in weights]

    def choose(self, text: str, legal: list[str], seed: int) -> str:
        rng = random.Random(f"{seed}:{state_hash(text)}")
        return rng.choices(legal, weights=self.probabilities(text, legal))[0]

    def identity(self) -> dict:
        """What changes this policy's answers besides the request (for request-cache keys)."""
        return {"temperature": self.temperature, "alpha": self.alpha, "trained_on_rows": self.trained_on_rows}

    def complete(self, messages: Messages, tools: Tools | None = None, *, seed: int,
                 decoding: Decoding | None = None) -> Turn:
        """A legal action ID (always legal, so it obeys any ``decoding.choices``)."""
        text = state_text(messages)
        legal = legal_actions(text or "")
        if not legal:
            return Turn.failed(NO_LEGAL_ACTIONS)
        action = self.choose(text, legal, seed)
        return Turn(message=message("assistant", action), prompt_tokens=count_words(messages),
                    completion_tokens=1, cost=0.0, finish_reason="stop")

    async def acomplete(self, messages: Messages, tools: Tools | None = None, *, seed: int,
                        decoding: Decoding | None = None) -> Turn:
        return self.complete(messages, tools, seed=seed, decoding=decoding)

    def check(self) -> None:
        """An in-memory table is always available."""

    async def aclose(self) -> None:
        """Nothing to release."""

    def close(self) -> None:
        """Nothing to release."""

    # -- checkpoints ------------------------------------------------------------------------------

    def save(self, path: Path | str) -> Path:
        """Write the table as one Parquet file (atomically), rows sorted by state then action."""
        rows = [
            {"state_hash": s, "state_text": self.texts.get(s), "action": a, "count": int(n)}
            for s in sorted(self.counts) for a, n in sorted(self.counts[s].items())
        ]
        meta = {"format_version": FORMAT_VERSION, "policy_id": self.id, "name": self.name,
                "alpha": self.alpha, "temperature": self.temperature, "trained_on_rows": self.trained_on_rows}
        schema = CHECKPOINT_SCHEMA.with_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True)})
        return write_table(pa.Table.from_pylist(rows, schema=schema), path)

    @classmethod
    def load(cls, path: Path | str, *, temperature: float | None = None) -> "TablePolicy":
        """Read a checkpoint written by ``save``; its id is ``embedded:<name saved in its metadata>``.

        The sampling temperature is the one saved with the checkpoint unless ``temperature`` is given."""
        table = read_table(path)
        meta_blob = (table.schema.metadata or {}).get(METADATA_KEY)
        if meta_blob is None:
            raise ValueError(f"{path} is not an Orbit table-policy checkpoint (no {METADATA_KEY.decode()} metadata)")
        meta = json.loads(meta_blob)
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported table-policy format {meta.get('format_version')!r}")
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        texts: dict[str, str] = {}
        for row in table.to_pylist():
            counts[row["state_hash"]][row["action"]] = row["count"]
            if row["state_text"] is not None:
                texts[row["state_hash"]] = row["state_text"]
        if temperature is None:
            temperature = meta.get("temperature", 1.0)
        return cls(name=meta["name"], alpha=meta["alpha"], temperature=temperature, counts=counts,
                   texts=texts, trained_on_rows=meta["trained_on_rows"])


def _iter_records(records: pa.Table | Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    if isinstance(records, pa.Table):
        columns = [c for c in ("messages", "passed") if c in records.column_names]
        for batch in records.select(columns).to_batches():
            yield from batch.to_pylist()
    else:
        yield from records
