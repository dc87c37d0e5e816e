"""Purity matrices, their permutation null and the stratified view on hand-made activations (docs/design.md §4.4)."""

import pytest
import torch

from chrono_membench.chrono.purity import (
    mean_activation_matrix, normalised_purity, purity_matrix, purity_with_null, stratified_purity,
)


def test_purity_hand_made():
    # latent 0 fires only on column 1; latent 1 fires evenly everywhere; latent 2 never fires.
    doc_sums = torch.tensor([[0.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    M = mean_activation_matrix(doc_sums, torch.ones(4), one_hot)
    P = purity_matrix(M)
    assert P[0].tolist() == [0.0, 1.0, 0.0] and P[1].tolist() == pytest.approx([1 / 3] * 3)
    assert P[2].tolist() == [0.0, 0.0, 0.0]
    live = P.sum(1) > 0
    assert normalised_purity(P, live).item() == pytest.approx(0.5)  # (1 + 0) / 2: the dead latent left out
    # Source purity has no share division: equal per-token activation on a common and a rare source is 50/50.
    per_token = mean_activation_matrix(torch.tensor([[9.0], [1.0]]), torch.tensor([9.0, 1.0]), torch.eye(2))
    assert purity_matrix(per_token)[0].tolist() == pytest.approx([0.5, 0.5])


def test_null_excess_is_zero_for_uniform_and_sparse_latents_positive_for_confined_ones():
    g = torch.Generator().manual_seed(0)
    D, F = 88, 40  # 8 columns of 11 documents
    column = torch.arange(D) % 8
    tokens = torch.full((D,), 32.0)
    uniform = torch.ones(D, F) * 32
    got = purity_with_null(uniform, tokens, column, 100, g)
    assert got["excess"] == pytest.approx(0.0, abs=1e-6) and got["columns"] == 8
    sparse = torch.zeros(D, F)  # each latent fires in one random document: "pure" by chance alone
    sparse[torch.randint(0, D, (F,), generator=g), torch.arange(F)] = 5.0
    got = purity_with_null(sparse, tokens, column, 100, g)
    assert got["observed"] == pytest.approx(1.0) and got["null"] == pytest.approx(1.0) and got["excess"] == 0
    noisy = torch.rand(D, F, generator=g)  # firing everywhere at random levels: observed ≈ null
    assert abs(purity_with_null(noisy, tokens, column, 200, g)["excess"]) < 0.02
    confined = torch.rand(D, F, generator=g) * (column == 3)[:, None]  # fires only in column 3's documents
    got = purity_with_null(confined, tokens, column, 100, g)
    assert got["observed"] == pytest.approx(1.0) and got["excess"] > 0.5
    # Columns without documents are left out; one column only: undefined.
    assert purity_with_null(uniform[:11], tokens[:11], column[:11] * 0, 10, g) is None
    assert purity_with_null(noisy, tokens, column * 2, 10, g)["columns"] == 8


def test_stratified_purity_unmasks_a_source_latent_posing_as_a_time_latent():
    g = torch.Generator().manual_seed(1)
    D = 120
    column = torch.arange(D) % 2  # two time columns
    source = torch.where(column == 0, torch.arange(D) % 3 == 0, torch.arange(D) % 3 != 0).long()  # confounded
    tokens = torch.full((D,), 32.0)
    source_latent = (source == 1).float()[:, None] * torch.rand(D, 1, generator=g) + 0.01
    pooled = purity_with_null(source_latent, tokens, column, 200, g)
    assert pooled["excess"] > 0.1  # pooled over sources, time looks informative...
    within = stratified_purity(source_latent, tokens, column, source, 200, g)
    assert abs(within["excess"]) < 0.05  # ...within each source it is not
    time_latent = (column == 1).float()[:, None] + 0.0
    assert stratified_purity(time_latent, tokens, column, source, 100, g)["excess"] > 0.5


def test_a_partial_effect_gives_its_known_purity_and_a_small_p_value():
    """A fraction f of latents e× as active in one column as in the other seven (all else constant): observed purity
    is f · (e/(e+7) − 1/8)/(7/8) exactly, the excess and its significance grow with f."""
    g = torch.Generator().manual_seed(0)
    D, F, e = 88, 100, 4.0
    column = torch.arange(D) % 8
    tokens = torch.full((D,), 32.0)
    results = {}
    for f in (0.0, 0.05, 0.2):
        acts = torch.ones(D, F) * 32
        enriched = int(f * F)
        acts[column == 3, :enriched] *= e
        results[f] = purity_with_null(acts, tokens, column, 200, g)
        assert results[f]["observed"] == pytest.approx(f * (e / (e + 7) - 1 / 8) / (7 / 8), abs=1e-6)
    assert results[0.0]["excess"] == pytest.approx(0.0, abs=1e-6) and results[0.0]["p_value"] == 1.0
    assert 0 < results[0.05]["excess"] < results[0.2]["excess"]
    assert results[0.05]["p_value"] < 0.01 and results[0.2]["p_value"] < 0.01  # 1/201 at most would be the floor


def test_the_permutation_p_value_is_uniform_under_the_null():
    """What any per-latent test built on it relies on: with no column structure, P(p ≤ α) ≈ α."""
    from scipy import stats

    g = torch.Generator().manual_seed(2)
    column = torch.arange(40) % 4
    p = [purity_with_null(torch.rand(40, 6, generator=g), torch.full((40,), 16.0), column, 99, g)["p_value"]
         for _ in range(400)]
    p = torch.tensor(p)
    for alpha in (0.05, 0.2, 0.5):  # binomial 99.9 % band around α for 400 draws
        lo, hi = stats.binom.ppf([0.0005, 0.9995], 400, alpha) / 400
        assert lo <= (p <= alpha).float().mean().item() <= hi, alpha
    assert stats.kstest(p.numpy(), "uniform").pvalue > 0.001
