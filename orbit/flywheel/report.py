"""The flywheel report: yield over rounds per env, per-round g, the fitted g, a test of it, and a chart.

The flywheel's p is the policy's (source 'policy') where an env has policy
samples, else the env's overall yield. Read with DuckDB over the yield
partitions of the lake.

The report says only what the data shows: each round's g (odds ratio to the
previous round, with a 95% interval) stands beside the one constant g fitted
over all rounds, and the constant-g model is tested against a model whose odds
growth stops at a ceiling (likelihood ratio) and against one free p per round
(deviance). When the data reject it the report says so, estimates the ceiling,
and gives no rounds-to-target. The headline is only given for envs whose first
p is low enough (``headline_max_p0``) for growth to mean a flywheel rather than
luck (poker starts near 0.5).
"""

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from orbit.io import lake
from orbit.flywheel.growth import fit_growth, project_yield, rounds_to_reach
from orbit.io.keys import round_index
from orbit.stages.yields import Z95

FIT_SCHEMA = pa.schema(
    [
        ("env", pa.string()), ("source", pa.string()), ("rounds", pa.int64()),
        ("p_first", pa.float64()), ("p_last", pa.float64()),
        ("g", pa.float64()), ("g_low", pa.float64()), ("g_high", pa.float64()), ("p0_fit", pa.float64()),
        ("lrt_ceiling", pa.float64()), ("p_ceiling_test", pa.float64()),
        ("deviance", pa.float64()), ("p_fit_test", pa.float64()), ("constant_g_rejected", pa.bool_()),
        ("ceiling", pa.float64()), ("ceiling_low", pa.float64()), ("ceiling_high", pa.float64()),
        ("flywheel_env", pa.bool_()),
        ("target", pa.float64()), ("rounds_to_target", pa.float64()),
        ("rounds_to_target_low", pa.float64()), ("rounds_to_target_high", pa.float64()),
        ("headline", pa.string()),
    ]
)

ROUND_COLUMNS = ["env", "source", "round", "attempts", "passes", "pass_rate", "pass_rate_low", "pass_rate_high",
                 "g_round", "g_round_low", "g_round_high", "attempts_per_clean", "passes_per_clean"]

PER_ROUND_SQL = """
WITH y AS (SELECT * FROM read_parquet({glob}, hive_partitioning = false)),
chosen AS (
  SELECT env, CASE WHEN bool_or(source = 'policy') THEN 'policy' ELSE 'all' END AS source FROM y GROUP BY env
)
SELECT y.env, y.source, y.round, y.attempts, y.passes, y.pass_rate, y.pass_rate_low, y.pass_rate_high,
       y.attempts_per_clean, y.passes_per_clean
FROM y JOIN chosen USING (env, source)
ORDER BY y.env, y.round
"""

ALPHA = 0.05
HEADLINE_MAX_P0 = 0.15


