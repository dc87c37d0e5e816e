"""Comparing arms over seeds: t-intervals, Welch's interval of a difference, the seed-noise verdict."""

import math

import numpy as np
import pytest
from scipy import stats

from chrono_membench.comparison import NOISE, compare, difference_interval, mean_interval


def test_mean_interval_is_the_t_interval():
    x = [1.0, 2.0, 3.0, 4.0]
    mean, low, high = mean_interval(x)
    half = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2
    assert mean == 2.5 and low == pytest.approx(2.5 - half) and high == pytest.approx(2.5 + half)
    assert math.isnan(mean_interval([1.0])[1])


def test_difference_verdicts():
    rng = np.random.default_rng(0)
    base = list(rng.normal(1.0, 0.01, 5))
    shifted = list(rng.normal(1.5, 0.01, 5))
    same = list(rng.normal(1.0, 0.01, 5))
    d, low, high = difference_interval(shifted, base)
    assert d == pytest.approx(0.5, abs=0.03) and 0 < low < d < high
    arms = {"full": [{"m": v} for v in base], "shifted": [{"m": v} for v in shifted], "same": [{"m": v} for v in same],
            "single": [{"m": 2.0}]}
    rows = {r["arm"]: r for r in compare(arms, ["m"], "full")}
    assert rows["shifted"]["verdict"] == "differs" and rows["same"]["verdict"] == NOISE
    assert rows["single"]["verdict"] == "one seed: no interval" and "verdict" not in rows["full"]
