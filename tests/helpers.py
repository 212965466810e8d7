"""Small builders shared by the tests."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from orbit.envs import GenerationRequest, env_spec, family_of
from orbit.io.schema import VERIFIED_SCHEMA, make_record, message


def verified_row(env="tic_tac_toe", task_id="t0", score=1.0, passed=True, n_messages=3, sample_idx=0,
                 source="selfplay", round_key="r0000", reasons=None) -> dict:
    # every task plays its own trajectory (the filter's dedup stage would merge identical ones)
    msgs = [message("system", "s"), message("user", "u")] + [
        message("assistant", f"{task_id}:{i}") for i in range(max(1, n_messages - 2))
    ]
    row = make_record(env=env, task_id=task_id, round_key=round_key, sample_idx=sample_idx, source=source,
                      policy="bot", seed=0, messages=msgs, score=score, metadata={})
    row.update(claimed_score=score, passed=passed,
               reasons=[] if passed else (reasons or ["score.below_threshold"]), verifier="test@1")
    return row


def verified_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=VERIFIED_SCHEMA)


def metadata(record: dict) -> dict:
    return json.loads(record["metadata"])


def row_group_sizes(path) -> list[int]:
    """The rows of each row group of a Parquet file, in order."""
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]


def generate(env, n=12, workers=1, round_key="r0000", samples=1, **options) -> list[dict]:
    """The records an env's family generates for one small request, as dicts."""
    spec = env_spec(env)
    req = GenerationRequest(env=spec, round_key=round_key, num_tasks=n, samples_per_task=samples,
                            workers=workers, options=options)
    return pa.Table.from_batches(list(family_of(spec).generate(req))).to_pylist()