# ---------------------------------------------------------------------------------------------------------------
# statistics (numpy and math only)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square with integer df >= 1 (closed forms; no scipy)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if x <= 0:
        return 1.0
    h = x / 2.0
    if df % 2 == 0:  # exp(-h) * sum_{i < df/2} h^i / i!
        term = total = 1.0
        for i in range(1, df // 2):
            term *= h / i
            total += term
        return min(1.0, math.exp(-h) * total)
    # odd df: erfc(sqrt(h)) + exp(-h) * sum_{i=1}^{(df-1)/2} h^(i-1/2) / Gamma(i + 1/2)
    total = math.erfc(math.sqrt(h))
    term = math.sqrt(h) / math.gamma(1.5)
    for i in range(1, (df - 1) // 2 + 1):
        if i > 1:
            term *= h / (i - 0.5)
        total += math.exp(-h) * term
    return min(1.0, total)


CHI2_1_95 = 3.841458820694124  # chi-square(1) 95% quantile: profile-likelihood intervals


def round_growth(k1: int, n1: int, k0: int, n0: int) -> tuple[float | None, float | None, float | None]:
    """g of one round: its odds over the previous round's, with a 95% (Woolf, log-odds-ratio) interval.

    None without attempts in either round, or where the odds ratio is undefined (0/0, x/0: a round at
    p = 0 or p = 1). When a count is 0 the interval uses the Haldane-Anscombe half-count correction
    (and is then wide, as it should be); the point estimate stays the raw ratio when it is defined.
    """
    if not n1 or not n0:
        return None, None, None
    f1, f0 = n1 - k1, n0 - k0
    if k1 + k0 == 0 or f1 + f0 == 0:
        return None, None, None  # both rounds at p = 0 (or both at p = 1): nothing to compare
    g = (k1 * f0) / (f1 * k0) if f1 and k0 else None
    a, b, c, d = (k1, f1, k0, f0) if min(k1, f1, k0, f0) > 0 else (k1 + .5, f1 + .5, k0 + .5, f0 + .5)
    log_g, se = math.log((a * d) / (b * c)), math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return g, math.exp(log_g - Z95 * se), math.exp(log_g + Z95 * se)


def _loglik(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-300, 1 - 1e-16)
    return float(np.sum(np.where(k > 0, k * np.log(p), 0.0) + np.where(n - k > 0, (n - k) * np.log1p(-p), 0.0)))


def _saturated_loglik(k: np.ndarray, n: np.ndarray) -> float:
    return _loglik(k, n, k / n)


def _fit_ceiling_model(t: np.ndarray, k: np.ndarray, n: np.ndarray, c: float,
                       start: np.ndarray, iterations: int = 100) -> tuple[np.ndarray, float]:
    """ML fit of p_t = c * expit(a + b t) at a fixed ceiling c (Fisher scoring with step halving)."""
    X = np.column_stack([np.ones_like(t), t])
    beta = start.copy()

    def probs(b):
        return c / (1.0 + np.exp(-np.clip(X @ b, -60, 60)))

    ll = _loglik(k, n, probs(beta))
    for _ in range(iterations):
        mu = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -60, 60)))
        p = np.clip(c * mu, 1e-12, 1 - 1e-12)
        dp = c * mu * (1 - mu)
        w = n * dp * dp / (p * (1 - p))
        score = X.T @ ((k - n * p) / (p * (1 - p)) * dp)
        info = (X.T * w) @ X + 1e-12 * np.eye(2)
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError:
            break
        for _half in range(30):
            cand = beta + step
            ll_c = _loglik(k, n, probs(cand))
            if ll_c >= ll - 1e-12:
                break
            step = step / 2
        else:
            break
        done = abs(ll_c - ll) < 1e-11
        beta, ll = cand, ll_c
        if done:
            break
    return beta, ll


@dataclass(frozen=True)
class ConstantGTest:
    """Is one g for every round consistent with the data?

    ``lrt_ceiling``: likelihood ratio of p_t = c * expit(a + b t) (odds growth that stops at a
    ceiling c) against the constant-g model (c = 1). c = 1 lies on the boundary, so the p-value is
    the chi-bar-square one: half the chi-square(1) tail. ``deviance``: the constant-g model against
    one free p per round (chi-square with rounds - 2 df): any departure, saturation or not.
    The model is rejected when either p-value is below alpha / 2 (Bonferroni over the two tests).
    """

    lrt_ceiling: float | None
    p_ceiling: float | None
    deviance: float | None
    p_fit: float | None
    rejected: bool
    ceiling: float | None
    ceiling_low: float | None
    ceiling_high: float | None


