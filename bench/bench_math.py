"""Math verification throughput: ``MathVerifier`` (math-verify in killable worker processes) vs a bare loop.

    python bench/bench_math.py [--pairs 400] [--repeat 3] [--quick]

Records of a math env whose tasks file holds the sample generator's problems (``sample_problem(i)``
for as many ``i`` as needed), each with one reply: the gold answer boxed, an equivalent form or a
wrong number. Every contender in every repeat gets its own slice of records (no (gold, reply) pair
twice, so the verifier's memo never answers), while the bare process and the pools' workers live on
as they would through a long verify step, warmed by one more slice first (math-verify's and sympy's
caches, ANTLR's DFA, in each). Timed, interleaved (medians over ``--repeat``):

  * bare: one process, ``math_verify.verify(parse("\\boxed{gold}"), parse(reply))`` per pair, with
    math-verify's defaults (its own ``signal.alarm`` timeouts), after a warm-up (imports not timed);
  * ``verify_many`` with 1 and 2 workers: the record checks, the answer extraction, chunks of pairs sent
    to the pool's workers, a hard per-record timeout; the pools started before timing;
  * the verify stage as it is (``verify_batch``: one ``verify(record)``, one pipe round trip, per record),
    1 worker, for information.

Figures are records per second; ratio = verifier / bare. Goals: >= 0.8x with 1 worker, >= 1.7x with 2
(the second needs two free cores: ``parallel capacity`` says how many this host gave the bench).
Also: the time until a record whose answer pins sympy (``9^{9^{9}}``) fails with ``verify.timeout``.
"""

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import pyarrow as pa  # noqa: E402

from orbit.envs import EnvSpec, GenerationRequest  # noqa: E402
from orbit.envs.math.family import FAMILY  # noqa: E402
from orbit.envs.math.sample import sample_problem  # noqa: E402
from orbit.envs.math.verifier import MathVerifier  # noqa: E402
from orbit.io.schema import RECORD_SCHEMA  # noqa: E402
from orbit.stages.verify import verify_batch  # noqa: E402

GOAL_W1, GOAL_W2 = 0.8, 1.7


def bench_env(folder: Path, n: int) -> EnvSpec:
    path = folder / "math.jsonl"
    path.write_text("".join(json.dumps(sample_problem(i)) + "\n" for i in range(n)))
    return EnvSpec(name="bench_math", family="math", description="bench", options={"tasks_file": str(path)})


def make_records(spec: EnvSpec, n: int) -> list[dict]:
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=n, samples_per_task=1, workers=1)
    rows = pa.Table.from_batches(list(FAMILY.generate(request)), schema=RECORD_SCHEMA).to_pylist()
    rows.sort(key=lambda r: r["task_id"])
    out, seen = [], set()
    for i, row in enumerate(rows):
        gold = row["messages"][2]["content"].split("\\boxed{", 1)[1].rsplit("}", 1)[0]
        kind = i % 3
        reply = {0: f"The answer is $\\boxed{{{gold}}}$.", 1: f"Therefore \\boxed{{{gold} + 0}}",
                 2: f"I get \\boxed{{{i + 100003}}}"}[kind]
        if (gold, reply) in seen:
            continue
        seen.add((gold, reply))
        messages = row["messages"][:2] + [{**row["messages"][2], "content": reply}]
        out.append({**row, "messages": messages, "_gold": gold})
    return out


