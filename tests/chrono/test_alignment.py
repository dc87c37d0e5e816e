"""Feature alignment and decoder drift on hand-made decoders (docs/design.md §4.2)."""

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


@pytest.mark.parametrize("arch", ["topk", "standard"])
def test_alignment_loss_is_sae_lens_decodes_change_and_ignores_what_decode_ignores(arch):
    """With sae-lens's own decode (TopK rescales by the decoder norm; standard does not), one latent per token: the
    loss on decoding_rows equals E‖decode(f; W) − decode(f; W⁰)‖²; rescaling rows changes nothing where decode
    divides the norm out, and everything where it does not."""
    from sae_lens.registry import get_sae_training_class

    from chrono_membench.chrono.alignment import decoding_rows

    sae_cls, cfg_cls = get_sae_training_class(arch)
    sae = sae_cls(cfg_cls(d_in=8, d_sae=16, **({"k": 1} if arch == "topk" else {})))
    rescaled = getattr(sae.cfg, "rescale_acts_by_decoder_norm", False)
    assert rescaled == (arch == "topk")  # sae-lens 6.54's defaults, which this test is about
    torch.manual_seed(0)
    anchor = sae.W_dec.detach().clone()
    N = 256
    acts = torch.zeros(N, 16)
    acts[torch.arange(N), torch.randint(0, 16, (N,))] = torch.rand(N) * 5

    def decoded(W):
        with torch.no_grad():
            sae.W_dec.copy_(W)
            return sae.decode(acts)

    alive = torch.ones(16, dtype=torch.bool)
    for W in (torch.randn(16, 8), anchor * 1.1):  # a new decoder; the same one with every row 10 % longer
        change = (decoded(W) - decoded(anchor)).pow(2).sum(-1).mean()
        loss = alignment_loss(decoding_rows(W, rescaled), decoding_rows(anchor, rescaled), alive, acts.pow(2).mean(0))
        assert loss.item() == pytest.approx(change.item(), rel=1e-4, abs=1e-9)
    assert (change.item() == pytest.approx(0, abs=1e-9)) == rescaled  # rescaling: invisible to TopK's decode only
