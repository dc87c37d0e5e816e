"""What temporal dropout is for (docs/design.md §4.1: discouraging latents that only work together), measured directly:

    decoder_redundancy  the fraction of pairs of live latents whose unit decoder rows have cosine > 0.8: latents
                        that write (nearly) the same direction. 0 for random directions in d ≥ 100.
    cofiring_max_phi    per latent, its strongest firing correlation with any other latent (the phi coefficient
                        of the two binary firing indicators over the same tokens; 0 if none is positive),
                        averaged over the latents that fire on at least `min_count` and at most n − min_count of
                        the tokens. Latents that fire
                        independently score about 1 / √n_tokens; a latent with a partner it always fires with
                        scores 1.

Neither is a published SAEBench metric (SAEBench's absorption and feature-splitting need labelled probing data);
they are the direct readings of "co-adaptation" the dropout ablation asks about, with these definitions.
"""

from __future__ import annotations

import warnings

import torch

REDUNDANT_COSINE = 0.8


def decoder_redundancy(unit_rows: torch.Tensor, threshold: float = REDUNDANT_COSINE, chunk: int = 2048) -> float:
    """unit_rows [F, D] (unit norm, the live latents) → fraction of the F(F−1)/2 pairs with cosine > threshold."""
    n = len(unit_rows)
    if n < 2:
        return float("nan")
    above = 0
    for start in range(0, n, chunk):  # [chunk, F] at a time: F² never held at once
        sims = unit_rows[start:start + chunk] @ unit_rows.T
        above += int((sims > threshold).sum()) - int((sims.diagonal(start) > threshold).sum())
    return above / (n * (n - 1))  # each pair counted twice, from both rows


def cofiring_max_phi(rows: torch.Tensor, cols: torch.Tensor, n_tokens: int, d_sae: int, min_count: int = 5) -> float:
    """Firing events (token index, latent index) — the nonzero entries of the latents [n_tokens, d_sae] — → the
    mean over qualifying latents of max_j phi(i, j). Co-firing counts come from a sparse product (each token has
    only ~k active latents), so the d_sae² matrix is never dense."""
    if len(rows) == 0:
        return float("nan")
    fires = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(len(rows), dtype=torch.float64),
                                    (n_tokens, d_sae), check_invariants=True).coalesce()
    count = torch.zeros(d_sae, dtype=torch.float64).index_add_(0, fires.indices()[1], fires.values())
    with warnings.catch_warnings():  # torch's note that sparse support is in beta, once per call: not news
        warnings.simplefilter("ignore", UserWarning)
        together = torch.sparse.mm(fires.t().coalesce(), fires).coalesce()
    i, j = together.indices()
    c_ij = together.values()
    off = i != j
    i, j, c_ij = i[off], j[off], c_ij[off]
    n = float(n_tokens)
    spread = count * (n - count)  # n² × the variance of the indicator
    ok = (count >= min_count) & (count <= n - min_count)
    pair_ok = ok[i] & ok[j]
    i, j, c_ij = i[pair_ok], j[pair_ok], c_ij[pair_ok]
    phi = (n * c_ij - count[i] * count[j]) / (spread[i] * spread[j]).sqrt()
    best = torch.zeros(d_sae, dtype=torch.float64).scatter_reduce_(0, i, phi, reduce="amax", include_self=True)
    return float(best[ok].mean()) if bool(ok.any()) else float("nan")


def cofiring_null(rows: torch.Tensor, cols: torch.Tensor, n_tokens: int, d_sae: int, seed: int = 0,
                  min_count: int = 5) -> float:
    """cofiring_max_phi with each latent's firing moved to tokens drawn at random (its own random permutation of the
    tokens): the same densities, no co-firing but chance's. A max over thousands of pairs is far from 0 by chance
    (independent latents at the demo's densities score ≈ 0.22), so the metric is read as its excess over this."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.argsort(torch.rand(d_sae, n_tokens, generator=g), dim=1)  # latent c's token t → perm[c, t]
    return cofiring_max_phi(perm[cols, rows], cols, n_tokens, d_sae, min_count)
