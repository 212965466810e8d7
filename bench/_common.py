"""Helpers shared by the Orbit benchmarks: timing, peak RSS, and the result table.

Every bench prints one plain-text table. A row is one measured figure; when the
row has a baseline measured in the same run, ``ratio`` is figure / baseline
(or baseline / figure for "lower is better" figures, see ``Row``), and
``status`` is PASS or MISS against the row's goal. The status is informational:
the benches always exit 0 when they ran to the end.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# Figures under stable dotted names (``<bench>.<figure>``), written as JSON when the bench runs with
# ORBIT_BENCH_JSON=<file> (``run_all.py --json FILE`` sets it and merges every bench's file).
METRICS: dict[str, float | int | str | None] = {}


def metric(name: str, value) -> None:
    """Record one figure for the JSON output (NaN and infinities become null)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        value = None
    METRICS[name] = value


def save_metrics(bench: str) -> None:
    """Write this bench's figures as ``{"<bench>.<name>": value}`` to $ORBIT_BENCH_JSON, if set."""
    path = os.environ.get("ORBIT_BENCH_JSON")
    if not path:
        return
    data = {f"{bench}.{k}": v for k, v in sorted(METRICS.items())}
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def now() -> float:
    return time.perf_counter()


def timed(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def median_time(fn: Callable, repeat: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeat`` calls of ``fn`` (and every sample)."""
    samples = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def interleaved_samples(fns: list[Callable], repeat: int, min_seconds: float = 0.0, rotate: bool = False,
                        max_rounds: int | None = None) -> list[list[float]]:
    """Wall times of each function over interleaved rounds (a, b, c, a, b, c, ...), so that slow phases
    of a noisy host hit every figure alike instead of biasing whichever ran during them.

    At least ``repeat`` rounds, and more while the rounds so far took less than ``min_seconds`` (at most
    ``max_rounds``, default 4 x repeat): a block of short calls then spans more than one of the host's
    slow or fast phases. With ``rotate`` each round starts one function later (a, b, c; b, c, a; ...),
    so no figure always runs right after the same one.
    """
    samples: list[list[float]] = [[] for _ in fns]
    max_rounds = max_rounds or 4 * max(1, repeat)
    started = time.perf_counter()
    rounds = 0
    while rounds < max(1, repeat) or (time.perf_counter() - started < min_seconds and rounds < max_rounds):
        order = list(range(len(fns)))
        if rotate:
            order = order[rounds % len(fns):] + order[:rounds % len(fns)]
        for i in order:
            t0 = time.perf_counter()
            fns[i]()
            samples[i].append(time.perf_counter() - t0)
        rounds += 1
    return samples


def interleaved_medians(fns: list[Callable], repeat: int, **options) -> list[float]:
    """Median wall time of each function over ``interleaved_samples`` rounds."""
    return [statistics.median(s) for s in interleaved_samples(fns, repeat, **options)]


def peak_rss_self_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux's ``ru_maxrss`` survives fork and exec (a child of a big parent starts at the parent's
    peak), so the kernel's VmHWM of this process image is read first.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(argv: list[str], timeout: float | None = None) -> tuple[dict, float]:
    """Run ``python argv...`` in a child; return (its last stdout line parsed as JSON, its peak RSS MiB).

    The child's peak RSS is read as the growth of ``RUSAGE_CHILDREN.ru_maxrss``,
    which is the maximum over every child waited for so far: it is exact for the
    first child and a lower bound afterwards, so children also report their own
    ``RUSAGE_SELF`` figure in their JSON (``peak_rss_mb``), which is preferred.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"child {argv} exited with {proc.returncode}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    data = json.loads(lines[-1])
    return data, (after / 1024.0 if after > before else float("nan"))


def scratch_dir(prefix: str, keep: str | None = None) -> tuple[Path, Callable[[], None]]:
    """(scratch directory, cleanup function): a temporary directory, or ``keep`` (absolute, never removed)."""
    if keep:
        path = Path(keep).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path, lambda: None
    base = os.environ.get("ORBIT_BENCH_TMP") or None
    tmp = tempfile.TemporaryDirectory(prefix=prefix, dir=base)
    return Path(tmp.name), tmp.cleanup


@dataclass
class Row:
    """One line of a result table.

    ``value`` is the measured figure in ``unit``; ``baseline`` the figure it is
    compared with (same unit); ``ratio`` is computed by the caller (its meaning is
    stated in ``ratio_note``). ``goal`` is a text such as ">= 30x" and ``ok`` is
    True/False/None (None: no goal on this row).
    """

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    goal: str = ""
    ok: bool | None = None
    note: str = ""


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v != v:
        return "n/a"
    if abs(v) >= 1000:
        text = f"{v:,.0f}"
    elif abs(v) >= 100:
        text = f"{v:.1f}"
    elif abs(v) >= 1:
        text = f"{v:.3g}" if abs(v) < 10 else f"{v:.2f}"
    else:
        text = f"{v:.3g}"
    return f"{text} {unit}".strip()


def print_table(title: str, rows: list[Row], notes: list[str] | None = None) -> None:
    header = ["measure", "figure", "baseline", "ratio", "goal", "status"]
    body = []
    for r in rows:
        status = "" if r.ok is None else ("PASS" if r.ok else "MISS")
        ratio = "-" if r.ratio is None else (f"{r.ratio:.2f}x" if r.ratio == r.ratio else "n/a")
        body.append([r.name, _fmt(r.value, r.unit), _fmt(r.baseline, r.unit), ratio, r.goal, status])
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(header)]
    sep = "  "
    print()
    print(f"== {title} ==")
    print(sep.join(h.ljust(w) for h, w in zip(header, widths)))
    print(sep.join("-" * w for w in widths))
    for line in body:
        print(sep.join(c.ljust(w) for c, w in zip(line, widths)))
    row_notes = [f"[{r.name}] {r.note}" for r in rows if r.note]
    for note in row_notes + list(notes or []):
        print(f"  * {note}")
    sys.stdout.flush()


def environment_note() -> str:
    dont_write = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    return (
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)"
        + (", PYTHONDONTWRITEBYTECODE=1 (imports compile from source: process start-up is slower)" if dont_write else "")
    )


def _burn(n: int) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - t0


def parallel_capacity(workers: int = 2, n: int = 5_000_000) -> float:
    """How many CPUs this process really gets right now: time of ``workers`` pure-Python burns run
    serially / run in ``workers`` forked processes (2.0 = two free cores; ~1.0 = the host gives one)."""
    import multiprocessing

    _burn(n // 10)
    t0 = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - t0
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_burn, [n // 10] * workers)
        t0 = time.perf_counter()
        pool.map(_burn, [n] * workers)
        parallel = time.perf_counter() - t0
    return serial / parallel
