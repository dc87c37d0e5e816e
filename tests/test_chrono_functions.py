"""Hand-made cases for the chrono and SAE metric functions."""

import math

import pytest
import torch

from chrono_membench.chrono.alignment import alignment_loss, decoder_drift, hungarian_similarity, unit_rows
from chrono_membench.chrono.sae_metrics import ce_loss_recovered, fraction_of_variance_explained, l0
from chrono_membench.chrono.temporal_dropout import inverted_dropout, temporal_dropout_rate


def test_temporal_dropout_schedule():
    assert temporal_dropout_rate(0, 100, 0.1) == pytest.approx(0.1)
    assert temporal_dropout_rate(50, 100, 0.1) == pytest.approx(0.05)
    assert temporal_dropout_rate(25, 100, 0.1) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert temporal_dropout_rate(100, 100, 0.1) == pytest.approx(0.0, abs=1e-12)
    assert temporal_dropout_rate(30, 100, 0.0) == 0.0
    rates = [temporal_dropout_rate(t, 100, 0.1) for t in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_inverted_dropout_keeps_the_expectation():
    gen = torch.Generator().manual_seed(0)
    acts = torch.rand(2000, 64) + 0.5
    out = torch.stack([inverted_dropout(acts, 0.3, gen) for _ in range(50)])
    assert (out == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert out.mean(0).div(acts).mean().item() == pytest.approx(1.0, abs=0.01)
    survivors = out[out != 0] / acts.expand_as(out)[out != 0]
    torch.testing.assert_close(survivors, torch.full_like(survivors, 1 / 0.7))
    assert inverted_dropout(acts, 0.0) is acts


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


def test_fve_and_l0_and_ce_recovered():
    torch.manual_seed(0)
    x = torch.randn(100, 8) + 5.0
    assert fraction_of_variance_explained(x, x) == pytest.approx(1.0)
    assert fraction_of_variance_explained(x, x.mean(0, keepdim=True).expand_as(x)) == pytest.approx(0.0, abs=1e-5)
    assert fraction_of_variance_explained(x, torch.zeros_like(x)) < -1  # centred: zero is worse than the mean
    acts = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    assert l0(acts) == 1.5
    assert ce_loss_recovered(ce_clean=2.0, ce_sae=2.0, ce_zero_ablation=6.0) == 1.0
    assert ce_loss_recovered(ce_clean=2.0, ce_sae=6.0, ce_zero_ablation=6.0) == 0.0
    assert ce_loss_recovered(ce_clean=2.0, ce_sae=3.0, ce_zero_ablation=6.0) == 0.75
