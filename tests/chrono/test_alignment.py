"""Feature alignment and decoder drift on hand-made decoders (DESIGN.md §4.2)."""

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from chrono_membench.chrono.alignment import (
    alignment_loss, decoder_drift, matched_similarity, sparse_matched_similarity, unit_rows,
)


def test_alignment_loss_is_the_reconstruction_change_the_drift_causes():
    """One latent fires per token (no co-firing): Σ E[a_i²]‖d_i − d_i⁰‖² is exactly E‖x̂(D) − x̂(D⁰)‖²."""
    torch.manual_seed(0)
    F_, D, N = 16, 8, 512
    anchor, W = torch.randn(F_, D), torch.randn(F_, D)
    acts = torch.zeros(N, F_)
    acts[torch.arange(N), torch.randint(0, F_, (N,))] = torch.rand(N) * 5
    alive = torch.ones(F_, dtype=torch.bool)
    change = (acts @ W - acts @ anchor).pow(2).sum(-1).mean()  # b_dec cancels
    got = alignment_loss(W, anchor, alive, acts.pow(2).mean(0))
    assert got.item() == pytest.approx(change.item(), rel=1e-5)
    assert alignment_loss(anchor, anchor, alive, acts.pow(2).mean(0)).item() == 0.0
    dead = torch.zeros(F_, dtype=torch.bool)  # latents dead at the anchor are free to move
    assert alignment_loss(W, anchor, dead, acts.pow(2).mean(0)).item() == 0.0
    W_req = W.clone().requires_grad_()
    alignment_loss(W_req, anchor, alive, acts.pow(2).mean(0)).backward()
    torch.testing.assert_close(W_req.grad, 2 * acts.pow(2).mean(0)[:, None] * (W - anchor))


def test_decoder_drift_and_matching():
    torch.manual_seed(0)
    W = torch.randn(32, 16)
    same = decoder_drift(W, W, chunk=7)
    assert same["mmcs"] == pytest.approx(1.0, abs=1e-5) and same["self_match_frac"] == 1.0
    perm = torch.roll(torch.arange(32), 1)
    moved = decoder_drift(W[perm], W)
    assert moved["mmcs"] == pytest.approx(1.0, abs=1e-5) and moved["self_match_frac"] == 0.0
    assert matched_similarity(W[perm], W) == pytest.approx(1.0, abs=1e-5)
    assert matched_similarity(W, W) == pytest.approx(1.0, abs=1e-6)  # an SAE against itself (cross-seed floor = 1)
    assert decoder_drift(torch.randn(32, 16), W)["mmcs"] < 0.9


@pytest.mark.parametrize("rows, cols", [(40, 40), (30, 50), (50, 30)])
def test_sparse_matching_equals_linear_sum_assignment(rows, cols):
    torch.manual_seed(rows + cols)
    a, b = unit_rows(torch.randn(rows, 8)), unit_rows(torch.randn(cols, 8))
    cos = (a @ b.T).numpy()
    r, c = linear_sum_assignment(cos, maximize=True)
    exact = float(cos[r, c].mean())
    assert matched_similarity(a, b) == pytest.approx(exact, abs=1e-6)
    assert sparse_matched_similarity(a, b, candidates=max(rows, cols)) == pytest.approx(exact, abs=1e-6)
    assert sparse_matched_similarity(a, b, candidates=2) <= exact + 1e-6  # fewer candidates: never better
    permuted = b[torch.randperm(cols)] if rows == cols else None
    if permuted is not None:  # a planted matching is found from 3 candidates a row
        assert sparse_matched_similarity(b, permuted, candidates=3) == pytest.approx(1.0, abs=1e-6)


def test_matching_runs_sparse_above_the_dense_limit():
    torch.manual_seed(0)
    W = torch.randn(300, 16)
    noisy = W + 0.05 * torch.randn(300, 16)
    assert matched_similarity(noisy, W, dense_max=100) == pytest.approx(matched_similarity(noisy, W), abs=1e-6)
