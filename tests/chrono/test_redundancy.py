import numpy as np
import pytest
import torch

from chrono_membench.chrono.redundancy import cofiring_max_phi, cofiring_null, decoder_redundancy


def test_decoder_redundancy_counts_near_duplicate_pairs_as_brute_force_does():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(300, 64, generator=g)
    rows[10] = rows[3] + 0.1 * torch.randn(64, generator=g)  # two near-duplicates of row 3
    rows[20] = rows[3] + 0.1 * torch.randn(64, generator=g)
    unit = rows / rows.norm(dim=-1, keepdim=True)
    sims = (unit @ unit.T).numpy()
    pairs = np.triu_indices(300, 1)
    want = float((sims[pairs] > 0.8).mean())
    assert want == pytest.approx(3 / (300 * 299 / 2))  # (3,10), (3,20), (10,20)
    assert decoder_redundancy(unit, chunk=64) == pytest.approx(want)  # chunking changes nothing
    assert decoder_redundancy(unit[:1]) != decoder_redundancy(unit[:1])  # one latent: no pair (nan)


def test_cofiring_max_phi_matches_the_phi_coefficient_computed_densely():
    g = torch.Generator().manual_seed(1)
    n, f = 400, 50
    fires = torch.rand(n, f, generator=g) < 0.1
    fires[:, 7] = fires[:, 2]  # a partner that always fires with latent 2: phi = 1 for both
    fires[:, 40] = False  # never fires: not counted
    rows, cols = fires.nonzero(as_tuple=True)
    x = fires.double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):  # the never-firing latent: nan, and not counted below
        phi = np.corrcoef(x.T)  # the phi coefficient is Pearson's r of two binary indicators
    np.fill_diagonal(phi, -np.inf)
    counts = x.sum(0)
    ok = (counts >= 5) & (counts <= n - 5)
    best = np.maximum(np.where(ok[None, :], phi, -np.inf).max(1), 0)
    want = best[ok].mean()
    assert cofiring_max_phi(rows, cols, n, f) == pytest.approx(want, rel=1e-9)
    independent = torch.rand(n, f, generator=g) < 0.1
    chance = cofiring_max_phi(*independent.nonzero(as_tuple=True), n, f)
    paired = torch.cat([independent[:, :25], independent[:, :25]], dim=1)  # every latent has a twin
    assert chance < 0.2 and cofiring_max_phi(*paired.nonzero(as_tuple=True), n, f) == pytest.approx(1.0)


def test_the_cofiring_null_keeps_densities_and_removes_co_firing():
    """Independent latents score far above 0 by chance (the max over many pairs); the shuffled-token null reads the
    same, so their excess is ≈ 0; latents firing in pairs keep a large excess."""
    g = torch.Generator().manual_seed(0)
    n, f = 1024, 400
    independent = torch.rand(n, f, generator=g) < 0.02
    chance, null = cofiring_max_phi(*independent.nonzero(as_tuple=True), n, f), cofiring_null(
        *independent.nonzero(as_tuple=True), n, f)
    assert chance > 0.1 and abs(chance - null) < 0.02
    shuffled = torch.zeros_like(independent)
    rows, cols = independent.nonzero(as_tuple=True)
    perm = torch.argsort(torch.rand(f, n, generator=torch.Generator().manual_seed(0)), dim=1)
    shuffled[perm[cols, rows], cols] = True
    assert (shuffled.sum(0) == independent.sum(0)).all()  # the null keeps every latent's density
    paired = independent.clone()
    paired[:, 1::2] = paired[:, ::2]  # latent 2i + 1 fires exactly with latent 2i
    rows, cols = paired.nonzero(as_tuple=True)
    assert cofiring_max_phi(rows, cols, n, f) - cofiring_null(rows, cols, n, f) > 0.7
