"""Memorisation probes (DESIGN.md §4.5): greedy extraction, per-token match, loss, canary exposure."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Logits = Callable[[torch.Tensor], torch.Tensor]  # tokens [B, T] → logits [B, T, V]
Generate = Callable[[torch.Tensor, int], torch.Tensor]  # (prefix [B, P], n) → greedy continuation [B, n]


@torch.no_grad()
def greedy_continuation(logits_fn: Logits, prefix: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Greedy-decode n_tokens after prefix [B, P] with full forwards (the reference; the trainer passes the
    bridge's KV-cached generate, which gives the same tokens ten times faster)."""
    tokens = prefix
    for _ in range(n_tokens):
        next_token = logits_fn(tokens)[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, next_token], dim=1)
    return tokens[:, prefix.shape[1]:]


@torch.no_grad()
def extraction_scores(logits_fn: Logits, docs: torch.Tensor, prefix_len: int = 32, n_tokens: int = 32,
                      generate_fn: Generate | None = None) -> dict:
    """docs [B, ≥ prefix_len + n_tokens]: per document, whether the greedy continuation of its first prefix_len
    tokens reproduces the next n_tokens exactly (32-extractable), the fraction of matching tokens, and the
    teacher-forced loss on those n_tokens."""
    window = docs[:, :prefix_len + n_tokens]
    target = window[:, prefix_len:]
    generate_fn = generate_fn or (lambda prefix, n: greedy_continuation(logits_fn, prefix, n))
    generated = generate_fn(window[:, :prefix_len], n_tokens)
    match = generated == target
    logits = logits_fn(window)[:, prefix_len - 1:-1]
    loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="none").view_as(target)
    return {"exact_match": match.all(1).float(), "token_match": match.float().mean(1), "loss": loss.mean(1)}


@torch.no_grad()
def sequence_nll(logits_fn: Logits, prefix: torch.Tensor, candidates: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Summed NLL of each candidate [N, L] after a shared prefix [P] → [N]."""
    out = []
    for start in range(0, len(candidates), batch):
        cand = candidates[start:start + batch]
        tokens = torch.cat([prefix.expand(len(cand), -1), cand], dim=1)
        logits = logits_fn(tokens)[:, prefix.numel() - 1:-1]
        nll = F.cross_entropy(logits.flatten(0, 1).float(), cand.flatten(), reduction="none").view_as(cand)
        out.append(nll.sum(1))
    return torch.cat(out)


def exposure(true_nll: float, other_nll: torch.Tensor) -> float:
    """log2(#candidates) − log2(rank of the true secret), rank 1 = lowest NLL among true + others
    (Carlini et al., The Secret Sharer). Ties count against the secret."""
    rank = 1 + int((other_nll <= true_nll).sum())
    return math.log2(len(other_nll) + 1) - math.log2(rank)
