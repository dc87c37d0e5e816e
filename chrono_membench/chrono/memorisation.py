"""Memorisation probes (docs/design.md §4.5): greedy extraction in the training context (Pythia), per-window
membership scores (MIMIR), canary exposure (Carlini et al.): rank-based among random candidates, extrapolated by a
skew-normal model of their tail, and sampled — the secret's rank among all secrets, by importance sampling from the
model's own tempered distributions over the secret alphabet, with no assumed tail."""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext

import numpy as np
from scipy import stats
from typing import Callable

import torch
import torch.nn.functional as F

Logits = Callable[[torch.Tensor], torch.Tensor]  # tokens [B, T] → logits [B, T, V]
Generate = Callable[[torch.Tensor, int], torch.Tensor]  # (prefix [B, P], n) → greedy continuation [B, n]
NO_AUTOCAST = nullcontext()  # reusable: the default where no autocast is given


@torch.no_grad()
def greedy_continuation(logits_fn: Logits, prefix: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Greedy-decode n_tokens after prefix [B, P] with full forwards (the reference; the trainer passes the
    bridge's KV-cached generate, which gives the same tokens ten times faster)."""
    tokens = prefix
    for _ in range(n_tokens):
        next_token = logits_fn(tokens)[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, next_token], dim=1)
    return tokens[:, prefix.shape[1]:]


MIN_K = 0.2  # Min-K% Prob: the mean log-probability of the 20 % least likely tokens (Shi et al.; MIMIR's default)


@torch.no_grad()
def extraction_scores(logits_fn: Logits, windows: torch.Tensor, prefix_len: int = 32, n_tokens: int = 32,
                      generate_fn: Generate | None = None, greedy: bool = True,
                      losses: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """windows [B, prefix_len + n_tokens]: each the training context (prefix_len tokens) then the scored tokens.
    Per window: whether the greedy continuation of the prefix reproduces the scored tokens exactly
    (32-extractable), the fraction of matching tokens (Pythia's memorisation score), the teacher-forced loss on
    the scored tokens (MIMIR's LOSS), and Min-K% Prob on them. greedy=False: the last two only. `losses`: the
    scored tokens' −log p [B, n_tokens] where a forward already computed them (token_losses)."""
    window = windows[:, :prefix_len + n_tokens]
    loss = scored_token_losses(logits_fn, window, prefix_len) if losses is None else losses
    k = max(1, math.ceil(MIN_K * n_tokens))
    out = {"loss": loss.mean(1), "min_k": -loss.topk(k, dim=1).values.mean(1)}
    if greedy:
        generate_fn = generate_fn or (lambda prefix, n: greedy_continuation(logits_fn, prefix, n))
        match = generate_fn(window[:, :prefix_len], n_tokens) == window[:, prefix_len:]
        out |= {"exact_match": match.all(1).float(), "token_match": match.float().mean(1)}
    return out


def token_losses(logits: torch.Tensor, windows: torch.Tensor, prefix_len: int = 32) -> torch.Tensor:
    """[B, n_tokens]: −log p of each scored token, from the windows' logits [B, T, V] — or their last n_tokens + 1
    positions only (a forward with logits_to_keep = n_tokens + 1: the rest are never needed)."""
    target = windows[:, prefix_len:]
    logits = logits[:, -(target.shape[1] + 1):-1]
    return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="none").view_as(target)


def fixed_chunks(windows: torch.Tensor, size: int):
    """windows [W, T] in chunks of exactly `size` rows, the last padded with copies of its last row → (chunk, how
    many of its rows are real). Under bf16 a row's logits depend on how many rows share its forward (a window's
    loss moved by up to 0.014 nats on SmolLM2-135M between chunks of 5 and 16 rows), not on which rows or where: so
    a window scores the same bits whichever windows it is scored with — an LM that did not change reads exactly
    the step-0 model's loss on every window, though each eval's probe set (and so its last chunk) is another size."""
    for part in windows.split(size):
        n = len(part)
        yield (part if n == size else torch.cat([part, part[-1:].expand(size - n, -1)])), n


@torch.no_grad()
def scored_token_losses(logits_fn: Logits, windows: torch.Tensor, prefix_len: int = 32, chunk: int = 16) -> torch.Tensor:
    """[B, n_tokens]: −log p of each scored token given everything before it in the window; `chunk` windows per
    call of logits_fn (fixed_chunks), so no more than a chunk's logits ([chunk, T, vocabulary]) is ever held."""
    return torch.cat([token_losses(logits_fn(part), part, prefix_len)[:n] for part, n in fixed_chunks(windows, chunk)])


@torch.no_grad()
def sequence_nll(logits_fn: Logits, prefix: torch.Tensor, candidates: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Summed NLL of each candidate [N, L] after a shared prefix [P] → [N], with full forwards (the reference; the
    trainer scores canaries with prefixed_nll, which computes the prefix once)."""
    out = []
    for start in range(0, len(candidates), batch):
        cand = candidates[start:start + batch]
        tokens = torch.cat([prefix.expand(len(cand), -1), cand], dim=1)
        logits = logits_fn(tokens)[:, prefix.numel() - 1:-1]
        nll = F.cross_entropy(logits.flatten(0, 1).float(), cand.flatten(), reduction="none").view_as(cand)
        out.append(nll.sum(1))
    return torch.cat(out)


@torch.no_grad()
def prefixed_nll(hf_model, prefix: torch.Tensor, candidates: torch.Tensor, batch: int = 64,
                 autocast=NO_AUTOCAST) -> torch.Tensor:
    """sequence_nll with the shared prefix's keys and values computed once: the HF causal LM runs the prefix [P]
    with a cache, then each batch of candidates [N, L] continues from a copy of it (the first candidate token's
    distribution is the prefix's last position's). The same numbers as full forwards, for L tokens per candidate
    instead of P + L."""
    with autocast:
        start = hf_model(prefix[None], use_cache=True)
    first = start.logits[0, -1].float().log_softmax(-1)
    out = []
    for cand in candidates.split(batch):
        cache = copy.deepcopy(start.past_key_values)
        cache.batch_repeat_interleave(len(cand))
        nll = -first[cand[:, 0]]
        if cand.shape[1] > 1:
            with autocast:
                logits = hf_model(cand[:, :-1], past_key_values=cache, use_cache=False).logits.float()
            nll = nll + F.cross_entropy(logits.flatten(0, 1), cand[:, 1:].flatten(), reduction="none").view(
                len(cand), -1).sum(1)
        out.append(nll)
    return torch.cat(out)


def exposure(true_nll: float, other_nll: torch.Tensor) -> float:
    """log2(#candidates) − log2(rank of the true secret), rank 1 = lowest NLL among true + others
    (Carlini et al., The Secret Sharer). Ties count against the secret."""
    rank = 1 + int((other_nll <= true_nll).sum())
    return math.log2(len(other_nll) + 1) - math.log2(rank)


def extrapolated_exposure(true_nll: float | np.ndarray, other_nll: torch.Tensor | np.ndarray):
    """Carlini et al.'s extrapolated exposure: fit a skew-normal to the candidates' NLLs and return
    −log2 P(NLL ≤ true NLL) under it; unlike the rank-based exposure it is not capped at log2(#candidates).
    true_nll may be an array of secrets (one fit for all of them: it depends on the candidates only)."""
    shape, loc, scale = stats.skewnorm.fit(np.asarray(other_nll, dtype=np.float64))
    bits = -stats.skewnorm.logcdf(np.asarray(true_nll, dtype=np.float64), shape, loc, scale) / math.log(2)
    return float(bits) if np.ndim(bits) == 0 else bits


def skewnorm_fit_check(other_nll: torch.Tensor | np.ndarray, tail: float = 0.01) -> tuple[float, float]:
    """How well the skew-normal fits the candidates' NLLs, where the extrapolation uses it. (Kolmogorov–Smirnov
    distance over all candidates; tail error in bits: log2 of the fitted CDF at the empirical `tail` quantile (the
    deepest point the candidates still resolve, at least the lowest) over that quantile's plotting position i / (n + 1)
    — positive when the fitted lower tail is heavier than the candidates', so extrapolated exposures are too low.)"""
    x = np.sort(np.asarray(other_nll, dtype=np.float64))
    fit = stats.skewnorm.fit(x)
    ks = float(stats.kstest(x, "skewnorm", args=fit).statistic)
    i = max(1, int(round(tail * len(x))))
    return ks, float((stats.skewnorm.logcdf(x[i - 1], *fit) - math.log(i / (len(x) + 1))) / math.log(2))


def extrapolated_interval(true_nll: dict[str, np.ndarray], other_nll: torch.Tensor | np.ndarray, resamples: int = 200,
                          seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Per group of secrets (e.g. a repetition cell): a percentile bootstrap interval of their mean extrapolated
    exposure, resampling the candidate set — the estimate's only random part once the model is fixed (the
    skew-normal fit's sampling error, dominant with ~100 candidates; coverage: benchmarks/canary_exposure.py). The
    same resampled fits serve every group."""
    others = np.asarray(other_nll, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = {label: [] for label in true_nll}
    for _ in range(resamples):
        fit = stats.skewnorm.fit(others[rng.integers(0, len(others), len(others))])
        for label, nll in true_nll.items():
            means[label].append(float(np.mean(-stats.skewnorm.logcdf(nll, *fit) / math.log(2))))
    # order statistics, not interpolation: a resample whose fit puts a secret beyond its support gives +inf bits,
    # and the upper bound is then honestly unbounded (interpolating between infinities would give nan)
    return {label: (float(np.quantile(m, (1 - level) / 2, method="lower")),
                    float(np.quantile(m, (1 + level) / 2, method="higher"))) for label, m in means.items()}


# The proposal ladder of the sampled exposure: q_β ∝ p^β on the secret alphabet, β = 0 (uniform: the bulk, where
# controls and unmemorised secrets sit, and a bound K on every weight) and β = 0.5 · √2^k (k = 0…8), n/10 draws each.
# β > 1 reaches the low-loss tail a memorised secret sits in (tilting by β is the large-deviation optimum for
# P(ℓ ≤ t) on independent positions); their mixture (the balance heuristic) covers 20–60 bits under skew-normal,
# gamma and Zipf token laws (tests/chrono/test_memorisation.py: ≥ 0.90 each at 1,024 draws; a ladder ending at 6
# covered 0.87 at 60 bits under Zipf; without β = 0 the never-inserted controls read ≈ 2.5 bits whatever they are)
TEMPERATURES = (0.0, *(0.5 * 2 ** (k / 2) for k in range(9)))


def _draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row of softmax(logits) [rows, V], by inverse CDF: one uniform per row (torch.multinomial draws
    an exponential per entry, 8 M of them per step here, and took a third of the sampler's time)."""
    cdf = (logits - logits.amax(-1, keepdim=True)).exp().cumsum(-1)
    u = torch.rand(len(cdf), 1, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(cdf.shape[1] - 1)  # cdf[i-1] ≤ u < cdf[i]


def _log_normalisers(logp: torch.Tensor, betas: tuple[float, ...]) -> torch.Tensor:
    """[rows, len(betas)] log Σ_v p_v^β over the alphabet, for each β of the ladder: shifted by the row's maximum
    once, and where a rung's β is twice an earlier one's (every second rung of TEMPERATURES) its terms are that
    rung's squared, not exponentiated again (the loop of logsumexps it replaces took 40 % of the sampler's time)."""
    top = logp.amax(-1, keepdim=True)
    shifted = logp - top
    terms: dict[float, torch.Tensor] = {}
    out = []
    for b in betas:
        if b == 0:
            out.append(torch.full((len(logp),), math.log(logp.shape[1]), dtype=torch.float64))
            continue
        half = next((h for h in terms if math.isclose(2 * h, b)), None)
        terms[b] = terms.pop(half).square() if half is not None else (b * shifted).exp()  # β rises: half is done
        out.append((b * top[:, 0]).double() + terms[b].sum(-1).double().log())
    return torch.stack(out, 1)


@torch.no_grad()
def sample_secrets(hf_model, prefix: torch.Tensor, n: int, length: int, alphabet: tuple[int, int],
                   generator: torch.Generator, batch: int = 256, autocast=NO_AUTOCAST) -> tuple[torch.Tensor, torch.Tensor]:
    """n secrets of `length` tokens from the alphabet [low, high), drawn after the shared prefix from the model's own
    tempered distributions (row i from β = betas[i % len(betas)]): each one's full-vocabulary NLL ℓ (the quantity
    exposure ranks) and log q(s) under the mixture of the ladder (what importance weights divide by). [n], [n]."""
    low, high, betas = *alphabet, TEMPERATURES
    beta = torch.tensor(betas, dtype=torch.float64)
    with autocast:
        start = hf_model(prefix[None], use_cache=True)
    first = start.logits[0, -1].float().log_softmax(-1).cpu()
    nll_out, logq_out = [], []
    for chunk in torch.arange(n).split(batch):
        rows = len(chunk)
        own = beta[chunk % len(betas)]  # [rows] each draw's β
        cache = copy.deepcopy(start.past_key_values)
        cache.batch_repeat_interleave(rows)
        logp = first.expand(rows, -1)
        nll = torch.zeros(rows, dtype=torch.float64)
        logq = torch.zeros(rows, len(betas), dtype=torch.float64)  # log q_β(s) for every β of the ladder
        for j in range(length):
            allowed = logp[:, low:high]
            token = _draw(own[:, None].float() * allowed, generator)
            picked = allowed.gather(1, token[:, None]).squeeze(1).double()
            nll -= picked
            logq += beta * picked[:, None] - _log_normalisers(allowed, betas)
            if j + 1 < length:
                with autocast:
                    out = hf_model((token + low)[:, None].to(prefix.device), past_key_values=cache, use_cache=True)
                logp = out.logits[:, -1].float().log_softmax(-1).cpu()
        nll_out.append(nll)
        logq_out.append(logq.logsumexp(1) - math.log(len(betas)))
    return torch.cat(nll_out), torch.cat(logq_out)


def sampled_exposure(true_nll: np.ndarray, sample_nll: np.ndarray, sample_logq: np.ndarray, length: int,
                     alphabet_size: int, z: float = 1.96, tie: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exposure as the secret's rank among *all* alphabet_size^length secrets, τ = P_uniform(ℓ(S) ≤ ℓ*), estimated by
    importance sampling: τ̂ = mean over draws of 1{ℓ_i ≤ ℓ*} · u / q(s_i), u = alphabet_size^−length; bits = −log2 τ̂,
    with a 95 % interval from the estimator's standard error on the log scale (delta method). Where no draw reaches
    ℓ*, a lower bound only: u/q ≤ len(ladder)·u·e^ℓ* on that set and P_q(ℓ ≤ ℓ*) ≤ 3/n (95 %), so
    bits ≥ log2(alphabet_size^length) − ℓ*·log2 e − log2(3·len(ladder)/n); the upper end is then +inf.
    A draw within `tie` nats of ℓ* counts as a tie, and ties count against the secret (as in the rank-based
    exposure): the cached forward that scores the secret and the step-by-step one that draws differ by float noise.
    Returns (bits, lo, hi), one each per secret."""
    true_nll = np.atleast_1d(np.asarray(true_nll, dtype=np.float64))
    ell, logw = np.asarray(sample_nll, np.float64), -length * math.log(alphabet_size) - np.asarray(sample_logq, np.float64)
    n, bits, lo, hi = len(ell), [], [], []
    for t in true_nll:
        hit = ell <= t + tie
        if not hit.any():
            bound = max(0.0, (length * math.log(alphabet_size) - t - math.log(3 * len(TEMPERATURES) / n)) / math.log(2))
            bits.append(bound), lo.append(bound), hi.append(math.inf)
            continue
        top = logw[hit].max()
        y = np.zeros(n)
        y[hit] = np.exp(logw[hit] - top)
        mean = y.mean()
        rel = y.std(ddof=1) / math.sqrt(n) / mean if hit.sum() > 1 else math.inf  # the standard error of log τ̂
        b = -(math.log(mean) + top) / math.log(2)
        bits.append(b), lo.append(b - z * rel / math.log(2)), hi.append(b + z * rel / math.log(2))
    return np.array(bits), np.array(lo), np.array(hi)
