"""Uncertainty and membership-inference statistics: 95 % intervals, AUROC, TPR at a fixed FPR.

Intervals: Wilson for a rate (exact match: a binomial proportion that is often near 0, where the normal
interval collapses), percentile bootstrap for a mean or a difference of means (scipy.stats.bootstrap), and
Newcombe's score interval for an AUROC (the percentile bootstrap under-covers it at the probe set's sizes and
collapses to [1, 1] on separable sets: tests/chrono/test_stats.py measures both).
Membership scores follow MIMIR's convention: higher = more likely a member.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

LEVEL = 0.95
N_RESAMPLES = 1000


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial rate; (nan, nan) with no trials."""
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_interval(statistic, *samples: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of statistic(*samples) (each sample resampled independently);
    (nan, nan) when a sample has fewer than 2 values, or every resample gives the same value."""
    samples = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    if any(len(s) < 2 for s in samples):
        return math.nan, math.nan
    if all(np.all(s == s[0]) for s in samples):
        value = float(statistic(*samples, axis=-1))
        return value, value
    ci = stats.bootstrap(samples, statistic, n_resamples=N_RESAMPLES, confidence_level=LEVEL, method="percentile",
                         vectorized=True, rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def stratified_difference(a: np.ndarray, a_strata: np.ndarray, b: np.ndarray, b_strata: np.ndarray,
                          seed: int = 0) -> tuple[float, float, float]:
    """Σ_s n_a,s · (mean a_s − mean b_s) / Σ_s n_a,s over the strata both samples have: the difference of means with
    b reweighted to a's stratum mix (so a different mix of sources cannot pose as a difference), with a 95 %
    percentile-bootstrap interval (each stratum of each sample resampled on its own). nan when no stratum is shared."""
    strata = [s for s in np.unique(a_strata) if (b_strata == s).any()]
    if not strata:
        return math.nan, math.nan, math.nan
    cells = [(a[a_strata == s], b[b_strata == s]) for s in strata]
    weights = np.array([len(x) for x, _ in cells], dtype=np.float64)
    value = float(sum(w * (x.mean() - y.mean()) for w, (x, y) in zip(weights, cells)) / weights.sum())
    if all(len(x) < 2 and len(y) < 2 for x, y in cells):
        return value, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = sum(w * (rng.choice(x, (N_RESAMPLES, len(x))).mean(1) - rng.choice(y, (N_RESAMPLES, len(y))).mean(1))
                for w, (x, y) in zip(weights, cells)) / weights.sum()
    low, high = np.percentile(draws, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return value, float(low), float(high)


def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def auroc(members: np.ndarray, non_members: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(score of a member > score of a non-member), ties counted half (the Mann–Whitney U / (n·m)). 1 = the
    score separates them perfectly, 0.5 = chance. Vectorised over leading axes (for the bootstrap)."""
    a = np.moveaxis(np.asarray(members, dtype=np.float64), axis, -1)[..., :, None]
    b = np.moveaxis(np.asarray(non_members, dtype=np.float64), axis, -1)[..., None, :]
    return (a > b).mean((-1, -2)) + 0.5 * (a == b).mean((-1, -2))


def auroc_interval(members: np.ndarray, non_members: np.ndarray) -> tuple[float, float]:
    """95 % interval of the AUROC: Newcombe's score interval (Newcombe 2006, "Confidence intervals for an effect
    size measure based on the Mann-Whitney statistic. Part 2", method 5): the θ with (θ̂ − θ)² ≤ z²·V(θ), V the
    Hanley–McNeil variance at θ with N = (m + n)/2. Like Wilson's for a rate it stays inside [0, 1] and does not
    collapse at θ̂ = 0 or 1. (nan, nan) when a sample is empty."""
    m, n = len(members), len(non_members)
    if m == 0 or n == 0:
        return math.nan, math.nan
    theta = float(auroc(members, non_members))
    z2 = stats.norm.ppf((1 + LEVEL) / 2) ** 2
    pairs = (m + n) / 2 - 1

    def excess(t: float) -> float:  # < 0 inside the interval
        variance = t * (1 - t) * (1 + pairs * (1 - t) / (2 - t) + pairs * t / (1 + t)) / (m * n)
        return (theta - t) ** 2 - z2 * variance

    inside_low, inside_high = min(theta, 1 - 1e-9), max(theta, 1e-9)  # excess < 0 there, also at θ̂ = 0 or 1
    low = 0.0 if excess(0.0) <= 0 else optimize.brentq(excess, 0.0, inside_low)
    high = 1.0 if excess(1.0) <= 0 else optimize.brentq(excess, inside_high, 1.0)
    return float(low), float(high)


def tpr_at_fpr(members: np.ndarray, non_members: np.ndarray, fpr: float = 0.01) -> float:
    """True-positive rate at the strictest threshold whose false-positive rate is ≤ fpr (MIMIR's TPR@1 %FPR).
    With fewer than 1/fpr non-members that means no false positive at all: the share of members scoring
    above every non-member."""
    members, non_members = np.asarray(members, dtype=np.float64), np.sort(np.asarray(non_members, dtype=np.float64))
    allowed = int(math.floor(fpr * len(non_members)))  # non-members that may score at or above the threshold
    threshold = non_members[len(non_members) - allowed - 1]  # members must score strictly above it
    return float((members > threshold).mean())