def constant_g_test(rounds: Sequence[int], passes: Sequence[int], attempts: Sequence[int],
                    alpha: float = ALPHA, grid: int = 400) -> ConstantGTest:
    none = ConstantGTest(None, None, None, None, False, None, None, None)
    t = np.asarray(rounds, dtype=float)
    k = np.asarray(passes, dtype=float)
    n = np.asarray(attempts, dtype=float)
    keep = n > 0
    t, k, n = t[keep], k[keep], n[keep]
    fit = fit_growth(t.tolist(), k.tolist(), n.tolist())
    if fit.g is None or len(t) < 3:
        return none  # nothing fitted, or two rounds: any two points lie on a constant-g curve
    slope, icpt = math.log(fit.g), math.log(fit.p0 / (1 - fit.p0))
    ll_const = _loglik(k, n, 1 / (1 + np.exp(-(icpt + slope * t))))
    deviance = max(0.0, 2 * (_saturated_loglik(k, n) - ll_const))
    p_fit = chi2_sf(deviance, len(t) - 2)
    # profile the ceiling c: a coarse grid from half the highest observed p up to 1 (warm-started from the
    # constant-g fit at c = 1), then golden-section refinement of the maximum and bisection of the 95% bounds
    p_hat_max = float(np.max(k / n))
    lo = max(0.5 * p_hat_max, 1e-6)  # the ceiling may sit below the highest observed p (sampling noise)
    cs = np.unique(np.concatenate([lo + (1 - lo) * (np.linspace(0, 1, grid) ** 2), [1.0]]))
    starts, lls, beta = {}, [], np.array([icpt, slope])
    for c in cs[::-1]:
        beta, ll = _fit_ceiling_model(t, k, n, float(c), beta)
        starts[float(c)] = beta
        lls.append(ll)
    lls = np.asarray(lls[::-1])
    best = int(np.argmax(lls))

    def profile(c: float) -> float:
        near = min(starts, key=lambda x: abs(x - c))
        return _fit_ceiling_model(t, k, n, c, starts[near])[1]

    c_best, ll_best = float(cs[best]), float(lls[best])
    if 0 < best < len(cs) - 1:
        a, b = float(cs[best - 1]), float(cs[best + 1])
        for _ in range(40):
            m1, m2 = a + (b - a) * 0.381966, a + (b - a) * 0.618034
            if profile(m1) >= profile(m2):
                b = m2
            else:
                a = m1
        c_mid = (a + b) / 2
        ll_mid = profile(c_mid)
        if ll_mid > ll_best:
            c_best, ll_best = c_mid, ll_mid
    ll_best = max(ll_best, ll_const)
    lrt = max(0.0, 2 * (ll_best - ll_const))
    p_ceiling = 0.5 * chi2_sf(lrt, 1) if lrt > 0 else 1.0
    rejected = min(p_ceiling, p_fit) < alpha / 2

    def bound(inside_c: float, outside_c: float) -> float:
        for _ in range(40):
            mid = (inside_c + outside_c) / 2
            if 2 * (ll_best - profile(mid)) <= CHI2_1_95:
                inside_c = mid
            else:
                outside_c = mid
        return inside_c

    out = 2 * (ll_best - lls) > CHI2_1_95
    below, above = np.nonzero(out & (cs < c_best))[0], np.nonzero(out & (cs > c_best))[0]
    c_low = bound(c_best, float(cs[below.max()])) if len(below) else None  # None: not bounded within the grid
    c_high = bound(c_best, float(cs[above.min()])) if len(above) else 1.0
    ceiling = c_best if lrt > 0 else 1.0
    return ConstantGTest(lrt, p_ceiling, deviance, p_fit, bool(rejected), ceiling, c_low, c_high)


# ---------------------------------------------------------------------------------------------------------------


def per_round(lake_root: Path | str) -> pa.Table:
    """Per env and round: the flywheel's p with its interval and that round's g with its interval."""
    files = lake.asset_glob(lake_root, "yield_metrics", 2)
    if not lake.glob_files(files):
        return pa.table({c: pa.array([], pa.string()) for c in ROUND_COLUMNS})
    con = lake.duckdb_lake(duckdb.connect(), files)
    try:
        table = con.sql(PER_ROUND_SQL.format(glob=lake.sql_literal(files))).to_arrow_table()
    finally:
        con.close()
    return with_round_growth(table)


