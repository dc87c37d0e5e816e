"""Verdicts beside time-claims: detected when the interval excludes the null, else the minimum detectable effect
(2.80 SE: 80 % power at 5 %), checked by simulation; undecided when even the largest effect is below it."""

import numpy as np
import pytest
from scipy import stats

from chrono_membench.chrono import resolution as R


def test_verdicts_on_known_intervals():
    assert R.from_interval(0.1, 0.3) == "detected" and R.from_interval(-0.3, -0.1) == "detected"
    assert R.from_interval(-0.196, 0.196) == f"none detected; would have seen ≥ {R.POWER_FACTOR * 0.1:.3g}"
    assert R.from_interval(0.1, 0.9, null=0.5, largest=0.5).startswith("undecided at this size")
    assert R.from_interval(float("nan"), 1.0) == "undecided at this size (no interval)"
    assert R.from_permutation(0.01, 0.1) == "detected, p = 0.01"
    assert R.from_permutation(1.0, 0.0).startswith("undecided") and R.from_interval(0.0, 0.0).startswith("undecided")
    assert R.from_permutation(0.4, 0.01) == "none detected; would have seen ≥ 0.028"
    assert R.correlation_mde(65) == pytest.approx(R.POWER_FACTOR / 8)


def test_the_mde_is_found_80_percent_of_the_time():
    """A difference of means of exactly the MDE (computed from the interval a null sample gives) is detected in
    about 80 % of runs: the statement "would have seen ≥ X" means what it says."""
    rng = np.random.default_rng(0)
    n, sd = 32, 1.0
    half = R.Z * sd * np.sqrt(2 / n)  # a 95 % interval's half-width for a difference of two means
    mde = float(R.from_interval(-half, half).split("≥ ")[1])
    hits = 0
    for _ in range(2000):
        a, b = rng.normal(mde, sd, n), rng.normal(0, sd, n)
        se = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
        diff = a.mean() - b.mean()
        hits += R.from_interval(diff - R.Z * se, diff + R.Z * se) == "detected"
    assert 0.76 <= hits / 2000 <= 0.84, hits / 2000
    assert stats.norm.cdf(R.POWER_FACTOR - R.Z) == pytest.approx(0.8, abs=1e-3)
