"""reasoning_gym family throughput: the verify stage vs bare scoring, workers=2 vs 1, teacher vs bare generation.

    python bench/bench_reasoning_gym.py [--quick] [--records N] [--large N] [--repeat R]

For each task (leg_counting with min/max_animals 2..4, chain_sum with its defaults) one teacher partition
of N tasks is generated (not timed), then timed in interleaved rounds:
  * verify, warm: ``orbit.stages.verify.verify_batches(batches, verifier, 1.0, counts, workers=1)`` in the
    process that generated the rows (every item in the item cache: nothing is regenerated). The goal row.
  * verify, fresh process: the same with the dataset and item caches emptied first, so every item is
    regenerated from its spec (what a verify step in another process pays).
  * bare read + score: batch.select(messages, metadata).to_pylist(), json.loads(metadata), the item by its
    index from a list built beforehand (dataset and items already built), a regex for the answer, and
    ``dataset.score_answer``; no checks, no output. The goal's baseline.
  * scorer only: ``score_answer(item["answer"], item)`` over the prebuilt items, reading no record at all
    (information: what the scorer itself costs).
  * stage floor: ``verify_batches`` with a verifier that reads the same columns and passes every record
    (information: the verify stage's own cost, the ceiling of the first figure).
Generation (per task): ``FAMILY.generate`` items/s (caches emptied before each pass, outside the timing)
vs a bare ``create_dataset(task, **config, seed, size)`` + ``list(dataset)`` of the same items.
Large block (``--large``, default 131,072 rows; quick 65,536, the verify stage's PARALLEL_MIN_ROWS: a smaller
partition is verified in-process whatever ``workers`` says): leg_counting rows (8,192 generated items,
repeated) read back from Parquet, ``verify_batches`` workers=2 vs workers=1 (wall time), same counts checked; the
pool is started, and its workers have imported reasoning-gym and regenerated the items, before timing. A CPU
probe (``_common.parallel_capacity``) runs around it: on a shared host workers=2 cannot beat what it gives.

Figures are medians of wall time over rotated interleaved rounds (at least ``--repeat``, more until each block has
run ``--min-seconds``); the host is shared, so the ratio of each block's fastest rounds is noted and recorded too.

Goals: verify (warm) >= 0.8x bare read + score; workers=2 >= 1.7x workers=1; generate >= 0.8x bare.
"""

import argparse
import gc
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import pyarrow as pa  # noqa: E402

from orbit.envs.base import EnvSpec, GenerationRequest, Verdict  # noqa: E402
from orbit.envs.reasoning_gym import items, library  # noqa: E402
from orbit.envs.reasoning_gym.family import FAMILY  # noqa: E402
from orbit.io import lake  # noqa: E402
from orbit.stages.verify import PARALLEL_MIN_ROWS, VerifyCounts, verify_batches  # noqa: E402

TASKS = {
    "leg_counting": {"min_animals": 2, "max_animals": 4},
    "chain_sum": {},
}
GOAL_VERIFY, GOAL_WORKERS, GOAL_GENERATE = 0.8, 1.7, 0.8
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>\s*$", re.S)
ROUND = "r0000"


def env_spec(task: str, n: int) -> EnvSpec:
    return EnvSpec(name=task, family="reasoning_gym", description=task, options={"task": task, "config": TASKS[task]},
                   num_tasks=n)


def request(spec: EnvSpec, n: int) -> GenerationRequest:
    return GenerationRequest(env=spec, round_key=ROUND, num_tasks=n, samples_per_task=1, workers=1)


def bare_dataset(spec: EnvSpec, n: int):
    """The partition's dataset made directly with reasoning-gym (same seed and size as the family's)."""
    seed = items.dataset_seed(spec.name, ROUND, 0)
    return library.load().create_dataset(spec.options["task"], **TASKS[spec.options["task"]], seed=seed, size=n)


class NullVerifier:
    """Reads what the family's verifier reads and passes everything: the verify stage's own cost."""

    name, version = "null", "0"
    parallel_safe = True
    reads_plain_texts = True

    def __init__(self, columns):
        self.columns = columns

    def verify(self, record):
        return Verdict(1.0)


