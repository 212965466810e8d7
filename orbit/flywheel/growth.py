"""The flywheel's arithmetic: odds that multiply by g each round, fitted from measured yields.

p_t / (1 - p_t) = g^t * p_0 / (1 - p_0). ``fit_growth`` estimates g by a
binomial log-odds regression (logit p_t = a + t log g, fitted by iteratively
reweighted least squares) with a 95% interval, from the passes and attempts of
each round.
"""

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from orbit.envs.base import Verdict, Verifier
from orbit.io.schema import stable_hash
from orbit.stages.yields import Z95


def project_yield(p0: float, g: float, rounds: int) -> float:
    """p after ``rounds`` rounds of odds growth by g from p0."""
    odds = p0 / (1.0 - p0) * g**rounds
    return odds / (1.0 + odds)


def rounds_to_reach(p0: float, g: float, target: float) -> float | None:
    """Rounds needed for the yield to reach ``target`` (None when g <= 1 and p0 < target)."""
    if p0 >= target:
        return 0.0
    if g <= 1.0 or p0 <= 0.0:
        return None
    return math.log((target / (1 - target)) / (p0 / (1 - p0))) / math.log(g)


@dataclass(frozen=True)
class GrowthFit:
    g: float | None
    g_low: float | None
    g_high: float | None
    p0: float | None  # fitted yield at t = 0
    rounds: int

    def rounds_to(self, target: float) -> float | None:
        if self.g is None or self.p0 is None:
            return None
        return rounds_to_reach(self.p0, self.g, target)


def fit_growth(rounds: Sequence[int], passes: Sequence[int], attempts: Sequence[int], iterations: int = 50) -> GrowthFit:
    """Binomial regression of logit(p) on the round index; g = exp(slope)."""
    t = np.asarray(rounds, dtype=float)
    k = np.asarray(passes, dtype=float)
    n = np.asarray(attempts, dtype=float)
    keep = n > 0
    t, k, n = t[keep], k[keep], n[keep]
    if len(t) < 2 or len(set(t.tolist())) < 2 or k.sum() == 0 or k.sum() == n.sum():
        # fewer than two rounds, or every attempt failed / passed: the odds have no finite slope
        return GrowthFit(None, None, None, None, int(len(t)))
    X = np.column_stack([np.ones_like(t), t])
    # start from empirical logits with a half-count correction
    p_emp = (k + 0.5) / (n + 1.0)
    beta = np.linalg.lstsq(X, np.log(p_emp / (1 - p_emp)), rcond=None)[0]
    cov = None
    for _ in range(iterations):
        eta = X @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = np.clip(n * mu * (1 - mu), 1e-9, None)
        z = eta + (k - n * mu) / w
        xtw = X.T * w
        cov = np.linalg.inv(xtw @ X)
        new = cov @ (xtw @ z)
        if np.max(np.abs(new - beta)) < 1e-10:
            beta = new
            break
        beta = new
    if cov is None or not np.all(np.isfinite(beta)) or abs(beta[1]) > 50:
        return GrowthFit(None, None, None, None, int(len(t)))
    se = math.sqrt(max(cov[1, 1], 0.0))
    slope = float(beta[1])
    return GrowthFit(
        g=math.exp(slope), g_low=_exp_or_none(slope - Z95 * se), g_high=_exp_or_none(slope + Z95 * se),
        p0=float(1.0 / (1.0 + math.exp(-beta[0]))), rounds=int(len(t)),
    )


def _exp_or_none(x: float) -> float | None:
    """exp(x), or None where the interval is unbounded (a near-separated fit)."""
    return math.exp(x) if math.isfinite(x) and abs(x) < 50 else None


class NoisyVerifier:
    """Wraps any verifier and flips its pass/fail with probability epsilon.

    The flip is a pure function of (seed, record_id), so a rerun flips the same
    records. A flipped pass becomes a failure with reason ``noise.flipped``; a
    flipped failure becomes a pass at the threshold score, reasons cleared --
    which is exactly the noise a careless rubric lets through.
    """

    def __init__(self, inner: Verifier, epsilon: float, threshold: float, seed: int = 0):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.inner, self.epsilon, self.threshold, self.seed = inner, epsilon, threshold, seed
        self.name = f"noisy({inner.name})"
        self.version = f"{inner.version}+eps{epsilon:g}"

    def flips(self, record: Mapping[str, Any]) -> bool:
        if self.epsilon <= 0.0:
            return False
        draw = int(stable_hash("noise", self.seed, record.get("record_id"), length=13), 16) / 16**13
        return draw < self.epsilon

    def verify(self, record: Mapping[str, Any]) -> Verdict:
        verdict = self.inner.verify(record)
        if not self.flips(record):
            return verdict
        passed = not verdict.reasons and verdict.score >= self.threshold
        if passed:
            return Verdict(0.0, ("noise.flipped",))
        return Verdict(max(self.threshold, 0.0), ())

