"""Latents linked to memorisation: how well each latent's activation on a probe window's prefix separates the
memorised windows from the others of the same time bucket (docs/design.md §4.5).

Per latent, the within-bucket AUROC: Σ_b U_b / Σ_b n1_b·n0_b, with U_b the Mann–Whitney U of bucket b (ties half,
through midranks), so a latent that merely tracks the bucket (and buckets differ in memorisation) scores 0.5.
The most separating of thousands of latents is far above 0.5 by chance alone, so the null is the same maximum
after shuffling the memorised labels within each bucket: `auc_max` is read against `auc_max_null` and its p-value.
Ranks do not change under relabelling, so each permutation is one matrix product.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata


def within_bucket_auroc(x: np.ndarray, labels: np.ndarray, bucket: np.ndarray, permutations: int = 0,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x [W, F] latent scores, labels [W] bool (memorised), bucket [W] → (AUROC per latent [F], the max over
    latents under each of `permutations` within-bucket label shuffles [permutations]). Buckets whose windows
    are all one label are left out; all-NaN when none is left."""
    rng = np.random.default_rng(seed)
    u = np.zeros(x.shape[1])
    u_null = np.zeros((permutations, x.shape[1]))
    pairs = 0
    for b in np.unique(bucket):
        rows = bucket == b
        y = labels[rows]
        n1, n0 = int(y.sum()), int((~y).sum())
        if n1 == 0 or n0 == 0:
            continue
        ranks = rankdata(x[rows], axis=0)  # midranks: ties (most latents are 0 on most windows) count half
        u += ranks[y].sum(0) - n1 * (n1 + 1) / 2
        shuffled = np.stack([rng.permutation(y) for _ in range(permutations)]) if permutations else np.zeros((0, len(y)))
        u_null += shuffled.astype(np.float64) @ ranks - n1 * (n1 + 1) / 2
        pairs += n1 * n0
    if pairs == 0:
        return np.full(x.shape[1], np.nan), np.full(permutations, np.nan)
    return u / pairs, (u_null / pairs).max(1)


def memorisation_latents(prefix_acts: torch.Tensor, memorised: np.ndarray, bucket: np.ndarray, permutations: int,
                         seed: int = 0, top: int = 20) -> dict | None:
    """Summary and table for one SAE: auc_max, its permutation null (mean) and p-value, and the `top` latents by
    AUROC as [(latent, auroc)]. None when no bucket has both memorised and other windows."""
    auc, null = within_bucket_auroc(prefix_acts.double().cpu().numpy(), memorised, bucket, permutations, seed)
    if np.isnan(auc).all():
        return None
    best = np.argsort(-auc)[:top]
    auc_max = float(auc[best[0]])
    return {"auc_max": auc_max, "auc_max_null": float(null.mean()),
            "auc_max_p": float((1 + (null >= auc_max).sum()) / (1 + permutations)),
            "table": [(int(i), float(auc[i])) for i in best]}
