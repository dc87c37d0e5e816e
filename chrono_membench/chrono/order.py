"""The training-order test (Kuditipudi et al. 2025, "palimpsestic" memorisation, arXiv 2510.19796): a model
fine-tuned on documents in some order is more likely to have memorised the ones it saw last, so the Spearman
correlation between each seen document's membership score and the step it was seen at reveals the order. It uses
every seen window at once, where the per-bucket contrasts (DiD, AUROC) use one bucket against the unseen ones.

Spearman's ρ (the Pearson correlation of ranks, ties averaged) and a two-sided permutation p-value, p = (1 +
#{|ρ*| ≥ |ρ|}) / (1 + permutations). What is permuted is the steps, not the windows: the windows trained in one
step share that step's learning rate, optimiser state and neighbours, so their scores are not exchangeable one by
one (simulated: with 30 % / 60 % of a window's variance shared within its step, shuffling single windows rejects
a true null 11 % / 13 % of the time at 5 %); each permutation gives every step's windows, together, another step's
position in time. Within each source when `stratum` is given (the sources' losses move unequally under fine-tuning
and their mix may change over time, which alone could correlate score and step): steps are permuted among that
source's windows, and ρ is the windows-weighted mean of the per-source ρ.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _rho(x_ranks: np.ndarray, y_ranks: np.ndarray) -> np.ndarray:
    """Pearson correlation between x_ranks [n] and every row of y_ranks [..., n]."""
    x = x_ranks - x_ranks.mean()
    y = y_ranks - y_ranks.mean(-1, keepdims=True)
    denominator = np.sqrt((x ** 2).sum() * (y ** 2).sum(-1))
    return np.where(denominator > 0, (y * x).sum(-1) / np.where(denominator > 0, denominator, 1), 0.0)


def order_correlation(score: np.ndarray, step: np.ndarray, stratum: np.ndarray | None = None,
                      permutations: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(ρ, permutation p) between score [n] and step [n]; nan, nan with fewer than 3 windows (per stratum, strata
    with fewer are left out) or no variation in step."""
    score, step = np.asarray(score, dtype=np.float64), np.asarray(step, dtype=np.float64)
    stratum = np.zeros(len(score), dtype=int) if stratum is None else np.asarray(stratum)
    rng = np.random.default_rng(seed)
    observed, null, weights = [], [], []
    for s in np.unique(stratum):
        keep = stratum == s
        if keep.sum() < 3 or np.ptp(step[keep]) == 0:
            continue
        x, y = rankdata(score[keep]), rankdata(step[keep])
        # the steps permuted among themselves (each step's windows move together), then ranked again
        steps, group = np.unique(step[keep], return_inverse=True)
        shuffled = rankdata(np.stack([rng.permutation(steps)[group] for _ in range(permutations)]), axis=-1)
        observed.append(_rho(x, y))
        null.append(_rho(x, shuffled))
        weights.append(keep.sum())
    if not weights:
        return float("nan"), float("nan")
    w = np.asarray(weights, dtype=np.float64) / sum(weights)
    rho = float(np.dot(w, observed))
    null_rho = (w[:, None] * np.stack(null)).sum(0)
    return rho, float((1 + (np.abs(null_rho) >= abs(rho) - 1e-12).sum()) / (1 + permutations))
