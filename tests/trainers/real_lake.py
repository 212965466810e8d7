"""A small lake of REAL episodes, for the export tests.

LiveWeb rows come from the teacher over the demo cache (whole episodes, ending with the ``stop``
call and the environment's reply). For DPO, each of a few tasks also gets a failed sample that
follows the teacher for some turns and then does something else, every observation coming from
``LiveWebEnvironment`` (a real, verifiable wrong episode). Game rows come from the OpenSpiel
self-play generator (wins pass, losses and draws fail). Everything goes through the real verifier
and filter.
"""

import json
from pathlib import Path

import pyarrow as pa

from orbit.io import lake
from orbit.envs import env_spec, family_of
from orbit.envs.base import GenerationRequest
from orbit.stages.filter import filter_table
from orbit.envs.liveweb.demo_sites import ensure_demo_cache
from orbit.envs.liveweb.environment import LiveWebEnvironment
from orbit.envs.liveweb.family import open_cache
from orbit.io.schema import RECORD_SCHEMA, make_record, message, tool_call
from orbit.stages.verify import verify_batch

ROUND = "r0000"


def _generate(env: str, n: int, samples: int, round_key: str = ROUND, **options) -> list[dict]:
    spec = env_spec(env)
    req = GenerationRequest(env=spec, round_key=round_key, num_tasks=n, samples_per_task=samples, workers=1,
                            options=options)
    return pa.Table.from_batches(list(family_of(spec).generate(req)), schema=RECORD_SCHEMA).to_pylist()


def diverging_liveweb(teacher_row: dict, cache_dir: Path, keep_calls: int, round_key: str = ROUND) -> dict:
    """A failed sample of the teacher's task: its first ``keep_calls`` calls, then ``view_more`` and a
    ``stop`` with wrong answers, every observation produced by the environment."""
    env = LiveWebEnvironment(open_cache(cache_dir))
    env.reset()
    msgs = [m for m in teacher_row["messages"][:2]]
    calls = [m for m in teacher_row["messages"] if m["role"] == "assistant"][:keep_calls]
    n = 0

    def call(name, arguments, think=None):
        nonlocal n
        n += 1
        call_id = f"call_{n:04d}"
        result = env.step(name, arguments)
        msgs.append(message("assistant", think, tool_calls=[tool_call(call_id, name, arguments)]))
        msgs.append(message("tool", result.observation, tool_call_id=call_id, name=name))

    for m in calls:
        fn = m["tool_calls"][0]["function"]
        call(fn["name"], json.loads(fn["arguments"]), m["content"])
    call("view_more", {"direction": "down"}, "I will read further down.")
    stop_args = json.loads(teacher_row["messages"][-2]["tool_calls"][0]["function"]["arguments"])
    call("stop", {"answers": ["not found" for _ in stop_args["answers"]]})
    meta = json.loads(teacher_row["metadata"])
    return make_record(env="liveweb", task_id=teacher_row["task_id"], round_key=round_key, sample_idx=1,
                       source="policy", policy="scripted-wrong@1", seed=teacher_row["seed"], messages=msgs,
                       score=0.0, metadata={"task": meta["task"]}, tools=teacher_row["tools"])


def build_lake(root: Path, liveweb_tasks: int = 6, game_tasks: int = 8, round_key: str = ROUND) -> Path:
    """Write verified_samples and filtered_dataset of one round (r0000 unless given; liveweb + tic_tac_toe)
    under ``root``."""
    root = Path(root)
    cache_dir = ensure_demo_cache(root / "liveweb_cache", seed=0)
    teacher = _generate("liveweb", liveweb_tasks, 1, round_key, cache_dir=str(cache_dir))
    ok = [r for r in teacher if json.loads(r["metadata"]).get("teacher")]
    wrong = [diverging_liveweb(r, cache_dir, keep_calls=1 + i, round_key=round_key) for i, r in enumerate(ok[:3])]
    games = _generate("tic_tac_toe", game_tasks, 2, round_key)
    verified = {}
    for env, rows in (("liveweb", teacher + wrong), ("tic_tac_toe", games)):
        spec = env_spec(env)
        options = {"cache_dir": str(cache_dir)} if env == "liveweb" else None
        verifier = family_of(spec).verifier(spec, options) if options else family_of(spec).verifier(spec)
        batch = verify_batch(pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA), verifier, spec.pass_threshold)
        table = pa.Table.from_batches([batch])
        verified[env] = table
        lake.write_table(table, lake.partition_file(root / "lake", "verified_samples", round_key, env))
        lake.write_table(filter_table(table), lake.partition_file(root / "lake", "filtered_dataset", round_key, env))
    return root / "lake"
