"""SAE quality metrics (FVE, L0, CE recovered) on hand-made cases."""


import pytest
import torch

from chrono_membench.chrono.sae_metrics import ce_loss_recovered, fraction_of_variance_explained, l0




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
