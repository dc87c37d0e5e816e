"""What a run could have seen: a verdict beside every time-claim it prints (run summary, report).

A claim is "detected" when its 95 % interval excludes the null (or its permutation p ≤ 0.05). Otherwise the
verdict states the minimum detectable effect (MDE) at this run's size — the effect a two-sided 5 % test would find
with 80 % power, (z₀.₉₇₅ + z₀.₈) · SE = 2.80 · SE, the SE read off the claim's own interval ((hi − lo) / 3.92)
or its permutation null's SD — "none detected; would have seen ≥ X". Where even the largest possible effect is
below that (an AUROC can move 0.5 from chance, a correlation 1), or there is no interval, it is "undecided at this
size".
"""

from __future__ import annotations

import math

from scipy.stats import norm

POWER_FACTOR = float(norm.ppf(0.975) + norm.ppf(0.80))  # 2.80
Z = float(norm.ppf(0.975))


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _none_detected(mde: float, largest: float | None) -> str:
    if largest is not None and mde >= largest:
        return f"undecided at this size (could only see ≥ {mde:.3g})"
    return f"none detected; would have seen ≥ {mde:.3g}"


def from_interval(lo: float, hi: float, null: float = 0.0, largest: float | None = None) -> str:
    """Verdict for a value with a 95 % interval [lo, hi] against `null`; `largest`: the largest possible
    deviation from the null (None: unbounded)."""
    if not _finite(lo, hi):
        return "undecided at this size (no interval)"
    if lo > null or hi < null:
        return "detected"
    if hi - lo <= 0:
        return "undecided at this size (the interval has no width)"
    return _none_detected(POWER_FACTOR * (hi - lo) / (2 * Z), largest)


def from_permutation(p: float, null_sd: float, largest: float | None = None) -> str:
    """Verdict for a statistic with a permutation p-value and its null's SD."""
    if not _finite(p, null_sd):
        return "undecided at this size (no null)"
    if p <= 0.05:
        return f"detected, p = {p:.2g}"
    if null_sd <= 0:
        return "undecided at this size (the null does not vary)"
    return _none_detected(POWER_FACTOR * null_sd, largest)


def correlation_mde(n: int) -> float:
    """The |ρ| a Spearman correlation over n pairs detects (SE ≈ 1/√(n − 1) under the null)."""
    return POWER_FACTOR / math.sqrt(n - 1) if n > 1 else math.inf


# ---- the inverse (experiments/plan.py --power): the size a run needs to detect a given effect, and the MDE at a size
def auroc_mde(n_pos: int, n_neg: int) -> float:
    """The |AUROC − 0.5| a run with these windows detects (the Mann–Whitney null SE, √((n₁ + n₂ + 1) / 12 n₁ n₂))."""
    return POWER_FACTOR * math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg)) if n_pos and n_neg else math.inf


def windows_for_auroc(delta: float) -> int:
    """Windows per class (seen bucket and unseen, equal) for auroc_mde ≤ delta."""
    n = 1
    while auroc_mde(n, n) > delta:
        n *= 2
    lo, hi = n // 2, n
    while hi - lo > 1:  # the smallest n in (lo, hi]
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if auroc_mde(mid, mid) > delta else (lo, mid)
    return hi


def windows_for_correlation(rho: float) -> int:
    """Seen windows for correlation_mde ≤ |rho|."""
    return math.ceil((POWER_FACTOR / abs(rho)) ** 2 + 1)


def mean_difference_mde(sd: float, n_a: int, n_b: int) -> float:
    """The difference of two group means (e.g. the DiD of two buckets) a run detects, per-window SD `sd`."""
    return POWER_FACTOR * sd * math.sqrt(1 / n_a + 1 / n_b) if n_a and n_b else math.inf


def windows_for_mean_difference(delta: float, sd: float) -> int:
    """Windows per group (equal) for mean_difference_mde ≤ delta."""
    return math.ceil(2 * (POWER_FACTOR * sd / delta) ** 2)