def verify_stream(batches: list[pa.RecordBatch], verifier, workers: int) -> VerifyCounts:
    counts = VerifyCounts()
    for _ in verify_batches(batches, verifier, 1.0, counts, workers=workers):
        pass
    return counts


def bare_score(batches: list[pa.RecordBatch], dataset, entries: list[dict]) -> int:
    """Read each record's answer and item index and score it with the task's scorer: no checks, no output."""
    passed = 0
    for batch in batches:
        for row in batch.select(["messages", "metadata"]).to_pylist():
            index = json.loads(row["metadata"])["task"]["index"]
            match = ANSWER_RE.search(row["messages"][-1]["content"] or "")
            passed += dataset.score_answer(match.group(1).strip() if match else None, entries[index]) == 1.0
    return passed


def scorer_only(dataset, entries: list[dict]) -> int:
    return sum(dataset.score_answer(e["answer"], e) == 1.0 for e in entries)


def interleaved(blocks: list[tuple], repeat: int, min_seconds: float) -> tuple[list[float], list[float]]:
    """Median and fastest wall time of each (setup, fn) over interleaved rounds.

    Rounds rotate (a, b, c; b, c, a; ...) so no figure always follows the same one; there are at least
    ``repeat`` of them, and more (at most 4x) until the blocks have run ``min_seconds``. ``setup`` runs
    before the clock starts, with a GC pass, so no figure pays for another's garbage."""
    samples: list[list[float]] = [[] for _ in blocks]
    started = time.perf_counter()
    rounds = 0
    while rounds < repeat or (time.perf_counter() - started < min_seconds and rounds < 4 * repeat):
        order = list(range(len(blocks)))
        order = order[rounds % len(order):] + order[:rounds % len(order)]
        for i in order:
            setup, fn = blocks[i]
            if setup is not None:
                setup()
            gc.collect()
            t0 = time.perf_counter()
            fn()
            samples[i].append(time.perf_counter() - t0)
        rounds += 1
    return [statistics.median(s) for s in samples], [min(s) for s in samples]


def refill(spec: EnvSpec, n: int):
    """Empty the caches, then regenerate the partition's items (untimed): the warm state of a generating process."""
    def setup():
        items.clear_caches()
        for _ in FAMILY.generate(request(spec, n)):
            pass
    return setup


