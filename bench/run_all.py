"""Run every ``bench/bench_*.py`` in its own subprocess and print their tables.

    .venv/bin/python bench/run_all.py            # default sizes (`make bench`, ~5-6 min on 2 cores)
    .venv/bin/python bench/run_all.py --quick    # smoke test, small sizes (~1 min)
    .venv/bin/python bench/run_all.py --only filter selfplay
    .venv/bin/python bench/run_all.py --quick --json bench.json   # also every figure as JSON
    .venv/bin/python bench/run_all.py --only ray   # a round: local pool vs Ray on one node (scale group)
    .venv/bin/python bench/run_all.py --only s3    # the lake on s3:// (moto) vs a folder (scale group)

Benches run one after the other (never in parallel: they measure throughput
and memory on a small machine). ``--quick`` is passed to every bench whose
source declares a ``--quick`` flag; others run with their own defaults. Goal
PASS/MISS lines are informational; the exit code is non-zero only when a bench
crashed or timed out.

``--json FILE`` also writes every figure, baseline and ratio the benches record,
under stable dotted names (``filter.rows_1m.ratio_vs_seed_step``,
``verify.tic_tac_toe.ratio_vs_bare``, ``selfplay.w2_over_w1``, ...), plus each
bench's status and wall time, so runs can be compared turn over turn.
"""

import argparse
import json
import os
import tempfile
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

# known benches first, in this order; any other bench_*.py found afterwards, by name
ORDER = ["filter", "selfplay", "verify", "yields_query", "partition", "dedup", "round_memory"]


def discover() -> list[Path]:
    found = {p.stem[len("bench_"):]: p for p in BENCH_DIR.glob("bench_*.py")}
    names = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    return [found[n] for n in names]


def supports_quick(script: Path) -> bool:
    try:
        return '"--quick"' in script.read_text(encoding="utf-8") or "'--quick'" in script.read_text(encoding="utf-8")
    except OSError:
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benches (e.g. filter selfplay)")
    ap.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="skip these benches")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per bench before it is stopped (default 900; quick 300)")
    ap.add_argument("--list", action="store_true", help="list the benches and exit")
    ap.add_argument("--json", metavar="FILE", help="write every recorded figure to FILE as one JSON object")
    args = ap.parse_args(argv)
    timeout = args.timeout or (300 if args.quick else 900)

    scripts = discover()
    name_of = {s: s.stem[len("bench_"):] for s in scripts}
    if args.only:
        unknown = set(args.only) - set(name_of.values())
        if unknown:
            ap.error(f"unknown bench(es) {sorted(unknown)}; found {sorted(name_of.values())}")
        scripts = [s for s in scripts if name_of[s] in args.only]
    scripts = [s for s in scripts if name_of[s] not in args.skip]
    if args.list:
        for s in scripts:
            print(f"{name_of[s]:16s} {s.relative_to(BENCH_DIR.parent)}{'' if supports_quick(s) else '  (no --quick)'}")
        return 0

    import _common as C

    print(f"Orbit benchmarks ({'quick' if args.quick else 'default'} sizes): {len(scripts)} bench(es); "
          f"{C.environment_note()}", flush=True)
    probe_start = C.parallel_capacity(2)
    print(f"CPU probe at start: 2 processes run {probe_start:.2f}x faster than 1 (2.0 = two free cores)", flush=True)
    figures: dict = {"run_all.quick": bool(args.quick), "run_all.cpu_probe_start": probe_start}
    json_dir = tempfile.TemporaryDirectory(prefix="orbit-bench-json-") if args.json else None
    env = dict(os.environ)
    if args.quick:
        env["ORBIT_BENCH_QUICK"] = "1"
    results = []
    t_all = time.perf_counter()
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick and supports_quick(script) else [])
        print(f"\n##### {name_of[script]}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}",
              flush=True)
        t0 = time.perf_counter()
        bench_env = dict(env)
        if json_dir is not None:
            bench_env["ORBIT_BENCH_JSON"] = str(Path(json_dir.name) / f"{name_of[script]}.json")
        proc = subprocess.Popen(cmd, env=bench_env, cwd=str(BENCH_DIR.parent), start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else f"exit {rc}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the bench's own process group only (it may have a worker pool)
            proc.wait()
            status = f"TIMEOUT after {timeout:.0f}s"
        results.append((name_of[script], status, time.perf_counter() - t0))
        figures[f"{name_of[script]}.status"] = status
        figures[f"{name_of[script]}.wall_s"] = round(results[-1][2], 3)
        if json_dir is not None:
            try:
                figures.update(json.loads((Path(json_dir.name) / f"{name_of[script]}.json").read_text()))
            except (OSError, ValueError):
                pass  # the bench records no figures (or did not finish)

    print(f"\n##### summary ({time.perf_counter() - t_all:.0f}s total)")
    for name, status, seconds in results:
        print(f"  {name:16s} {status:24s} {seconds:7.1f}s")
    probe_end = C.parallel_capacity(2)
    print(f"CPU probe at end: {probe_end:.2f}x", flush=True)
    figures["run_all.cpu_probe_end"] = probe_end
    if args.json:
        out = Path(args.json)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(dict(sorted(figures.items())), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out)
        json_dir.cleanup()
        print(f"figures written to {out} ({len(figures)} values)", flush=True)
    return 0 if all(status == "ok" for _, status, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
