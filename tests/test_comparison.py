"""Comparing arms over seeds: t-intervals, Welch's interval of a difference, the seed-noise verdict."""

import math

import numpy as np
import pytest
from scipy import stats

from studies.comparison import NOISE, compare, difference_interval, mean_interval


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


def test_matched_seeds_are_compared_pairwise():
    """Seed i of every arm shares its data order and SAE init: a small effect under large seed-to-seed spread is
    found by the paired interval and missed by Welch's; identical values in every seed say so; unmatched seeds fall
    back to Welch."""
    rng = np.random.default_rng(1)
    base = rng.normal(1.0, 0.5, 4)  # large seed noise, shared by both arms
    arms = {"full": [{"m": v} for v in base], "shifted": [{"m": v + 0.1 + rng.normal(0, 0.001)} for v in base],
            "same": [{"m": v} for v in base]}
    seeds = {arm: [(i, i) for i in range(4)] for arm in arms}
    welch = {r["arm"]: r for r in compare(arms, ["m"], "full")}
    paired = {r["arm"]: r for r in compare(arms, ["m"], "full", seeds)}
    assert welch["shifted"]["verdict"] == NOISE and welch["shifted"]["test"] == "Welch"
    assert paired["shifted"]["verdict"] == "differs" and paired["shifted"]["test"] == "paired"
    assert paired["shifted"]["diff_low"] < 0.1 < paired["shifted"]["diff_high"]
    assert paired["same"]["verdict"] == "identical in every seed"
    shuffled = {**seeds, "shifted": [(i, i) for i in (1, 0, 3, 2)]}  # seeds matched by identity, not by order
    assert {r["arm"]: r for r in compare(arms, ["m"], "full", shuffled)}["shifted"]["verdict"] == NOISE
    other = {**seeds, "shifted": [(i + 10, i) for i in range(4)]}
    assert {r["arm"]: r for r in compare(arms, ["m"], "full", other)}["shifted"]["test"] == "Welch"


def test_suite_and_sweep_join_their_variants_to_the_users_in_one_override():
    from studies.comparison import with_variants
    from chrono_membench.config import ConfigError, parse_override

    user = ["train.max_steps=4", "sae.variants={k16: {sae.k: 16}}"]
    out = with_variants(user, {"no_dropout": {"chrono.dropout_p_max": 0}})
    assert out[0] == "train.max_steps=4" and len([o for o in out if o.startswith("sae.variants=")]) == 1
    assert parse_override(out[-1])[1] == {"no_dropout": {"chrono.dropout_p_max": 0}, "k16": {"sae.k": 16}}
    assert with_variants(["train.lr=0.1"], {}) == ["train.lr=0.1"]
    with pytest.raises(ConfigError, match="k16 named twice"):
        with_variants(user, {"k16": {"sae.k": 8}})