def bare(records: list[dict]) -> int:
    from math_verify import parse, verify

    ok = 0
    for r in records:
        ok += bool(verify(parse("\\boxed{" + r["_gold"] + "}"), parse(r["messages"][2]["content"])))
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke test: 120 pairs, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeat = 120, 2
    logging.disable(logging.WARNING)  # math-verify logs each of its own timeouts
    contenders = 4
    folder, cleanup = C.scratch_dir("bench-math-")
    slices = contenders * args.repeat + 2
    spec = bench_env(folder, args.pairs * slices + 10)
    records = make_records(spec, args.pairs * slices + 10)
    per = len(records) // slices
    pieces = [records[i * per:(i + 1) * per] for i in range(slices)]
    warm, check = pieces[-2], pieces[-1]
    print(f"{per} records per timed pass (distinct problems and replies, {slices} slices); {C.environment_note()}")

    t0 = time.perf_counter()
    bare(warm[:3])
    warm_bare = time.perf_counter() - t0
    verifiers = {w: MathVerifier(spec, workers=w) for w in (1, 2)}
    t0 = time.perf_counter()
    for v in verifiers.values():
        v.verify_many(warm[:4])  # starts the pools
    warm_pool = time.perf_counter() - t0
    bare(warm)  # the same warm-up slice for every contender, not timed
    for v in verifiers.values():
        v.verify_many(warm)
    capacity = C.parallel_capacity(2)
    queue = iter(pieces[:contenders * args.repeat])

    def run_bare():
        bare(next(queue))

    def run_many(v):
        def go():
            verdicts = v.verify_many(next(queue))
            assert sum(x.score for x in verdicts) > 0
        return go

    def run_stage():
        piece = next(queue)
        verify_batch(pa.RecordBatch.from_pylist([{k: r[k] for k in RECORD_SCHEMA.names} for r in piece],
                                                schema=RECORD_SCHEMA), verifiers[1], 1.0)

    samples = C.interleaved_samples([run_bare, run_many(verifiers[1]), run_many(verifiers[2]), run_stage],
                                    args.repeat, rotate=True, max_rounds=args.repeat)
    bare_s, w1_s, w2_s, stage_s = (statistics.median(s) for s in samples)
    n = per
    expected = bare(check)
    agree = [v.score for v in MathVerifier(spec, workers=2).verify_many(check)]
    rates = {"bare": n / bare_s, "w1": n / w1_s, "w2": n / w2_s, "stage": n / stage_s}

    hostile = dict(records[0])
    hostile["messages"] = hostile["messages"][:2] + [{**hostile["messages"][2], "content": "\\boxed{9^{9^{9}}}"}]
    timeout_v = MathVerifier(spec, workers=1, timeout=2.0)
    timeout_v.verify_many(warm[4:5])
    t0 = time.perf_counter()
    reasons = timeout_v.verify(hostile).reasons
    time_to_fail = time.perf_counter() - t0

    rows = [
        C.Row("bare math-verify loop (1 process)", rates["bare"], "rec/s"),
        C.Row("verify_many, 1 worker", rates["w1"], "rec/s", rates["bare"], rates["w1"] / rates["bare"],
              f">= {GOAL_W1}x", rates["w1"] / rates["bare"] >= GOAL_W1),
        C.Row("verify_many, 2 workers", rates["w2"], "rec/s", rates["bare"], rates["w2"] / rates["bare"],
              f">= {GOAL_W2}x", rates["w2"] / rates["bare"] >= GOAL_W2,
              note=f"parallel capacity of this host now: {capacity:.2f} cores"),
        C.Row("verify stage today (a round trip per record), 1 worker", rates["stage"], "rec/s", rates["bare"],
              rates["stage"] / rates["bare"]),
        C.Row("time to fail: 9^{9^{9}} (timeout 2 s)", time_to_fail, "s", note=f"reasons {list(reasons)}"),
    ]
    C.print_table("math verify", rows, notes=[
        f"on one more slice: bare passes {expected}/{n}, the verifier {int(sum(agree))}/{n}",
        f"warm-up (not timed): bare import {warm_bare:.1f} s, pools start {warm_pool:.1f} s"])
    for key, value in rates.items():
        C.metric(f"{key}_records_per_s", round(value, 2))
    C.metric("ratio_w1", round(rates["w1"] / rates["bare"], 3))
    C.metric("ratio_w2", round(rates["w2"] / rates["bare"], 3))
    C.metric("ratio_stage", round(rates["stage"] / rates["bare"], 3))
    C.metric("parallel_capacity", round(capacity, 2))
    C.metric("time_to_fail_timeout_s", round(time_to_fail, 3))
    C.metric("pool_start_s", round(warm_pool, 2))
    C.save_metrics("bench_math")
    cleanup()


if __name__ == "__main__":
    main()
