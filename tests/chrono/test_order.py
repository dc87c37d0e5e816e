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
