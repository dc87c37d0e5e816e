"""Attention diversity and entropy on hand-made patterns (docs/design.md §4.3)."""


import math

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



def test_sink_excluded_and_padding_masked():
    # two heads that differ only in how much they put on key 0 (the sink); elsewhere the same shape
    rest = torch.tensor([0.5, 0.3, 0.2])
    a = torch.cat([torch.tensor([0.9]), 0.1 * rest])
    b = torch.cat([torch.tensor([0.1]), 0.9 * rest])
    pattern = torch.stack([a, b])[None, :, None, :].expand(1, 2, 4, 4).clone()  # [B, H, Q, K]
    assert head_js_diversity(pattern).item() > 0.3
    assert head_js_diversity(pattern, drop_sink=True).item() == pytest.approx(0.0, abs=1e-6)
    # a padded key gets no mass: two heads that differ only there agree once it is masked
    p = torch.full((1, 2, 3, 4), 0.25)
    p[0, 1] = torch.tensor([0.2, 0.2, 0.2, 0.4])
    valid = torch.tensor([[True, True, True, False]])
    assert head_js_diversity(p).item() > 0 and head_js_diversity(p, valid=valid).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_entropy(p[:, :1], valid=valid).item() == pytest.approx(math.log2(3))  # uniform over 3 real keys


def test_js_diversity_equals_scipys_jensen_shannon_over_every_head_pair():
    """On random rows (sampled queries taken or not, padding masked), the mean over head pairs of scipy's
    Jensen–Shannon divergence (base 2; scipy returns its square root), averaged over the weighted queries."""
    from scipy.spatial.distance import jensenshannon

    torch.manual_seed(0)
    B, H, T = 2, 4, 9
    pattern = torch.softmax(torch.randn(B, H, T, T) * 2, -1)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 7:] = False
    queries = torch.tensor([2, 5, 8])
    expected, weights = 0.0, 0.0
    for b in range(B):
        for q in queries.tolist():
            if not valid[b, q]:
                continue
            rows = (pattern[b, :, q] * valid[b]).double()
            rows = rows / rows.sum(-1, keepdim=True)
            pairs = [jensenshannon(rows[i], rows[j], base=2) ** 2 for i in range(H) for j in range(i + 1, H)]
            expected, weights = expected + sum(pairs) / len(pairs), weights + 1
    ours = head_js_diversity(pattern, queries, valid)
    assert ours.item() == pytest.approx(expected / weights, rel=1e-5)
    taken = head_js_diversity(pattern[:, :, queries], queries, valid, rows_taken=True)
    assert taken.item() == pytest.approx(ours.item(), rel=1e-6)


def test_js_diversity_gradient_equals_autograd_through_every_pair():
    """The regulariser's gradient (computed in the forward pass, chrono/attention._PairMixtureEntropy) equals
    autograd's through the plain definition — every head pair's mixture gathered, entropies clamped as ours — on
    causal rows with exact zeros, padding and the sink dropped; and the value is the one without a gradient.
    (The metric computes in float32: tolerances are float32's.)"""
    from chrono_membench.chrono.attention import EPS, _prepare

    def plain(pattern, queries, valid, drop_sink):
        p, weight = _prepare(pattern, queries, valid, drop_sink)
        i, j = torch.triu_indices(p.shape[1], p.shape[1], offset=1)
        entropy = lambda x: -(x * torch.log2(x.clamp_min(EPS))).sum(-1)  # noqa: E731
        mean = lambda v: (v.mean(1) * weight).sum() / weight.sum()  # noqa: E731
        return mean(entropy((p[:, i] + p[:, j]) / 2)) - mean(entropy(p))

    torch.manual_seed(0)
    B, H, T = 2, 5, 12
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    logits = (torch.randn(B, H, T, T) * 3).masked_fill(~causal, float("-inf")).double()
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, 10:] = False
    queries = torch.tensor([0, 1, 4, 7, 11])
    for drop_sink in (False, True):
        grads = []
        for f in (head_js_diversity, plain):
            x = logits.clone().requires_grad_(True)
            value = f(torch.softmax(x, -1), queries, valid, drop_sink=drop_sink)
            value.backward()
            grads.append((value.item(), x.grad))
        (ours, g_ours), (ref, g_ref) = grads
        assert ours == pytest.approx(ref, rel=1e-6) and g_ref.abs().max() > 1e-3
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-6 * g_ref.abs().max().item())
        with torch.no_grad():
            no_grad = head_js_diversity(torch.softmax(logits, -1), queries, valid, drop_sink).item()
        assert no_grad == pytest.approx(ref, rel=1e-6)
