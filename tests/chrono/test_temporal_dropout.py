"""The temporal-dropout schedule and inverted dropout (docs/design.md §4.1)."""

import math

import pytest
import torch

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
