"""Attention diversity (DESIGN.md §4.3): how differently the heads of a layer distribute their attention."""

from __future__ import annotations

import torch

EPS = 1e-12


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log2(p.clamp_min(EPS))).sum(-1)


def _prepare(pattern: torch.Tensor, query_index: torch.Tensor | None, valid: torch.Tensor | None,
             drop_sink: bool, rows_taken: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Patterns [B, H, Q, K] → (rows renormalised over the keys kept, weight [B, Q] of each query). Padded keys
    (valid [B, T] False) get no mass and padded queries no weight; with drop_sink, key 0 (where a large share of
    the mass sits in most trained LMs) is left out, and query 0, which can attend only to it. rows_taken: the
    pattern holds only the rows of query_index already (attention_rows.capture), in that order."""
    p = pattern.float()
    B, _, Q, K = p.shape
    queries = torch.arange(Q, device=p.device) if query_index is None else query_index.to(p.device)
    if not rows_taken:
        p = p[:, :, queries]
    weight = torch.ones(B, len(queries), device=p.device)
    if valid is not None:
        p = p * valid[:, None, None, :K].to(p)
        weight = weight * valid[:, queries].to(p)
    if drop_sink:
        p = p[..., 1:]
        weight = weight * (queries != 0).to(p)
    total = p.sum(-1, keepdim=True)
    weight = weight * (total > EPS).all(1).squeeze(-1).to(p)  # a query with nothing left to attend to: skipped
    return p / total.clamp_min(EPS), weight


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """values [B, X, Q] averaged over X, then over queries by weight [B, Q]."""
    return (values.mean(1) * weight).sum() / weight.sum().clamp_min(EPS)


def head_js_diversity(pattern: torch.Tensor, query_index: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                      drop_sink: bool = False, rows_taken: bool = False) -> torch.Tensor:
    """Mean over head pairs of the Jensen–Shannon divergence (base 2, in [0, 1]) between their attention
    distributions, averaged over query positions and batch. pattern: [B, H, Q, K] (rows sum to 1).
    Differentiable, so it can serve as a regulariser; `query_index` picks a subset of query positions (with
    rows_taken, the pattern's rows are those positions already)."""
    p, weight = _prepare(pattern, query_index, valid, drop_sink, rows_taken)
    H = p.shape[1]
    i, j = torch.triu_indices(H, H, offset=1, device=p.device)
    # mean over pairs of JS = mean over pairs of H(mixture) − mean over heads of H(head): each head is in H − 1
    # of the H(H − 1)/2 pairs, so the heads' own entropies are computed once, not once per pair
    mixture = _entropy_bits((p[:, i] + p[:, j]) / 2)  # [B, pairs, Q]
    return _weighted_mean(mixture, weight) - _weighted_mean(_entropy_bits(p), weight)


def attention_entropy(pattern: torch.Tensor, valid: torch.Tensor | None = None, drop_sink: bool = False) -> torch.Tensor:
    """Mean entropy (bits) of each head's attention distribution, averaged over heads, queries and batch."""
    p, weight = _prepare(pattern, None, valid, drop_sink)
    return _weighted_mean(_entropy_bits(p), weight)
