"""Attention diversity (docs/design.md §4.3): how differently the heads of a layer distribute their attention."""

from __future__ import annotations

import math

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
    # mean over pairs of JS = mean over pairs of H(mixture) − mean over heads of H(head): each head is in H − 1
    # of the H(H − 1)/2 pairs, so the heads' own entropies are computed once, not once per pair
    mixtures = _PairMixtureEntropy.apply(p) if p.requires_grad else _pair_mixture_entropy(p)[0]  # [B, Q]
    pairs_mean = (mixtures * weight).sum() / weight.sum().clamp_min(EPS) / (H * (H - 1) / 2)
    return pairs_mean - _weighted_mean(_entropy_bits(p), weight)


def _pair_mixture_entropy(p: torch.Tensor, with_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Σ over head pairs i < j of H((p_i + p_j) / 2) in bits, [B, H, Q, K] → [B, Q]; with_grad, also its gradient
    with respect to p. Pairs (h, h + d) are taken as shifted slices, one offset d at a time: no [B, pairs, Q, K]
    gather and no scatter-add in backward."""
    H = p.shape[1]
    total = p.new_zeros(p.shape[0], p.shape[2])
    grad = torch.zeros_like(p) if with_grad else None
    for d in range(1, H):
        m = (p[:, :H - d] + p[:, d:]) * 0.5
        log_m = torch.log2(m.clamp_min(EPS))
        total -= (m * log_m).sum((1, 3))
        if with_grad:  # ∂(−m log2 max(m, ε))/∂m = −(log2 max(m, ε) + [m ≥ ε] / ln 2); ∂m/∂p_i = ∂m/∂p_j = 1/2
            g = log_m.add_((m >= EPS).to(m) / math.log(2)).mul_(-0.5)
            grad[:, :H - d] += g
            grad[:, d:] += g
    return total, grad


class _PairMixtureEntropy(torch.autograd.Function):
    """_pair_mixture_entropy with its gradient computed in the same pass (the regulariser's path: 2–3× faster on
    CPU than autograd through the pairs, which keeps every pair's mixture for backward)."""

    @staticmethod
    def forward(ctx, p):
        total, grad = _pair_mixture_entropy(p, with_grad=True)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        (grad,) = ctx.saved_tensors
        return grad * grad_total[:, None, :, None]


def attention_entropy(pattern: torch.Tensor, valid: torch.Tensor | None = None, drop_sink: bool = False) -> torch.Tensor:
    """Mean entropy (bits) of each head's attention distribution, averaged over heads, queries and batch."""
    p, weight = _prepare(pattern, None, valid, drop_sink)
    return _weighted_mean(_entropy_bits(p), weight)
