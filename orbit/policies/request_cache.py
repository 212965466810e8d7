"""Resume: a durable cache of policy turns, so a rerun does not query the policy again.

One SQLite file per partition (``<root>/round=<r>/env=<e>/requests.sqlite``) maps
``(round, env, task_id, sample_idx, policy, step)`` to the returned ``Turn``,
stored as JSON. ``step`` numbers the policy calls within one sample (0 for
single-turn tasks; the move index in a game). Every turn is committed as soon as
it comes back (WAL journal), so a crashed run keeps what it got. Failed turns are
not cached: a rerun asks again. A cached turn is used only if the request it
answered is unchanged: its hash covers everything that changes the answer — for an
endpoint the base URL and the body as sent (model, messages, tools, tool_choice,
temperature, top_p, max_tokens, response_format, seed); for other policies their id,
``identity()`` (e.g. the temperature), messages, tools, seed and decoding.
"""

import dataclasses
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from orbit.io.keys import validate_env, validate_round
from orbit.policies.base import Decoding, Messages, Policy, Tools, Turn, accepts_decoding
from orbit.io.schema import stable_hash

CACHE_FILE = "requests.sqlite"

_CREATE = """
CREATE TABLE IF NOT EXISTS turns (
    round TEXT NOT NULL, env TEXT NOT NULL, task_id TEXT NOT NULL, sample_idx INTEGER NOT NULL,
    policy TEXT NOT NULL, step INTEGER NOT NULL, request_hash TEXT NOT NULL, turn TEXT NOT NULL,
    PRIMARY KEY (round, env, task_id, sample_idx, policy, step)
)"""
_KEY_WHERE = "round = ? AND env = ? AND task_id = ? AND sample_idx = ? AND policy = ? AND step = ?"


@dataclass(frozen=True)
class RequestKey:
    round: str
    env: str
    task_id: str
    sample_idx: int
    policy: str
    step: int = 0

    def values(self) -> tuple:
        return (self.round, self.env, self.task_id, int(self.sample_idx), self.policy, int(self.step))


def partition_cache_path(root: Path | str, round_key: str, env: str) -> Path:
    return Path(root) / f"round={validate_round(round_key)}" / f"env={validate_env(env)}" / CACHE_FILE


def request_hash(messages: Messages, tools: Tools | None, seed: int, decoding: Decoding | None = None,
                 identity: dict | None = None) -> str:
    return stable_hash("request", [dict(m) for m in messages], tools, seed,
                       decoding.to_json() if decoding else None, identity)


async def policy_request_hash(policy: Policy, messages: Messages, tools: Tools | None, seed: int,
                              decoding: Decoding | None = None) -> str:
    """The hash of the request ``policy`` would send: its own wire identity when it has one."""
    if hasattr(policy, "arequest_identity"):
        body = await policy.arequest_identity(messages, tools, seed, decoding)
        return stable_hash("request.wire", body)
    identity = {"policy": policy.id, **(policy.identity() if hasattr(policy, "identity") else {})}
    return request_hash(messages, tools, seed, decoding, identity)


class RequestCache:
    """Turns already received, keyed by ``RequestKey``; ``hits``/``misses`` count ``complete`` calls."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_CREATE)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: RequestKey, expected_hash: str | None = None) -> Turn | None:
        with self._lock:
            row = self._db.execute(f"SELECT request_hash, turn FROM turns WHERE {_KEY_WHERE}", key.values()).fetchone()
        if row is None or (expected_hash is not None and row[0] != expected_hash):
            return None
        return Turn(**json.loads(row[1]))

    def put(self, key: RequestKey, turn: Turn, hash_of_request: str) -> None:
        blob = json.dumps(dataclasses.asdict(turn), ensure_ascii=False, sort_keys=True)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (*key.values(), hash_of_request, blob))

    async def complete(self, policy: Policy, key: RequestKey, messages: Messages, tools: Tools | None = None,
                       *, seed: int, decoding: Decoding | None = None) -> Turn:
        """The cached turn for ``key`` if the same request was answered before, else ask ``policy`` and store it."""
        turn, _ = await self.lookup_or_ask(policy, key, messages, tools, seed=seed, decoding=decoding)
        return turn

    async def lookup_or_ask(self, policy: Policy, key: RequestKey, messages: Messages, tools: Tools | None = None,
                            *, seed: int, decoding: Decoding | None = None) -> tuple[Turn, bool]:
        """``complete`` that also tells whether the turn came from the cache."""
        if key.policy != policy.id:
            raise ValueError(f"cache key names policy {key.policy!r} but the policy is {policy.id!r}")
        expected = await policy_request_hash(policy, messages, tools, seed, decoding)
        cached = self.get(key, expected)
        if cached is not None:
            self.hits += 1
            return cached, True
        self.misses += 1
        if decoding is not None and accepts_decoding(policy):
            turn = await policy.acomplete(messages, tools, seed=seed, decoding=decoding)
        else:
            turn = await policy.acomplete(messages, tools, seed=seed)
        if turn.ok:
            self.put(key, turn, expected)
        return turn, False

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM turns").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "RequestCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
