"""Verifier throughput: ``GameReplayVerifier`` through ``verify_batch`` vs a bare replay.

For each game env (tic_tac_toe, connect_four, kuhn_poker, leduc_poker) raw
records are generated with the env's registry settings (its learner and
opponent bots, workers=1; not timed), then verified in the same run by:
  * ``orbit.stages.verify.verify_batch(batch, GameReplayVerifier(), threshold)``:
    batch -> dicts, structural rules, full replay with observation / legal-action /
    answer checks, recomputed score, output batch in VERIFIED_SCHEMA;
  * the bare replay baseline: batch -> dicts, parse the metadata JSON, fresh
    initial state from the cached pyspiel game, apply every action of the
    recorded history; no checks, no prompts, no output.
The verifier is timed twice, interleaved with the baseline:
  * fresh process: no replay tree remembered (``replay_cache.fresh_trees``), so the
    pass builds what it remembers as it goes, as a step process verifying its
    partition does. This is the figure the goal is about;
  * tree remembered: the same records once more with every node and prompt of
    theirs already remembered: what the checks alone cost.
Figures are replays (records) per second, median over repeats; ratio = verifier
/ bare (the verifier's share of the bare replay speed; 1/ratio is its overhead).
Goal: verify_batch in a fresh process >= 0.5x the bare replay for every game env.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import pyarrow as pa  # noqa: E402

from orbit.io import lake  # noqa: E402
from orbit.envs import GenerationRequest, env_spec, family_of  # noqa: E402
from orbit.envs.openspiel import replay_cache  # noqa: E402
from orbit.envs.openspiel.tasks import load_game  # noqa: E402
from orbit.stages.verify import VerifyCounts, verify_batch, verify_batches  # noqa: E402

GAMES = ("tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker")
GOAL_RATIO = 0.5


def generate_records(env: str, n: int) -> list[pa.RecordBatch]:
    spec = env_spec(env)
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=n, samples_per_task=1, workers=1)
    return list(family_of(spec).generate(request))


def bare_replay(batches: list[pa.RecordBatch]) -> int:
    """Apply each record's history to a fresh state; returns the number of actions applied."""
    actions = 0
    for batch in batches:
        for row in batch.to_pylist():
            meta = json.loads(row["metadata"])
            task = meta["task"]
            state = load_game(task["game"], task.get("params")).new_initial_state()
            for action in meta["history"]:
                state.apply_action(action)
            actions += len(meta["history"])
    return actions


def verify_all(batches: list[pa.RecordBatch], verifier, threshold: float) -> VerifyCounts:
    counts = VerifyCounts()
    for batch in batches:
        verify_batch(batch, verifier, threshold, counts)
    return counts


def verify_cold(batches: list[pa.RecordBatch], verifier, threshold: float) -> VerifyCounts:
    """``verify_all`` with no replay tree remembered (what a fresh process pays); the trees are kept."""
    with replay_cache.fresh_trees():
        return verify_all(batches, verifier, threshold)


def env_game(spec):
    """The env's loaded pyspiel game (the one its replay tree belongs to)."""
    return load_game(spec.options["game"], spec.options.get("params") or {})


def verify_stream(batches: list[pa.RecordBatch], verifier, threshold: float, workers: int) -> VerifyCounts:
    """The verify stage's own loop (``verify_batches``) over a partition's batches, consumed to the end."""
    counts = VerifyCounts()
    for _ in verify_batches(batches, verifier, threshold, counts, workers=workers):
        pass
    return counts


