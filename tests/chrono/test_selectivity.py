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


def test_within_source_a_source_only_one_bucket_holds_is_not_time():
    """An exhausted source (all its documents first seen in bucket 0, as the offline sample's 100 GSM8K problems in
    a 300-step run) makes every latent that reads it look time-selective to the pooled test; read within source it
    adds nothing, and a population truly local in time within the other sources is still found."""
    rng = np.random.default_rng(2)
    sums, tokens, column = windows(rng, planted=40, C=4, D=240)
    source = np.where((column == 0) & (np.arange(240) % 3 == 0), 1, 0)  # source 1: a third of bucket 0, nowhere else
    reads_source = np.arange(100, 160)  # 60 latents that fire on 90 % of source 1's windows, 3× as strongly
    on = source == 1
    sums[np.ix_(on, reads_source)] = 32 * 3.0 * rng.gamma(2.0, 1.0, (on.sum(), 60)) * (rng.random((on.sum(), 60)) < 0.9)
    pooled = set(selective_latents(sums, tokens, column)["selective"].tolist())
    within = set(selective_latents(sums, tokens, column, strata=source)["selective"].tolist())
    assert len(pooled & set(reads_source.tolist())) > 20  # the confound, pooled
    assert len(within & set(reads_source.tolist())) <= 3  # gone within source (BH's q: a few false ones allowed)
    assert len(within & set(range(40))) / 40 > 0.7  # the real population, still found
    nulls = [selective_latents(*windows(rng, planted=0), q=0.05, strata=rng.integers(0, 3, 160))["count"]
             for _ in range(20)]
    assert sum(n > 0 for n in nulls) <= 3  # the combined test holds BH's level under the null too