def verify_block(task: str, n: int, repeat: int, min_seconds: float) -> tuple[list, list]:
    spec = env_spec(task, n)
    FAMILY.check(spec)
    batches = list(FAMILY.generate(request(spec, n)))
    verifier = FAMILY.verifier(spec)
    dataset = bare_dataset(spec, n)
    entries = list(dataset)
    null = NullVerifier(verifier.columns)
    counts = verify_stream(batches, verifier, 1)  # warm-up and correctness
    assert bare_score(batches, dataset, entries) == counts.passed == n, (counts, n)
    median, fastest = interleaved([
        (refill(spec, n), lambda: verify_stream(batches, verifier, 1)),
        (items.clear_caches, lambda: verify_stream(batches, verifier, 1)),
        (None, lambda: bare_score(batches, dataset, entries)),
        (None, lambda: scorer_only(dataset, entries)),
        (None, lambda: verify_stream(batches, null, 1)),
    ], repeat, min_seconds)
    r_warm, r_cold, r_bare, r_scorer, r_null = (n / t for t in median)
    f_warm, f_cold, f_bare, _, f_null = (n / t for t in fastest)
    C.metric(f"{task}.verify.fastest_ratio_vs_bare", f_warm / f_bare)
    C.metric(f"{task}.verify.cold_fastest_ratio_vs_bare", f_cold / f_bare)
    C.metric(f"{task}.verify.records_per_s", r_warm)
    C.metric(f"{task}.verify.bare_records_per_s", r_bare)
    C.metric(f"{task}.verify.ratio_vs_bare", r_warm / r_bare)
    C.metric(f"{task}.verify.cold_records_per_s", r_cold)
    C.metric(f"{task}.verify.cold_ratio_vs_bare", r_cold / r_bare)
    C.metric(f"{task}.verify.scorer_only_per_s", r_scorer)
    C.metric(f"{task}.verify.ratio_vs_scorer_only", r_warm / r_scorer)
    C.metric(f"{task}.verify.stage_floor_records_per_s", r_null)
    C.metric(f"{task}.verify.stage_floor_ratio_vs_bare", r_null / r_bare)
    rows = [
        C.Row(f"{task} verify_batches w=1, items cached", r_warm, "records/s", r_bare, r_warm / r_bare,
              f">= {GOAL_VERIFY}x bare", r_warm / r_bare >= GOAL_VERIFY,
              note="baseline = bare read + score (to_pylist, json.loads, regex, score_answer on prebuilt items)"),
        C.Row(f"{task} verify_batches w=1, fresh process", r_cold, "records/s", r_bare, r_cold / r_bare,
              note="dataset and item caches emptied first: every item regenerated from its spec"),
        C.Row(f"{task} verify_batches w=1 vs scorer only", r_warm, "records/s", r_scorer, r_warm / r_scorer,
              note="baseline = score_answer(item['answer'], item) over prebuilt items, no record read"),
        C.Row(f"{task} verify_batches w=1, a verifier that checks nothing", r_null, "records/s", r_bare,
              r_null / r_bare, note="the verify stage's own cost (decode, structural rules, output) with a verifier "
                                    "that reads the same columns and passes all: the ceiling of the first row"),
    ]
    notes = [f"{task}: {n} teacher records, {counts.passed} passed; fastest rounds: verify {f_warm / f_bare:.2f}x bare, "
             f"fresh process {f_cold / f_bare:.2f}x, checks-nothing verifier {f_null / f_bare:.2f}x"]
    return rows, notes


def generate_block(task: str, n: int, repeat: int, min_seconds: float) -> tuple[list, list]:
    spec = env_spec(task, n)
    FAMILY.check(spec)
    first = pa.Table.from_batches(list(FAMILY.generate(request(spec, n))))
    entries = list(bare_dataset(spec, n))
    assert first.column("messages").to_pylist()[-1][1]["content"] == entries[-1]["question"]
    median, fastest = interleaved([
        (items.clear_caches, lambda: list(FAMILY.generate(request(spec, n)))),
        (None, lambda: list(bare_dataset(spec, n))),
    ], repeat, min_seconds)
    r_gen, r_bare = (n / t for t in median)
    C.metric(f"{task}.generate.fastest_ratio_vs_bare", fastest[1] / fastest[0])
    C.metric(f"{task}.generate.items_per_s", r_gen)
    C.metric(f"{task}.generate.bare_items_per_s", r_bare)
    C.metric(f"{task}.generate.ratio_vs_bare", r_gen / r_bare)
    return [C.Row(f"{task} FAMILY.generate (teacher rows)", r_gen, "items/s", r_bare, r_gen / r_bare,
                  f">= {GOAL_GENERATE}x bare", r_gen / r_bare >= GOAL_GENERATE,
                  note="baseline = create_dataset(task, **config, seed, size) + list(dataset), same items")], [
        f"{task} generation, fastest rounds: {fastest[1] / fastest[0]:.2f}x bare"]


