import numpy as np
import pytest
import torch

from chrono_membench.chrono.stability import activation_stability


def sparse(dense: torch.Tensor) -> torch.Tensor:
    pos, lat = dense.nonzero(as_tuple=True)
    return torch.stack([pos.double(), lat.double(), dense[pos, lat].double()])


def test_activation_stability_is_the_mean_per_latent_correlation_computed_densely():
    g = torch.Generator().manual_seed(0)
    n, f = 300, 40
    a = torch.relu(torch.randn(n, f, generator=g) - 1.0)  # sparse, non-negative, like SAE latents
    b = torch.relu(a + 0.3 * torch.randn(n, f, generator=g) - 0.1)  # the same latents, perturbed
    b[:, 5] = torch.relu(torch.randn(n, generator=g) - 1.0)  # latent 5 now means something else
    b[:, 9] = 0.0  # latent 9 no longer fires: not counted
    A, B = a.numpy(), b.numpy()
    counts_ok = ((A != 0).sum(0) >= 5) & ((B != 0).sum(0) >= 5)
    want = np.mean([np.corrcoef(A[:, i], B[:, i])[0, 1] for i in range(f) if counts_ok[i]])
    assert activation_stability(sparse(a), sparse(b), n, f) == pytest.approx(want, rel=1e-9)
    assert activation_stability(sparse(a), sparse(a), n, f) == pytest.approx(1.0)
    shuffled = a[torch.randperm(n, generator=g)]  # the same firing rates on other tokens: ≈ 0
    assert abs(activation_stability(sparse(a), sparse(shuffled), n, f)) < 0.1
