"""Uncertainty and membership-inference statistics: 95 % intervals, AUROC, TPR at a fixed FPR.

Intervals: Wilson for a rate (exact match: a binomial proportion that is often near 0, where the normal
interval collapses); Student's t for a mean, Welch's for a difference of means, and Welch–Satterthwaite across
strata for a stratified difference (the percentile bootstrap they replaced under-covered at the probe set's sizes:
0.905 for a mean of 16 skewed values, 0.92 for a difference of 16 vs 16, 0.80 stratified over 4 sources); and
Newcombe's score interval for an AUROC (the percentile bootstrap under-covers it too and collapses to [1, 1] on
separable sets). tests/chrono/test_stats.py measures each one's coverage by simulation.
Membership scores follow MIMIR's convention: higher = more likely a member.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

LEVEL = 0.95


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial rate; (nan, nan) with no trials."""
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def mean_interval(x: np.ndarray) -> tuple[float, float]:
    """95 % Student t interval of a mean; (nan, nan) with fewer than 2 values."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return math.nan, math.nan
    half = stats.t.ppf((1 + LEVEL) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def _welch(terms: list[tuple[float, int]]) -> float:
    """Half-width of a 95 % interval whose variance is Σ v over terms (v, degrees of freedom): Welch–Satterthwaite."""
    var = sum(v for v, _ in terms)
    if var == 0:
        return 0.0
    df = var ** 2 / sum(v ** 2 / d for v, d in terms if v > 0)
    return float(stats.t.ppf((1 + LEVEL) / 2, df) * math.sqrt(var))


def difference_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95 % Welch interval of mean(a) − mean(b); (nan, nan) when a sample has fewer than 2 values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    value = a.mean() - b.mean()
    half = _welch([(x.var(ddof=1) / len(x), len(x) - 1) for x in (a, b)])
    return float(value - half), float(value + half)


def stratified_difference(a: np.ndarray, a_strata: np.ndarray, b: np.ndarray, b_strata: np.ndarray
                          ) -> tuple[float, float, float]:
    """Σ_s n_a,s · (mean a_s − mean b_s) / Σ_s n_a,s over the strata both samples have: the difference of means with
    b reweighted to a's stratum mix (so a different mix of sources cannot pose as a difference), with a 95 %
    Welch–Satterthwaite interval (each stratum's own variance; a stratum with one value takes its sample's pooled
    within-stratum variance). nan when no stratum is shared; no interval when no sample has within-stratum spread."""
    strata = [s for s in np.unique(a_strata) if (b_strata == s).any()]
    if not strata:
        return math.nan, math.nan, math.nan
    cells = [(a[a_strata == s].astype(np.float64), b[b_strata == s].astype(np.float64)) for s in strata]
    weights = np.array([len(x) for x, _ in cells], dtype=np.float64) / sum(len(x) for x, _ in cells)
    value = float(sum(w * (x.mean() - y.mean()) for w, (x, y) in zip(weights, cells)))
    terms = []
    for side in (0, 1):
        groups = [cell[side] for cell in cells]
        dof = sum(len(g) - 1 for g in groups)
        if dof == 0:
            return value, math.nan, math.nan
        pooled = sum(((g - g.mean()) ** 2).sum() for g in groups) / dof
        terms += [(w ** 2 * (g.var(ddof=1) if len(g) > 1 else pooled) / len(g), len(g) - 1 if len(g) > 1 else dof)
                  for w, g in zip(weights, groups)]
    half = _welch(terms)
    return value, value - half, value + half


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


def stratified_auroc(scores: np.ndarray, labels: np.ndarray, strata: np.ndarray) -> tuple[float, float, float]:
    """(AUROC, low, high) over member/non-member pairs within each stratum only: the per-stratum AUROCs weighted by
    their pairs (van Elteren's weighting of the Mann–Whitney statistic), with a normal 95 % interval from their
    Hanley–McNeil variances (independent strata), clipped to [0, 1] — narrow where a small stratum sits near 0 or 1
    (its variance vanishes there; Newcombe's interval, used unstratified, does not). A stratum holding one class adds
    nothing —
    a source present in one column cannot make the columns separable. (nan, nan, nan) without a mixed stratum."""
    scores, labels, strata = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool), np.asarray(strata)
    parts = []
    for s in np.unique(strata):
        pos, neg = scores[(strata == s) & labels], scores[(strata == s) & ~labels]
        if len(pos) and len(neg):
            a, m, n = float(auroc(pos, neg)), len(pos), len(neg)
            q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
            parts.append((a, m * n, (a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n)))
    if not parts:
        return math.nan, math.nan, math.nan
    pairs = sum(w for _, w, _ in parts)
    value = sum(a * w for a, w, _ in parts) / pairs
    se = math.sqrt(sum((w / pairs) ** 2 * v for _, w, v in parts))
    z = stats.norm.ppf((1 + LEVEL) / 2)
    return value, max(0.0, value - z * se), min(1.0, value + z * se)


def tpr_at_fpr(members: np.ndarray, non_members: np.ndarray, fpr: float = 0.01) -> float:
    """True-positive rate at the strictest threshold whose false-positive rate is ≤ fpr (MIMIR's TPR@1 %FPR).
    With fewer than 1/fpr non-members that means no false positive at all: the share of members scoring
    above every non-member."""
    members, non_members = np.asarray(members, dtype=np.float64), np.sort(np.asarray(non_members, dtype=np.float64))
    allowed = int(math.floor(fpr * len(non_members)))  # non-members that may score at or above the threshold
    threshold = non_members[len(non_members) - allowed - 1]  # members must score strictly above it
    return float((members > threshold).mean())
