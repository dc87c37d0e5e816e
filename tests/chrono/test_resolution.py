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


def test_power_inverses_are_the_smallest_sizes_that_reach_their_mde():
    for delta in (0.29, 0.1, 0.05):
        n = R.windows_for_auroc(delta)
        assert R.auroc_mde(n, n) <= delta < R.auroc_mde(n - 1, n - 1)
    for rho in (0.5, 0.1):
        n = R.windows_for_correlation(rho)
        assert R.correlation_mde(n) <= rho < R.correlation_mde(n - 1)
    n = R.windows_for_mean_difference(0.1, 0.3)
    assert R.mean_difference_mde(0.3, n, n) <= 0.1 < R.mean_difference_mde(0.3, n - 1, n - 1)
    s = R.seeds_for_paired_difference(1.0)
    assert R.paired_seeds_mde(s) <= 1.0 < R.paired_seeds_mde(s - 1) and s == 10
    for seeds in (3, 10, 30):  # near the textbook approximation, which the exact value approaches with more seeds
        approximate = (stats.t.ppf(0.975, seeds - 1) + stats.t.ppf(0.8, seeds - 1)) / np.sqrt(seeds)
        assert R.paired_seeds_mde(seeds) == pytest.approx(approximate, rel=0.1 if seeds == 3 else 0.01)


def test_power_arithmetic_holds_by_simulation():
    """The null SEs behind the MDEs are the real ones (AUROC: Mann–Whitney; Spearman ρ), and a paired difference of
    paired_seeds_mde(s) seed SDs is found by a paired t-test about 80 % of the time."""
    rng = np.random.default_rng(1)
    aucs = [stats.mannwhitneyu(rng.normal(size=16), rng.normal(size=24)).statistic / (16 * 24) for _ in range(4000)]
    assert np.std(aucs) == pytest.approx(R.auroc_mde(16, 24) / R.POWER_FACTOR, rel=0.05)
    rhos = [stats.spearmanr(rng.normal(size=48), rng.normal(size=48)).statistic for _ in range(4000)]
    assert np.std(rhos) == pytest.approx(R.correlation_mde(48) / R.POWER_FACTOR, rel=0.05)
    for seeds in (3, 5):
        effect = R.paired_seeds_mde(seeds)
        hits = np.mean([stats.ttest_1samp(rng.normal(effect, 1.0, seeds), 0).pvalue <= 0.05 for _ in range(4000)])
        assert 0.77 <= hits <= 0.83, (seeds, hits)
