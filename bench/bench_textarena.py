"""TextArena verify throughput: the verify stage's replays/s vs a bare re-step loop, per supported game.

For each supported TextArena game, raw self-play records are generated (the family's default learner,
scripted, against the random-legal opponent; not timed), then, in interleaved passes over the same
batches:
  * the verify stage: ``orbit.stages.verify.verify_batches(batches, verifier, threshold, counts,
    workers=1)``: batch -> dicts, structural rules, the replay verifier (task and chat checks, a fresh env
    reset with the task's seed, every action re-stepped with the learner's observations and the fixed
    opponent's actions checked), verified batch out;
  * the bare re-step loop: batch -> dicts, metadata JSON, ``textarena.make(env_id)``, ``reset`` with the
    recorded seed, ``step`` every recorded action; no checks, no observations, no output.
Figures are replays (records) per second, median over interleaved rotated rounds (at least ``repeat``, more
until a game's block has run a few seconds); ratio = the median over rounds of the round's bare time / verify
time (a round's two passes share the host's phase: this 2-core host is shared and noisy).
Goal: the verify stage >= 0.8x the bare loop for every game.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import pyarrow as pa  # noqa: E402

from orbit.envs.base import EnvSpec, GenerationRequest  # noqa: E402
from orbit.envs.textarena.family import FAMILY  # noqa: E402
from orbit.envs.textarena.games import SUPPORTED, SUPPORTED_IDS  # noqa: E402
from orbit.stages.verify import VerifyCounts, verify_batches  # noqa: E402

GOAL_RATIO = 0.8


def spec_of(env_id: str) -> EnvSpec:
    name = env_id.split("-")[0].lower() + "_ta"
    return EnvSpec(name=name, family="textarena", description=f"TextArena {env_id}", options={"env_id": env_id})


def generate_records(spec: EnvSpec, n: int) -> list[pa.RecordBatch]:
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=n, samples_per_task=1, workers=1)
    return list(FAMILY.generate(request))


def bare_restep(batches: list[pa.RecordBatch]) -> int:
    """Make, reset and step every record's actions through TextArena's own wrapped env; returns the actions."""
    import textarena

    steps = 0
    for batch in batches:
        for row in batch.to_pylist():
            meta = json.loads(row["metadata"])
            task = meta["task"]
            env = textarena.make(task["env_id"])
            env.reset(num_players=SUPPORTED[task["env_id"]].num_players, seed=task["seed"])
            for _, text in meta["actions"]:
                env.step(text)
            steps += len(meta["actions"])
    return steps


def verify_stage(batches: list[pa.RecordBatch], verifier, threshold: float) -> VerifyCounts:
    counts = VerifyCounts()
    for _ in verify_batches(batches, verifier, threshold, counts, workers=1):
        pass
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--records", type=int, default=None, help="generated records per game (default 600; quick 120)")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds at least, median (default 9; quick 5)")
    ap.add_argument("--games", nargs="+", default=list(SUPPORTED_IDS), choices=SUPPORTED_IDS)
    args = ap.parse_args(argv)
    n = args.records or (120 if args.quick else 600)
    repeat = args.repeat or (5 if args.quick else 9)
    min_seconds = 3.0 if args.quick else 8.0

    rows, notes = [], []
    for env_id in args.games:
        spec = spec_of(env_id)
        t_gen, batches = C.timed(generate_records, spec, n)
        records = sum(b.num_rows for b in batches)
        verifier = FAMILY.verifier(spec)
        counts = verify_stage(batches, verifier, spec.pass_threshold)  # warm-up + correctness
        actions = bare_restep(batches)
        s_ver, s_bare = C.interleaved_samples(
            [lambda: verify_stage(batches, verifier, spec.pass_threshold), lambda: bare_restep(batches)],
            repeat, rotate=True, min_seconds=min_seconds)
        r_ver, r_bare = records / statistics.median(s_ver), records / statistics.median(s_bare)
        ratio = statistics.median(b / v for v, b in zip(s_ver, s_bare))  # each round's pair: the host's phase cancels
        rows.append(C.Row(f"{env_id} verify_batches workers=1", r_ver, "replays/s", r_bare, ratio,
                          f">= {GOAL_RATIO}x bare", ratio >= GOAL_RATIO))
        key = env_id.replace("-", "_").lower()
        C.metric(f"{key}.replays_per_s", r_ver)
        C.metric(f"{key}.bare_replays_per_s", r_bare)
        C.metric(f"{key}.ratio_vs_bare", ratio)
        C.metric(f"{key}.passed", counts.passed)
        C.metric(f"{key}.records", records)
        bad = {k: v for k, v in counts.reasons.items() if k != "score.below_threshold"}
        notes.append(f"{env_id}: {records} records ({actions / records:.1f} actions each) generated in "
                     f"{t_gen:.1f}s; passed {counts.passed}/{counts.rows} (scripted learner's p = "
                     f"{counts.passed / max(1, counts.rows):.2f})"
                     + (f"; UNEXPECTED failure reasons {bad}" if bad else "; no failure but score.below_threshold"))
    C.print_table(
        "textarena verify: verify stage replays/s vs bare TextArena re-step",
        rows,
        notes=[
            "baseline = bare re-step (to_pylist + metadata JSON + textarena.make + reset + step each action)",
            "ratio = verify stage / bare throughput (<1: the checks' cost)",
            f"ratio: median over {repeat}+ interleaved rotated rounds of each round's bare / verify time",
            *notes,
            C.environment_note(),
        ],
    )
    C.save_metrics("textarena")
    return 0


if __name__ == "__main__":
    sys.exit(main())
