"""Feature alignment and decoder drift (DESIGN.md §4.2).

Decoder rows are features: `W_dec` is [d_sae, d_in] (sae-lens layout), row i is latent i's direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def unit_rows(W_dec: torch.Tensor) -> torch.Tensor:
    return F.normalize(W_dec, dim=-1)


def alignment_loss(W_dec: torch.Tensor, anchor_unit: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """L_align = mean over latents alive at the anchor of (1 − cos(d_i, d_i^(k))). Differentiable in W_dec."""
    if not alive.any():
        return W_dec.sum() * 0.0
    cos = (unit_rows(W_dec[alive]) * anchor_unit[alive]).sum(-1)
    return (1.0 - cos).mean()


@torch.no_grad()
def decoder_drift(current: torch.Tensor, previous: torch.Tensor, chunk: int = 4096) -> dict[str, float]:
    """Between two decoders [F, D]: MMCS = mean over i of max_j cos(d_i, d'_j), and the fraction of latents
    whose best match is themselves. Chunked so an 18k × 18k cosine matrix never sits in memory whole."""
    a, b = unit_rows(current.float()), unit_rows(previous.float())
    best, self_match = [], []
    for start in range(0, len(a), chunk):
        cos = a[start:start + chunk] @ b.T
        value, index = cos.max(dim=1)
        best.append(value)
        self_match.append(index == torch.arange(start, start + len(cos), device=cos.device))
    return {"mmcs": torch.cat(best).mean().item(), "self_match_frac": torch.cat(self_match).float().mean().item()}


@torch.no_grad()
def hungarian_similarity(current: torch.Tensor, previous: torch.Tensor) -> float:
    """Mean cosine under the best one-to-one matching (scipy's linear_sum_assignment): the drift measure for
    runs without alignment, where latent i need not stay latent i."""
    from scipy.optimize import linear_sum_assignment

    cos = (unit_rows(current.float()) @ unit_rows(previous.float()).T).cpu().numpy()
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return float(cos[rows, cols].mean())
