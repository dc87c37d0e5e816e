"""Per-latent selectivity with FDR control: a planted time-local population is found, the false-discovery rate
among the rest is held at q (simulation), and nothing is found under the null."""

import numpy as np

from chrono_membench.chrono.selectivity import selective_latents


def windows(rng, planted: int, F: int = 400, D: int = 160, C: int = 8, lift: float = 2.0):
    """Latents firing in 30 % of windows with skewed strengths; the first `planted` fire in 90 % of bucket 2's
    windows instead, `lift`× as strongly: a time-local population."""
    column = np.arange(D) % C
    fires = rng.random((D, F)) < 0.3
    strength = rng.gamma(2.0, 1.0, (D, F))
    local = (column == 2)[:, None] & (np.arange(F) < planted)[None, :]
    fires = np.where(local, rng.random((D, F)) < 0.9, fires)
    rate = strength * fires * np.where(local, lift, 1.0)
    tokens = np.full(D, 32)
    return rate * tokens[:, None], tokens, column


def test_a_planted_population_is_found_and_the_false_discovery_rate_held():
    rng = np.random.default_rng(0)
    found, false_share = [], []
    for _ in range(20):
        sums, tokens, column = windows(rng, planted=40)
        got = selective_latents(sums, tokens, column, q=0.05)
        hits = set(got["selective"].tolist())
        found.append(len(hits & set(range(40))) / 40)
        false_share.append(len(hits - set(range(40))) / max(1, len(hits)))
    assert np.mean(found) > 0.8  # power on a 3× lift in one of 8 buckets over 20 windows each
    assert np.mean(false_share) <= 0.05 + 0.02  # BH: E[false / discoveries] ≤ q (20 runs: a little slack)


def test_nothing_is_selective_under_the_null_and_sparse_latents_are_not_tested():
    rng = np.random.default_rng(1)
    nulls = [selective_latents(*windows(rng, planted=0), q=0.05)["count"] for _ in range(20)]
    assert sum(n > 0 for n in nulls) <= 3  # BH under the global null: P(any discovery) ≤ q, 20 runs
    sums, tokens, column = windows(rng, planted=0)
    sums[:, :10] = 0
    sums[:3, :10] = 5.0  # fires in 3 windows only: too few to test
    got = selective_latents(sums, tokens, column, min_windows=5)
    assert not set(range(10)) & set(got["tested"].tolist()) and len(got["tested"]) == 390
    assert selective_latents(sums, tokens, column * 0) is None
