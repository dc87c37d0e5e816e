"""SAE quality metrics (issue: SAE metrics): FVE, L0, CE-loss recovered."""

from __future__ import annotations

import torch


def fraction_of_variance_explained(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """1 − E‖x − x̂‖² / E‖x − E x‖²  (centred: a constant reconstruction at the mean scores 0). x: [N, D]."""
    residual = (x - x_hat).pow(2).sum(-1).mean()
    variance = (x - x.mean(0, keepdim=True)).pow(2).sum(-1).mean()
    return (1.0 - residual / variance).item()


def l0(feature_acts: torch.Tensor) -> float:
    """Mean number of non-zero latents per token. feature_acts: [N, F]."""
    return (feature_acts != 0).float().sum(-1).mean().item()


def ce_loss_recovered(ce_clean: float, ce_sae: float, ce_zero_ablation: float) -> float:
    """(CE_zero − CE_SAE) / (CE_zero − CE_clean): 1 when splicing the SAE in costs nothing, 0 when it is
    as bad as zeroing the activation."""
    return (ce_zero_ablation - ce_sae) / (ce_zero_ablation - ce_clean)
