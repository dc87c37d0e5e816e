"""Attention diversity (DESIGN.md §4.3): how differently the heads of a layer distribute their attention."""

from __future__ import annotations

import torch

EPS = 1e-12


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log2(p.clamp_min(EPS))).sum(-1)


def head_js_diversity(pattern: torch.Tensor, query_index: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over head pairs of the Jensen–Shannon divergence (base 2, in [0, 1]) between their attention
    distributions, averaged over query positions and batch. pattern: [B, H, Q, K] (rows sum to 1).
    Differentiable, so it can serve as a regulariser; `query_index` picks a subset of query positions."""
    if query_index is not None:
        pattern = pattern[:, :, query_index]
    p = pattern.float()
    H = p.shape[1]
    i, j = torch.triu_indices(H, H, offset=1, device=p.device)
    a, b = p[:, i], p[:, j]  # [B, pairs, Q, K]
    js = _entropy_bits((a + b) / 2) - (_entropy_bits(a) + _entropy_bits(b)) / 2
    return js.mean()


def attention_entropy(pattern: torch.Tensor) -> torch.Tensor:
    """Mean entropy (bits) of each head's attention distribution, averaged over heads, queries and batch."""
    return _entropy_bits(pattern.float()).mean()