def large_block(records: int, repeat: int) -> tuple[list, list]:
    unique = min(8192, records)
    spec = env_spec("leg_counting", unique)
    one = pa.Table.from_batches(list(FAMILY.generate(request(spec, unique))))
    table = pa.concat_tables([one] * -(-records // one.num_rows)).slice(0, records)
    verifier = FAMILY.verifier(spec)
    with tempfile.TemporaryDirectory(prefix="orbit-bench-rg-") as tmp:  # batches as the verify stage reads them
        path = lake.write_table(table, Path(tmp) / "part-0.parquet")
        batches = list(lake.iter_batches(path))
    started = time.perf_counter()
    for _ in range(2):  # untimed: start the pool; its workers import reasoning-gym and regenerate the items
        verify_stream(batches, verifier, 2)
    warm_up = time.perf_counter() - started
    c1 = verify_stream(batches, verifier, 1)
    c2 = verify_stream(batches, verifier, 2)
    probe_before = C.parallel_capacity(2)
    t1, t2 = C.interleaved_medians([lambda: verify_stream(batches, verifier, 1),
                                    lambda: verify_stream(batches, verifier, 2)], repeat)
    probe_after = C.parallel_capacity(2)
    probe = (probe_before + probe_after) / 2
    C.metric("large.cpu_probe", probe)
    C.metric("large.w2_over_w1_over_cpu_probe", t1 / t2 / max(0.5, probe))
    same = c1 == c2 and c1.passed == records
    C.metric("large.records", records)
    C.metric("large.w1_records_per_s", records / t1)
    C.metric("large.w2_records_per_s", records / t2)
    C.metric("large.w2_over_w1", t1 / t2)
    rows = [C.Row(f"leg_counting {records:,} records, verify_batches workers=2", records / t2, "records/s",
                  records / t1, t1 / t2, f">= {GOAL_WORKERS}x w=1", t1 / t2 >= GOAL_WORKERS,
                  note=f"baseline = workers=1, same batches; counts equal: {same}")]
    notes = [f"large block: {len(batches)} batches read back from Parquet ({unique:,} generated items repeated); "
             f"pool warm-up (2 untimed passes: worker start, reasoning-gym import, items) {warm_up:.1f}s; wall "
             f"times (a pool); CPU probe around it {probe_before:.2f} / {probe_after:.2f} (2.0 = two free cores): "
             f"workers=2 / workers=1 per probe core {t1 / t2 / max(0.5, probe):.2f}"]
    return rows, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--records", type=int, default=None, help="tasks per partition (default 8192; quick 2048)")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds per figure, median (default 5; quick 2)")
    ap.add_argument("--large", type=int, default=None,
                    help=f"rows of the workers=2 block (default 131072; quick {PARALLEL_MIN_ROWS}; 0 = skip)")
    ap.add_argument("--min-seconds", type=float, default=None,
                    help="rounds continue until a block has run this long (default 20; quick 3)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    args = ap.parse_args(argv)
    n = args.records or (2048 if args.quick else 8192)
    repeat = args.repeat or (2 if args.quick else 5)
    large = args.large if args.large is not None else (PARALLEL_MIN_ROWS if args.quick else 131_072)
    min_seconds = args.min_seconds if args.min_seconds is not None else (3.0 if args.quick else 20.0)

    started = time.perf_counter()
    library.load()
    import_s = time.perf_counter() - started
    C.metric("reasoning_gym_import_s", import_s)
    capacity = C.parallel_capacity()
    C.metric("cpu_probe", capacity)
    rows, notes = [], []
    for task in args.tasks:
        more_rows, more_notes = verify_block(task, n, repeat, min_seconds)
        rows += more_rows
        notes += more_notes
    for task in args.tasks:
        more_rows, more_notes = generate_block(task, n, repeat, min_seconds)
        rows += more_rows
        notes += more_notes
    if large:
        more_rows, more_notes = large_block(large, repeat)
        rows += more_rows
        notes += more_notes
    C.print_table(
        "reasoning_gym: verify stage vs bare scoring, workers=2 vs 1, teacher generation vs bare reasoning-gym",
        rows,
        notes=[
            "ratio = figure / baseline, both measured in this run; medians of interleaved rounds",
            "the host is shared and noisy: each block's fastest-round ratios are noted (and recorded) beside the medians",
            f"at least {repeat} rounds per block (more until it ran {min_seconds:g}s); reasoning-gym import "
            f"{import_s:.1f}s (once per process, not timed)",
            f"CPU probe before the blocks: {capacity:.2f} (2.0 = two free cores)",
            *notes,
            C.environment_note(),
        ],
    )
    C.save_metrics("reasoning_gym")
    return 0


if __name__ == "__main__":
    sys.exit(main())
