"""What a run could have seen: a verdict beside every time-claim it prints (run summary, report).

A claim is "detected" when its 95 % interval excludes the null (or its permutation p ≤ 0.05). Otherwise the
verdict states the minimum detectable effect (MDE) at this run's size — the effect a two-sided 5 % test would find
with 80 % power, (z₀.₉₇₅ + z₀.₈) · SE = 2.80 · SE, the SE read off the claim's own interval ((hi − lo) / 3.92)
or its permutation null's SD — "none detected; would have seen ≥ X". Where even the largest possible effect is
below that (an AUROC can move 0.5 from chance, a correlation 1), or there is no interval, it is "undecided at this
size".
"""

from __future__ import annotations

import math

from scipy.stats import norm

POWER_FACTOR = float(norm.ppf(0.975) + norm.ppf(0.80))  # 2.80
Z = float(norm.ppf(0.975))


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _none_detected(mde: float, largest: float | None) -> str:
    if largest is not None and mde >= largest:
        return f"undecided at this size (could only see ≥ {mde:.3g})"
    return f"none detected; would have seen ≥ {mde:.3g}"


def from_interval(lo: float, hi: float, null: float = 0.0, largest: float | None = None) -> str:
    """Verdict for a value with a 95 % interval [lo, hi] against `null`; `largest`: the largest possible
    deviation from the null (None: unbounded)."""
    if not _finite(lo, hi):
        return "undecided at this size (no interval)"
    if lo > null or hi < null:
        return "detected"
    if hi - lo <= 0:
        return "undecided at this size (the interval has no width)"
    return _none_detected(POWER_FACTOR * (hi - lo) / (2 * Z), largest)


def from_permutation(p: float, null_sd: float, largest: float | None = None) -> str:
    """Verdict for a statistic with a permutation p-value and its null's SD."""
    if not _finite(p, null_sd):
        return "undecided at this size (no null)"
    if p <= 0.05:
        return f"detected, p = {p:.2g}"
    if null_sd <= 0:
        return "undecided at this size (the null does not vary)"
    return _none_detected(POWER_FACTOR * null_sd, largest)


def correlation_mde(n: int) -> float:
    """The |ρ| a Spearman correlation over n pairs detects (SE ≈ 1/√(n − 1) under the null)."""
    return POWER_FACTOR / math.sqrt(n - 1) if n > 1 else math.inf
