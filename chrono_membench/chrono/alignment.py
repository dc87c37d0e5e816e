"""Feature alignment and decoder drift (docs/design.md §4.2).

Decoder rows are features: `W_dec` is [d_sae, d_in] (sae-lens layout), row i is latent i's direction.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DENSE_MATCHING_MAX = 8192  # above this many rows, the exact O(F³) assignment gives way to a sparse one
CANDIDATES = 32  # sparse matching: the best this-many cosines per row are the candidate edges


def unit_rows(W_dec: torch.Tensor) -> torch.Tensor:
    return F.normalize(W_dec, dim=-1)


def decoding_rows(W_dec: torch.Tensor, rescaled: bool) -> torch.Tensor:
    """The directions an SAE's latents actually decode along: sae-lens's decode with rescale_acts_by_decoder_norm
    (its TopK default) divides each latent by its row's norm, so x̂ = Σ a_i d_i/‖d_i‖ and only the unit rows
    matter; otherwise x̂ = Σ a_i d_i, the raw rows."""
    return unit_rows(W_dec) if rescaled else W_dec


def alignment_loss(W_dec: torch.Tensor, anchor: torch.Tensor, alive: torch.Tensor,
                   act_sq_mean: torch.Tensor) -> torch.Tensor:
    """L_align = Σ over latents alive at the anchor of E[a_i²]·‖d_i − d_i^(k)‖²: the change of the
    reconstruction x̂ = Σ a_i d_i + b that the decoder's drift causes (exact when latents do not co-fire), in the
    units of sae-lens's MSE (summed over d_in, mean over tokens). W_dec and anchor are the decoding rows
    (decoding_rows: unit rows where the SAE rescales by decoder norm, so a rescaled row that decodes the same
    costs nothing). act_sq_mean [F]: E[a_i²] on this step's tokens (detached). Differentiable in W_dec."""
    drift = (W_dec - anchor).pow(2).sum(-1)
    return (act_sq_mean * drift * alive).sum()


@torch.no_grad()
def decoder_drift(current: torch.Tensor, previous: torch.Tensor, chunk: int = 4096) -> dict[str, float]:
    """Between two decoders [F, D] (the same latents, row for row): MMCS = mean over i of max_j cos(d_i, d'_j),
    and the fraction of latents whose best match is themselves. Chunked so an 18k × 18k cosine matrix never sits
    in memory whole."""
    if len(current) == 0:
        return {"mmcs": float("nan"), "self_match_frac": float("nan")}
    a, b = unit_rows(current.float()), unit_rows(previous.float())
    best, self_match = [], []
    for start in range(0, len(a), chunk):
        cos = a[start:start + chunk] @ b.T
        value, index = cos.max(dim=1)
        best.append(value)
        self_match.append(index == torch.arange(start, start + len(cos), device=cos.device))
    return {"mmcs": torch.cat(best).mean().item(), "self_match_frac": torch.cat(self_match).float().mean().item()}


@torch.no_grad()
def matched_similarity(current: torch.Tensor, previous: torch.Tensor, dense_max: int = DENSE_MATCHING_MAX,
                       candidates: int = CANDIDATES) -> float:
    """Mean cosine under the best one-to-one matching of the rows of two decoders (the Hungarian-matched MCS):
    latent i need not stay latent i. Exact (scipy's linear_sum_assignment) up to dense_max rows; above, a
    sparse matching over each row's best `candidates` cosines (scipy's min_weight_full_bipartite_matching)."""
    from scipy.optimize import linear_sum_assignment

    a, b = unit_rows(current.float()), unit_rows(previous.float())
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    if max(len(a), len(b)) <= dense_max:
        cos = (a @ b.T).cpu().numpy()
        rows, cols = linear_sum_assignment(cos, maximize=True)
        return float(cos[rows, cols].mean())
    return sparse_matched_similarity(a, b, candidates)


def sparse_matched_similarity(a: torch.Tensor, b: torch.Tensor, candidates: int, chunk: int = 2048) -> float:
    """The matching restricted to each row's and each column's top `candidates` cosines (plus the diagonal when
    both decoders have the same rows, which guarantees a full matching exists); wider if none exists."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    if len(a) > len(b):
        a, b = b, a
    k = min(candidates, len(b))
    while True:
        edges = [_top_edges(a, b, k, chunk), _top_edges(b, a, min(k, len(a)), chunk)[[1, 0, 2]]]
        if len(a) == len(b):
            edges.append(torch.stack([torch.arange(len(a)).double(), torch.arange(len(a)).double(),
                                      (a * b).sum(-1).double().cpu()]))
        r, c, cos = torch.cat(edges, dim=1).numpy()
        _, first = np.unique(r * len(b) + c, return_index=True)  # each edge once
        r, c, cos = r[first].astype(int), c[first].astype(int), cos[first]
        # weights 2 − cos ∈ [1, 3]: positive (scipy ignores explicit zeros); least total weight = most total cosine
        graph = csr_matrix((2.0 - cos, (r, c)), shape=(len(a), len(b)))
        try:
            rows, cols = min_weight_full_bipartite_matching(graph)
        except ValueError:  # no full matching among these candidates: widen them
            if k >= len(b):
                raise
            k = min(len(b), 4 * k)
            continue
        return float(np.mean(2.0 - np.asarray(graph[rows, cols]).ravel()))


def _top_edges(a: torch.Tensor, b: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """[3, len(a)·k] (row of a, column of b, cosine): each row of a with its k most similar rows of b."""
    out = []
    for start in range(0, len(a), chunk):
        top = (a[start:start + chunk] @ b.T).topk(k, dim=1)
        out.append(torch.stack([torch.arange(start, start + len(top.values)).repeat_interleave(k).double(),
                                top.indices.flatten().double().cpu(), top.values.flatten().double().cpu()]))
    return torch.cat(out, dim=1)
