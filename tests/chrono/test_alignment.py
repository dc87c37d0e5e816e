"""Feature alignment and decoder drift on hand-made decoders (DESIGN.md §4.2)."""


import pytest
import torch

from chrono_membench.chrono.alignment import alignment_loss, decoder_drift, hungarian_similarity, unit_rows




def test_alignment_loss_zero_at_anchor_and_grows_with_rotation():
    torch.manual_seed(0)
    W = torch.randn(16, 8)
    anchor, alive = unit_rows(W), torch.ones(16, dtype=torch.bool)
    assert alignment_loss(W * 3.0, anchor, alive).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    plane = torch.zeros(8, 8)
    plane[0, 1], plane[1, 0] = -1.0, 1.0
    losses = [alignment_loss(W @ torch.linalg.matrix_exp(a * plane), anchor, alive).item() for a in (0.1, 0.3, 0.6, 1.0)]
    assert all(0 < a < b for a, b in zip(losses, losses[1:]))
    dead_only = alive.clone()
    dead_only[:] = False
    assert alignment_loss(W, anchor, dead_only).item() == 0.0
    W_req = W.clone().requires_grad_()
    alignment_loss(W_req + 0.1, anchor, alive).backward()
    assert W_req.grad.abs().sum() > 0


def test_decoder_drift_and_hungarian():
    torch.manual_seed(0)
    W = torch.randn(32, 16)
    same = decoder_drift(W, W, chunk=7)
    assert same["mmcs"] == pytest.approx(1.0, abs=1e-5) and same["self_match_frac"] == 1.0
    perm = torch.roll(torch.arange(32), 1)
    moved = decoder_drift(W[perm], W)
    assert moved["mmcs"] == pytest.approx(1.0, abs=1e-5) and moved["self_match_frac"] == 0.0
    assert hungarian_similarity(W[perm], W) == pytest.approx(1.0, abs=1e-5)
    assert decoder_drift(torch.randn(32, 16), W)["mmcs"] < 0.9