def with_round_growth(table: pa.Table) -> pa.Table:
    rows, previous = [], {}
    for row in table.to_pylist():
        prev = previous.get(row["env"])
        g = (None, None, None)
        if prev is not None:
            g = round_growth(row["passes"] or 0, row["attempts"] or 0, prev["passes"] or 0, prev["attempts"] or 0)
        row["g_round"], row["g_round_low"], row["g_round_high"] = g
        rows.append({c: row.get(c) for c in ROUND_COLUMNS})
        previous[row["env"]] = row
    types = {f.name: f.type for f in table.schema}
    schema = pa.schema([(c, types.get(c, pa.float64())) for c in ROUND_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "?" if x is None else f"{x:.{digits}f}"


def fit_env(env: str, source: str, rs: list[dict], target: float, headline_max_p0: float = HEADLINE_MAX_P0,
            alpha: float = ALPHA) -> dict:
    """One env's fit, test and headline from its per-round rows (in round order)."""
    t = [round_index(r["round"]) for r in rs]
    k = [r["passes"] or 0 for r in rs]
    n = [r["attempts"] or 0 for r in rs]
    fit = fit_growth(t, k, n)
    test = constant_g_test(t, k, n, alpha=alpha)
    measured = [r for r in rs if r["attempts"]]
    p_first = measured[0]["pass_rate"] if measured else None
    p_last = measured[-1]["pass_rate"] if measured else None
    flywheel_env = p_first is not None and p_first <= headline_max_p0
    to_target = to_low = to_high = None
    growing = fit.g_low is not None and fit.g_low > 1.0  # growth the data support; else no projection
    if fit.g is not None and not test.rejected and flywheel_env and growing:  # nor from a lucky start
        to_target = fit.rounds_to(target)
        slow, fast = (rounds_to_reach(fit.p0, g, target) if g is not None else None
                      for g in (fit.g_low, fit.g_high))
        to_low, to_high = fast, slow  # the fastest growth reaches the target soonest; None: not within the interval
    if p_first is None:
        headline = "no attempts"
    elif not flywheel_env:
        headline = (f"p0 = {p_first:.3f} > {headline_max_p0:g}: the start is not low enough for g to measure "
                    "a flywheel; see the per-round p")
    elif fit.g is None:
        headline = f"no growth fit (p stays at {p_first:.3f}..{p_last:.3f}, or fewer than two rounds)"
    else:
        headline = f"constant-g fit g = {fit.g:.2f} [{_fmt(fit.g_low)}, {_fmt(fit.g_high)}] per round"
        if test.rejected:
            headline += (f"; REJECTED by the data (ceiling LRT p = {test.p_ceiling:.2g}, fit p = {test.p_fit:.2g}): "
                         f"the odds do not grow by one g; ceiling ~ {_fmt(test.ceiling, 3)} "
                         f"[{_fmt(test.ceiling_low, 3)}, {_fmt(test.ceiling_high, 3)}]; no rounds-to-target")
        elif test.p_ceiling is None:
            headline += "; too few rounds to test a constant g"
        elif to_target is not None:
            headline += (f"; consistent with the data (ceiling LRT p = {test.p_ceiling:.2g}); p = {target:g} at "
                         f"round {to_target:.1f} [{_fmt(to_low, 1)}, {_fmt(to_high, 1) if to_high else 'never'}]")
        elif not growing:
            headline += (f"; consistent with the data (ceiling LRT p = {test.p_ceiling:.2g}), but the interval "
                         f"includes g = 1: no evidence of growth, no rounds-to-target")
        else:
            headline += f"; consistent with the data (ceiling LRT p = {test.p_ceiling:.2g}); target {target:g} reached"
    return {
        "env": env, "source": source, "rounds": len(measured), "p_first": p_first, "p_last": p_last,
        "g": fit.g, "g_low": fit.g_low, "g_high": fit.g_high, "p0_fit": fit.p0,
        "lrt_ceiling": test.lrt_ceiling, "p_ceiling_test": test.p_ceiling, "deviance": test.deviance,
        "p_fit_test": test.p_fit, "constant_g_rejected": test.rejected if test.p_fit is not None else None,
        "ceiling": test.ceiling if test.rejected else None,
        "ceiling_low": test.ceiling_low if test.rejected else None,
        "ceiling_high": test.ceiling_high if test.rejected else None,
        "flywheel_env": flywheel_env, "target": target, "rounds_to_target": to_target,
        "rounds_to_target_low": to_low, "rounds_to_target_high": to_high, "headline": headline,
    }


def fits(rounds: pa.Table, target: float, headline_max_p0: float = HEADLINE_MAX_P0, alpha: float = ALPHA) -> pa.Table:
    if rounds.num_rows == 0:
        return FIT_SCHEMA.empty_table()
    by_env: dict[str, list[dict]] = {}
    for row in rounds.to_pylist():
        by_env.setdefault(row["env"], []).append(row)
    rows = [fit_env(env, rs[0]["source"], rs, target, headline_max_p0, alpha) for env, rs in sorted(by_env.items())]
    return pa.Table.from_pylist(rows, schema=FIT_SCHEMA)


def chart_png(rounds: pa.Table, fit_table: pa.Table) -> bytes:
    """p_t with 95% intervals and the fitted log-odds curve per env; per-round g with intervals beside the
    constant-g fit; cost per clean trajectory below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    fitted = {r["env"]: r for r in fit_table.to_pylist()}
    by_env: dict[str, list[dict]] = {}
    for row in rounds.to_pylist():
        by_env.setdefault(row["env"], []).append(row)
    any_g = False
    for env, rs in sorted(by_env.items()):
        rs = [r for r in rs if r["attempts"]]
        if not rs:
            continue
        t = [round_index(r["round"]) for r in rs]
        p = [r["pass_rate"] or 0.0 for r in rs]
        # error bars never negative: p = 0 or 1 and rounds without attempts (no interval) draw none
        err = [[max(0.0, pi - (r["pass_rate_low"] if r["pass_rate_low"] is not None else pi)) for pi, r in zip(p, rs)],
               [max(0.0, (r["pass_rate_high"] if r["pass_rate_high"] is not None else pi) - pi)
                for pi, r in zip(p, rs)]]
        line = top.errorbar(t, p, yerr=err, marker="o", capsize=3, label=f"{env} ({rs[0]['source']})")
        color = line[0].get_color()
        f = fitted.get(env)
        if f and f["g"] is not None and max(t) > min(t):
            ts = [min(t) + i * (max(t) - min(t)) / 50 for i in range(51)]
            verdict = "rejected" if f["constant_g_rejected"] else "not rejected"
            top.plot(ts, [project_yield(f["p0_fit"], f["g"], x) for x in ts], "--", color=color,
                     label=f"{env} constant g={f['g']:.2f} ({verdict})")
            if f["ceiling"] is not None:
                top.axhline(f["ceiling"], color=color, linestyle=":", linewidth=1,
                            label=f"{env} ceiling ~ {f['ceiling']:.2f}")
        gs = [(round_index(r["round"]), r["g_round"], r["g_round_low"], r["g_round_high"]) for r in rs
              if r.get("g_round_low") is not None]
        if gs:
            any_g = True
            x = [a for a, *_ in gs]
            mid = [g if g is not None else math.sqrt(lo * hi) for _, g, lo, hi in gs]
            middle.errorbar(x, mid, yerr=[[max(0.0, m - lo) for m, (_, _, lo, _) in zip(mid, gs)],
                                          [max(0.0, hi - m) for m, (_, _, _, hi) in zip(mid, gs)]],
                            marker="o", capsize=3, color=color, label=f"{env} per-round g")
            if f and f["g"] is not None:
                middle.axhline(f["g"], color=color, linestyle="--", linewidth=1, label=f"{env} constant g")
        bottom.plot(t, [r["attempts_per_clean"] if r["attempts_per_clean"] is not None else math.nan for r in rs],
                    marker="o", color=color, label=env)
    top.set_ylabel("pass rate p (95% Wilson)")
    top.set_ylim(0, 1.02)
    top.set_title("Yield over rounds")
    middle.set_ylabel("g of the round (odds ratio, 95%)")
    if any_g:
        middle.set_yscale("log")
        middle.axhline(1.0, color="grey", linewidth=0.8)
    bottom.set_ylabel("attempts per clean trajectory")
    if any(r["attempts_per_clean"] for r in rounds.to_pylist()):  # log scale needs a positive value
        bottom.set_yscale("log")
    bottom.set_xlabel("round")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, middle, bottom):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def heldout_fits(rows: Sequence[dict]) -> list[dict]:
    """Per env, the constant g fitted on the held-out p per round (``orbit.flywheel.heldout.table`` rows: the same
    items every round, scored by the clean verifier), with its interval and the ceiling test: the flywheel's
    growth measured where no item was trained on and no verifier noise reaches."""
    out = []
    for env in sorted({r["env"] for r in rows}):
        mine = sorted((r for r in rows if r["env"] == env), key=lambda r: r["round"])
        t = [round_index(r["round"]) for r in mine]
        k = [int(r["passes"]) for r in mine]
        n = [int(r["n"]) for r in mine]
        fit = fit_growth(t, k, n)
        test = constant_g_test(t, k, n)
        bounded = fit.g_low is not None or fit.g_high is not None  # a start at p = 0 has no finite estimate
        out.append({"env": env, "rounds": len(mine), "p_first": mine[0]["p"], "p_last": mine[-1]["p"],
                    "g": fit.g if bounded else None, "g_low": fit.g_low, "g_high": fit.g_high,
                    "constant_g_rejected": test.rejected if test.p_fit is not None else None,
                    "p_ceiling_test": test.p_ceiling})
    return out