def paired_seeds_mde(seeds: int) -> float:
    """The paired arm difference, in units of its seed-to-seed SD, that `seeds` paired seeds detect with a two-sided
    5 % paired t-test 80 % of the time (exact, from the noncentral t: few seeds pay twice, a wider t and a smaller
    √n; ≈ (t₀.₉₇₅ + t₀.₈₀) / √seeds). Two seeds (1 df: scipy's noncentral t is unstable there, and the test
    needs an effect of ≈ 10 SDs) count as too few: inf."""
    from scipy.optimize import brentq
    from scipy.stats import nct, t

    if seeds < 3:
        return math.inf
    df, crit = seeds - 1, t.ppf(0.975, seeds - 1)
    power = lambda d: nct.sf(crit, df, d * math.sqrt(seeds)) + nct.cdf(-crit, df, d * math.sqrt(seeds))  # noqa: E731
    approximate = (crit + t.ppf(0.80, df)) / math.sqrt(seeds)
    return brentq(lambda d: power(d) - 0.80, 0.5 * approximate, 1.5 * approximate)


def seeds_for_paired_difference(delta_in_sd: float, most: int = 1000) -> int:
    """Paired seeds for paired_seeds_mde ≤ delta_in_sd (an effect of that many seed SDs)."""
    return next((s for s in range(2, most + 1) if paired_seeds_mde(s) <= delta_in_sd), most)


POWER_CELLS = 400_000  # windows × simulated latents per simulation, at most (fdr_power)
POWER_LATENTS = 2000  # the latents fdr_power simulates (they stand for the SAE's thousands: see there)


# the median share of probe windows a tested latent fires in, measured on the demo (2026-12-05: 21 %); plan.py's
# --fire, or a run's own chrono/<hook>/selective_time_fire, replaces it
FIRE = 0.21


def fdr_power(windows_per_bucket: int, buckets: int, enrichment: float, share: float = 0.05, q: float = 0.05,
              fire: float = FIRE, sims: int = 40, seed: int = 0) -> dict[str, float]:
    """By simulation, with the evals' own test (chrono/selectivity.py: Kruskal–Wallis over buckets, BH at q): the
    fraction of a time-selective population found, and the false share among what is found. Each latent fires in a
    window with probability `fire`, with an Exponential(1) activation; a `share` of them fires `enrichment`× as often
    in one bucket (a rank test sees how often a latent fires far more than how strongly: 4× the activation at 30 %
    firing moves its AUROC by 0.03). At a fixed share the BH threshold hardly depends on the number of latents, so
    POWER_LATENTS = 2,000 stand for the SAE's thousands. 40 simulations: the found share to about ±0.01 (its SD over
    simulations is ≈ 0.03 at 100 selective latents)."""
    import numpy as np

    from chrono_membench.chrono.selectivity import selective_latents

    rng, found, false = np.random.default_rng(seed), [], []
    # the work is windows × latents per simulation: past POWER_CELLS, fewer latents stand for the SAE's (≥ 200, so
    # ≥ 10 selective ones a simulation; 40 simulations then give the found share to about ±0.02)
    latents = max(200, min(POWER_LATENTS, POWER_CELLS // (windows_per_bucket * buckets)))
    n_sel = max(1, round(share * latents))
    column = np.repeat(np.arange(buckets), windows_per_bucket)
    for _ in range(sims):
        p = np.full((len(column), latents), fire)
        p[np.ix_(column == 0, np.arange(n_sel))] = min(1.0, fire * enrichment)
        rate = rng.exponential(1.0, p.shape) * (rng.random(p.shape) < p)
        got = selective_latents(rate, np.ones(len(column)), column, min_windows=5, q=q)
        chosen = set() if got is None else set(got["selective"].tolist())
        found.append(len(chosen & set(range(n_sel))) / n_sel)
        false.append(len(chosen - set(range(n_sel))) / max(len(chosen), 1))
    return {"found": float(np.mean(found)), "false_share": float(np.mean(false))}


def windows_for_fdr(enrichment: float, buckets: int, share: float = 0.05, q: float = 0.05, target: float = 0.8,
                    most: int = 4096, fire: float = FIRE) -> int:
    """Windows per bucket at which fdr_power finds ≥ `target` of the population (doubling, then bisection; 8
    simulations a size while searching)."""
    def found(n):
        return fdr_power(n, buckets, enrichment, share, q, fire, sims=8)["found"]
    n = 4
    while n < most and found(n) < target:
        n *= 2
    lo, hi = n // 2, n
    while hi - lo > max(1, lo // 8):  # to within 12 %: a simulation, not an exact size
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if found(mid) < target else (lo, mid)
    return hi
