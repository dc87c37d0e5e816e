"""Feature stability read from activations, not from the decoder weights the alignment loss penalises.

    activation_stability  per latent, the Pearson correlation between its activations on the same validation
                          tokens at two consecutive evals (the SAE and the LM of each), averaged over the latents
                          that fire on at least `min_count` of those tokens at both. 1: the latent still fires on
                          the same tokens with the same strength; ≈ 0: it now means something else.

The tokens are the SAE eval panel's (the first sae.eval_tokens validation tokens, the same at every eval);
activations are kept sparse (token position, latent, value), so nothing of size tokens × d_sae is held. Decoder
drift (hungarian_mcs) can stay high while activations move (the encoder and the LM change too), and alignment is
meant to keep what a latent responds to, not only the direction it writes; the `frozen_lm` arm gives the
floor this reads when only the SAE trains.
"""

from __future__ import annotations

import torch


def activation_stability(before: torch.Tensor, after: torch.Tensor, n_positions: int, d_sae: int,
                         min_count: int = 5) -> float:
    """before, after: [3, nnz] (position, latent, value) of the nonzero latent activations at two evals over the
    same n_positions tokens → the mean per-latent Pearson correlation (nan if no latent qualifies)."""
    def sums(events):
        latent, value = events[1].long(), events[2].double()
        total = torch.zeros(d_sae, dtype=torch.float64).index_add_(0, latent, value)
        squares = torch.zeros(d_sae, dtype=torch.float64).index_add_(0, latent, value * value)
        count = torch.zeros(d_sae, dtype=torch.float64).index_add_(0, latent, torch.ones_like(value))
        return total, squares, count, events[0].long() * d_sae + latent, value

    sa, qa, ca, key_a, va = sums(before)
    sb, qb, cb, key_b, vb = sums(after)
    # the products need both activations at the same (position, latent): match the keys by sorting
    order_b = key_b.argsort()
    where = torch.searchsorted(key_b[order_b], key_a).clamp(max=max(len(key_b) - 1, 0))
    both = (key_b[order_b][where] == key_a) if len(key_b) else torch.zeros_like(key_a, dtype=torch.bool)
    cross = torch.zeros(d_sae, dtype=torch.float64).index_add_(
        0, key_a[both] % d_sae, va[both] * vb[order_b][where][both])
    n = float(n_positions)
    covariance = cross / n - (sa / n) * (sb / n)
    spread = (qa / n - (sa / n) ** 2).clamp(min=0) * (qb / n - (sb / n) ** 2).clamp(min=0)
    ok = (ca >= min_count) & (cb >= min_count) & (spread > 0)
    return float((covariance[ok] / spread[ok].sqrt()).mean()) if bool(ok.any()) else float("nan")
