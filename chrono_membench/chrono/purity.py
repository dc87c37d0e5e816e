"""Temporal and source purity matrices with a permutation null (docs/design.md §4.4).

Inputs are per probe document: S[d, i] = summed activation of latent i over the document's scored tokens,
n[d] = its token count, and its column (a time bucket or "unseen"; or a source). Then
M[i, c] = Σ_{d∈c} S[d, i] / Σ_{d∈c} n[d] (mean activation per token), P[i, c] = M[i, c] / Σ_c M[i, c],
purity_i = max_c P[i, c], summarised as the mean normalised purity (purity − 1/C)/(1 − 1/C) over live latents.

Chance alone makes purity large (a latent that fires in a few documents is "pure" because each document sits in
one column), and how large depends on the number of columns and documents. The null: the same summary after
shuffling the document → column labels (column sizes kept), `permutations` times; excess = observed − null mean.
Stratified: the temporal purity within each source (labels shuffled within it), so a source latent cannot pose
as a time latent; the per-source values are averaged weighted by their documents.
"""

from __future__ import annotations

import torch


def mean_activation_matrix(doc_sums: torch.Tensor, doc_tokens: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """M [..., F, C] from doc_sums [D, F], doc_tokens [D] and column membership one_hot [..., D, C]."""
    sums = one_hot.transpose(-1, -2) @ doc_sums  # [..., C, F]
    counts = one_hot.transpose(-1, -2) @ doc_tokens[:, None]  # [..., C, 1]
    return (sums / counts.clamp_min(1)).transpose(-1, -2)


def purity_matrix(M: torch.Tensor) -> torch.Tensor:
    """Rows normalised to sum to 1; rows of dead latents stay 0."""
    total = M.sum(-1, keepdim=True)
    return torch.where(total > 0, M / total.clamp_min(1e-30), torch.zeros_like(M))


def normalised_purity(P: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """Mean over live latents of (max_c P − 1/C)/(1 − 1/C): 0 = spread evenly over the C columns, 1 = one
    column only. P [..., F, C], live [F] → [...]."""
    C = P.shape[-1]
    purity = (P.max(-1).values - 1 / C) / (1 - 1 / C)
    return (purity * live).sum(-1) / live.sum().clamp_min(1)


def purity_with_null(doc_sums: torch.Tensor, doc_tokens: torch.Tensor, column: torch.Tensor, permutations: int,
                     generator: torch.Generator, chunk: int = 16) -> dict | None:
    """Observed summary, its permutation null, the excess and the one-sided permutation p-value, over the
    columns that have documents (column [D] holds arbitrary labels), with the purity matrix P [F, C] and its
    column labels. None when fewer than 2 columns have documents or no latent fires (purity is then undefined)."""
    labels, column = torch.unique(column, return_inverse=True)
    C = len(labels)
    doc_sums, doc_tokens = doc_sums.float(), doc_tokens.float()
    live = doc_sums.sum(0) > 0  # the same under every permutation: total mass does not move
    if C < 2 or not live.any():
        return None
    one_hot = torch.nn.functional.one_hot(column, C).to(doc_sums)
    P = purity_matrix(mean_activation_matrix(doc_sums, doc_tokens, one_hot))
    observed = normalised_purity(P, live).item()
    null = []
    for start in range(0, permutations, chunk):
        n = min(chunk, permutations - start)
        order = torch.stack([torch.randperm(len(column), generator=generator) for _ in range(n)]).to(column.device)
        shuffled = one_hot[order]  # [n, D, C]: each document gets another's label; column sizes kept
        null.append(normalised_purity(purity_matrix(mean_activation_matrix(doc_sums, doc_tokens, shuffled)), live))
    null = torch.cat(null)
    null_mean = null.mean().item()
    p_value = (1 + (null >= observed).sum().item()) / (1 + permutations)  # the permutation test's one-sided p
    return {"observed": observed, "null": null_mean, "excess": observed - null_mean, "p_value": p_value,
            "null_sd": null.std().item(), "columns": C,
            "gt50": (P.max(-1).values[live] > 0.5).float().mean().item(), "matrix": P, "labels": labels}


def stratified_purity(doc_sums: torch.Tensor, doc_tokens: torch.Tensor, column: torch.Tensor, stratum: torch.Tensor,
                      permutations: int, generator: torch.Generator) -> dict[str, float] | None:
    """purity_with_null within each stratum (source), averaged weighted by the stratum's documents (the null's SD
    combined as for a weighted sum of independent parts); strata with fewer than 2 columns are left out. None if
    none is left."""
    parts = []
    for s in torch.unique(stratum):
        keep = stratum == s
        got = purity_with_null(doc_sums[keep], doc_tokens[keep], column[keep], permutations, generator)
        if got is not None:
            parts.append((int(keep.sum()), got))
    if not parts:
        return None
    total = sum(n for n, _ in parts)
    out = {k: sum(n * got[k] for n, got in parts) / total for k in ("observed", "null", "excess")}
    out["null_sd"] = sum((n / total * got["null_sd"]) ** 2 for n, got in parts) ** 0.5  # strata shuffled independently
    return out
