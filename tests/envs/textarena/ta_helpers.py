"""Builders shared by the textarena family's tests: env specs made directly (not from the registry)."""

import json

import pyarrow as pa

from orbit.envs.base import EnvSpec, GenerationRequest
from orbit.envs.textarena.family import FAMILY

GAMES = {
    "TicTacToe-v0": "tictactoe_ta",
    "ConnectFour-v0": "connectfour_ta",
    "KuhnPoker-v0": "kuhnpoker_ta",
    "SimpleNegotiation-v0": "negotiation_ta",
    "Mastermind-v0": "mastermind_ta",
    "Sudoku-v0": "sudoku_ta",
}
TWO_PLAYER = ("TicTacToe-v0", "ConnectFour-v0", "KuhnPoker-v0", "SimpleNegotiation-v0")


def spec(env_id: str = "TicTacToe-v0", name: str | None = None, num_tasks: int = 8, **options) -> EnvSpec:
    return EnvSpec(name=name or GAMES.get(env_id, "other_ta"), family="textarena",
                   description=f"TextArena {env_id}", options={"env_id": env_id, **options}, num_tasks=num_tasks)


def request(env: EnvSpec, n: int | None = None, samples: int = 1, round_key: str = "r0000", **options):
    return GenerationRequest(env=env, round_key=round_key, num_tasks=n or env.num_tasks, samples_per_task=samples,
                             workers=1, options=options)


def generate(env: EnvSpec, n: int | None = None, samples: int = 1, round_key: str = "r0000", **options) -> list[dict]:
    batches = list(FAMILY.generate(request(env, n, samples, round_key, **options)))
    return pa.Table.from_batches(batches).to_pylist() if batches else []


def meta(record: dict) -> dict:
    return json.loads(record["metadata"])


def with_meta(record: dict, **changes) -> dict:
    """The record with these metadata keys replaced."""
    return {**record, "metadata": json.dumps({**meta(record), **changes})}


def chat(record: dict) -> list[dict]:
    """The record's conversation as a trainer holds it: role and content only."""
    return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]


def reward_record(env: EnvSpec, record: dict, messages: list[dict] | None = None) -> dict:
    """The record the reward builds from a trainer's conversation (orbit.rewards.score's shape)."""
    task = meta(record)["task"]
    return {"env": env.name, "task_id": record["task_id"], "seed": task.get("seed"),
            "messages": chat(record) if messages is None else messages, "tools": None, "score": None,
            "metadata": json.dumps({"task": task, "history": []})}
