"""Temporal dropout (docs/design.md §4.1): inverted dropout on SAE latents with a rate that follows training time."""

from __future__ import annotations

import math

import torch


def temporal_dropout_rate(step: int, max_steps: int, p_max: float) -> float:
    """p(t) = p_max · ½(1 + cos(π t / T)): p_max at the start, 0 at the end of training."""
    return p_max * 0.5 * (1.0 + math.cos(math.pi * min(step, max_steps) / max_steps))


def inverted_dropout(acts: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each entry with probability p and scale survivors by 1/(1-p), so E[output] = acts."""
    if p <= 0:
        return acts
    keep = torch.rand(acts.shape, generator=generator, device=acts.device) >= p
    return acts * keep / (1.0 - p)
