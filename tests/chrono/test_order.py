"""The training-order test: Spearman's ρ as scipy computes it, a permutation p-value that finds a planted recency,
is uniform under the null, and does not mistake a source mix that drifts over time for an order effect."""

import numpy as np
import pytest
from scipy import stats

from chrono_membench.chrono.order import order_correlation


def test_rho_is_scipys_spearman_and_a_planted_recency_is_found():
    rng = np.random.default_rng(0)
    step = rng.integers(1, 100, 64)
    score = 0.02 * step + rng.normal(0, 1, 64)  # later windows slightly more memorised
    rho, p = order_correlation(score, step, permutations=2000, seed=1)
    assert rho == pytest.approx(stats.spearmanr(score, step).statistic, abs=1e-12)
    assert rho > 0.3 and p < 0.01
    assert order_correlation(score, -step)[0] == pytest.approx(-rho)  # the sign says the direction
    assert np.isnan(order_correlation(score[:2], step[:2])[0]) and np.isnan(order_correlation(score, step * 0)[0])


def test_the_p_value_is_uniform_under_the_null():
    rng = np.random.default_rng(3)
    p = np.array([order_correlation(rng.normal(size=40), rng.integers(1, 50, 40), permutations=199, seed=i)[1]
                  for i in range(300)])
    for alpha in (0.05, 0.2, 0.5):
        lo, hi = stats.binom.ppf([0.0005, 0.9995], 300, alpha) / 300
        assert lo <= (p <= alpha).mean() <= hi, alpha


def test_within_source_a_drifting_mix_is_not_an_order_effect():
    """Source A early and easy, source B late and hard: pooled, score falls with step; within each source, no order."""
    rng = np.random.default_rng(4)
    source = np.repeat([0, 1], 40)
    step = np.where(source == 0, rng.integers(1, 60, 80), rng.integers(40, 100, 80))
    score = np.where(source == 0, 1.0, -1.0) + rng.normal(0, 0.3, 80)
    pooled_rho, pooled_p = order_correlation(score, step, permutations=999)
    within_rho, within_p = order_correlation(score, step, source, permutations=999)
    assert pooled_rho < -0.4 and pooled_p < 0.01
    assert abs(within_rho) < 0.25 and within_p > 0.05


def test_false_positives_stay_at_5_percent_under_a_drifting_mix_and_windows_that_share_their_step():
    """The harness's own test on the demo's shape (48 seen windows over 30 steps, 2 a step) under the two nulls the
    re-derivation simulated: a source mix that drifts over time (source A early and easy, B late and hard) and
    windows trained in one step sharing 60 % of their score's variance. Within source, steps permuted: ≤ 0.06."""
    rng = np.random.default_rng(11)
    rejections = by_window = 0
    sims = 300
    for i in range(sims):
        step = np.repeat(rng.choice(np.arange(1, 31), 24, replace=False), 2)
        late = step > 15
        source = np.where(rng.random(48) < np.where(late, 0.8, 0.2), 1, 0)  # the mix drifts to B
        shared = {s: rng.normal(0, np.sqrt(0.6)) for s in np.unique(step)}  # a step's shared part
        score = np.where(source == 1, -1.0, 1.0) + np.array([shared[s] for s in step]) + rng.normal(0, np.sqrt(0.4), 48)
        rejections += order_correlation(score, step, source, permutations=199, seed=i)[1] <= 0.05
        # every window a step of its own (ties broken): shuffling single windows, what the test did before
        by_window += order_correlation(score, step + rng.uniform(0, 0.01, 48), source, permutations=199, seed=i)[1] <= 0.05
    assert rejections / sims <= 0.06 < 0.08 <= by_window / sims, (rejections / sims, by_window / sims)
