"""Temporal and source purity matrices (DESIGN.md §4.4).

M[i, c] = mean activation of latent i over the probe tokens of column c (a time bucket, "unseen", or a
source). P[i, c] = M[i, c] / Σ_c M[i, c]; purity_i = max_c P[i, c]. A latent is live when Σ_c M[i, c] > 0.
"""

from __future__ import annotations

import torch


def column_sums(acts: torch.Tensor, column: torch.Tensor, n_columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """acts [N, F] (one row per probe token), column [N] in [0, n_columns) → (sums [C, F], token counts [C]).
    Sums add up over chunks, so a big probe set never needs all its activations in memory at once."""
    sums = torch.zeros(n_columns, acts.shape[1], device=acts.device).index_add_(0, column, acts.float())
    return sums, torch.bincount(column, minlength=n_columns).to(sums)


def mean_activation_matrix(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """M [F, C] from column_sums (added up over chunks)."""
    return (sums / counts.clamp_min(1)[:, None]).T


def purity_matrix(M: torch.Tensor) -> torch.Tensor:
    """Rows normalised to sum to 1; rows of dead latents stay 0."""
    total = M.sum(1, keepdim=True)
    return torch.where(total > 0, M / total.clamp_min(1e-30), torch.zeros_like(M))


def purity_summary(P: torch.Tensor) -> dict[str, float]:
    """Mean normalised purity (purity − 1/C)/(1 − 1/C) over live latents (0 = spread evenly over the C
    columns, 1 = fires on one column only), and the fraction of live latents with purity > 0.5."""
    live = P.sum(1) > 0
    C = P.shape[1]
    if not live.any() or C < 2:
        return {"mean_normalised": float("nan"), "frac_gt50": float("nan")}
    purity = P[live].max(1).values
    return {"mean_normalised": ((purity - 1 / C) / (1 - 1 / C)).mean().item(),
            "frac_gt50": (purity > 0.5).float().mean().item()}


def share_normalised(M: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """Divide each column by its share of training tokens before normalising, so a latent does not look
    source-pure merely because its source dominates the mixture."""
    return purity_matrix(M / share.clamp_min(1e-12)[None, :])
