"""Attention diversity and entropy on hand-made patterns (DESIGN.md §4.3)."""


import pytest
import torch

from chrono_membench.chrono.attention import attention_entropy, head_js_diversity




def test_js_diversity_identical_heads_zero_disjoint_one_hot_one():
    p = torch.softmax(torch.randn(2, 1, 5, 7), -1)
    assert head_js_diversity(p.expand(2, 4, 5, 7)).item() == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.zeros(1, 3, 1, 3)
    one_hot[0, 0, 0, 0] = one_hot[0, 1, 0, 1] = one_hot[0, 2, 0, 2] = 1.0
    assert head_js_diversity(one_hot).item() == pytest.approx(1.0, abs=1e-6)
    uniform = torch.full((1, 2, 3, 8), 1 / 8)
    assert attention_entropy(uniform).item() == pytest.approx(3.0)  # bits
    assert head_js_diversity(one_hot, torch.tensor([0])).item() == pytest.approx(1.0, abs=1e-6)