def large_block(env: str, records: int, repeat: int) -> tuple[list, list]:
    """A partition big enough for the worker pool: workers=2 vs workers=1 vs the bare replay."""
    spec = env_spec(env)
    verifier = family_of(spec).verifier(spec)
    one = pa.Table.from_batches(generate_records(env, 2000))
    table = pa.concat_tables([one] * -(-records // one.num_rows)).slice(0, records)
    with tempfile.TemporaryDirectory(prefix="orbit-bench-verify-") as tmp:  # batches as the stage reads them
        path = lake.write_table(table, Path(tmp) / "part-0.parquet")
        batches = list(lake.iter_batches(path))
    verify_stream(batches[:1] * 9, verifier, spec.pass_threshold, 2)  # untimed: start this process's pool
    c1 = verify_stream(batches, verifier, spec.pass_threshold, 1)
    c2 = verify_stream(batches, verifier, spec.pass_threshold, 2)
    t1, t2, t_bare = C.interleaved_medians([
        lambda: verify_stream(batches, verifier, spec.pass_threshold, 1),
        lambda: verify_stream(batches, verifier, spec.pass_threshold, 2),
        lambda: bare_replay(batches)], repeat)
    same = c1 == c2
    C.metric(f"large.{env}.records", records)
    C.metric(f"large.{env}.w2_over_w1", t1 / t2)
    C.metric(f"large.{env}.w2_ratio_vs_bare", t_bare / t2)
    rows = [
        C.Row(f"{env} {records:,} records, verify_batches workers=2", records / t2, "replays/s", records / t1,
              t1 / t2, "same counts", same, note="baseline = workers=1, same batches"),
        C.Row(f"{env} {records:,} records, workers=2 vs bare replay", records / t2, "replays/s", records / t_bare,
              t_bare / t2, note="bare replay in one process: what the stage gives on all cores vs one core's replay"),
    ]
    notes = [f"large block: {len(batches)} batches read back from a Parquet partition (lake.write_table, "
             f"lake.iter_batches: 2,000 generated records repeated), pool started before timing; "
             f"counts {c2.passed} passed / {c2.rows}"]
    return rows, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--records", type=int, default=None, help="generated records per game (default 2000; quick 200)")
    ap.add_argument("--repeat", type=int, default=None, help="timed passes per figure, median (default 5; quick 1)")
    ap.add_argument("--games", nargs="+", default=list(GAMES), choices=GAMES)
    ap.add_argument("--large", type=int, default=None,
                    help="records of the partition block (verify_batches on the worker pool; default 131072; quick 0 = skip)")
    args = ap.parse_args(argv)
    n = args.records or (200 if args.quick else 2000)
    repeat = args.repeat or (1 if args.quick else 5)

    rows, notes = [], []
    for env in args.games:
        spec = env_spec(env)
        t_gen, batches = C.timed(generate_records, env, n)
        records = sum(b.num_rows for b in batches)
        verifier = family_of(spec).verifier(spec)
        counts = verify_all(batches, verifier, spec.pass_threshold)  # warm-up + correctness
        with replay_cache.admit_every_node():  # the remembered-tree figure: every node of these records
            verify_all(batches, verifier, spec.pass_threshold)
        actions = bare_replay(batches)
        t_ver, t_cold, t_bare = C.interleaved_medians(
            [lambda: verify_all(batches, verifier, spec.pass_threshold),
             lambda: verify_cold(batches, verifier, spec.pass_threshold), lambda: bare_replay(batches)], repeat)
        r_ver, r_cold, r_bare = records / t_ver, records / t_cold, records / t_bare
        rows.append(C.Row(f"{env} verify_batch, fresh process", r_cold, "replays/s", r_bare, r_cold / r_bare,
                          f">= {GOAL_RATIO}x bare", r_cold / r_bare >= GOAL_RATIO,
                          note="the replay tree starts empty and is built in the pass, as in a step process "
                               "verifying its partition"))
        rows.append(C.Row(f"{env} verify_batch, tree remembered", r_ver, "replays/s", r_bare, r_ver / r_bare,
                          note="the same records again, every node and prompt of theirs already in the tree: "
                               "the checks alone (a process that verified these records before)"))
        C.metric(f"{env}.replays_per_s", r_ver)
        C.metric(f"{env}.bare_replays_per_s", r_bare)
        C.metric(f"{env}.ratio_vs_bare", r_ver / r_bare)
        C.metric(f"{env}.cold_replays_per_s", r_cold)
        C.metric(f"{env}.cold_ratio_vs_bare", r_cold / r_bare)
        with replay_cache.fresh_trees():
            verify_all(batches, verifier, spec.pass_threshold)
            cold_nodes = replay_cache.game_tree(env_game(spec)).nodes
        C.metric(f"{env}.cold_tree_nodes", cold_nodes)
        C.metric(f"{env}.tree_nodes", replay_cache.game_tree(env_game(spec)).nodes)
        bad = {k: v for k, v in counts.reasons.items() if k != "score.below_threshold"}
        notes.append(
            f"{env}: {records} records ({actions / records:.1f} actions each) generated in {t_gen:.1f}s; "
            f"passed {counts.passed}/{counts.rows}"
            + (f"; UNEXPECTED failure reasons {bad}" if bad else "; no failure other than score.below_threshold")
        )
    large = args.large if args.large is not None else (0 if args.quick else 131_072)
    if large:
        more_rows, more_notes = large_block("tic_tac_toe", large, repeat)
        rows += more_rows
        notes += more_notes
    C.print_table(
        "verifier replays/s (GameReplayVerifier via verify_batch) vs bare replay",
        rows,
        notes=[
            "baseline column = bare replay (to_pylist + metadata JSON + apply history, no checks) in the same run",
            "ratio = verify_batch / bare replay throughput (<1: the checks' cost)",
            f"median of {repeat} interleaved pass(es) (verify, bare, verify, ...) over the same batches",
            *notes,
            C.environment_note(),
        ],
    )
    C.save_metrics("verify")
    return 0


if __name__ == "__main__":
    sys.exit(main())
