"""Coverage of the extrapolated canary exposure's 95 % interval (chrono/memorisation.extrapolated_interval), by
simulation with a known truth, at the harness's candidate counts.

    python benchmarks/canary_exposure.py [--replicates 100] [--resamples 100] [--candidates 127 1023]

Two laws for the candidates' NLLs:
  skewnorm    exactly the skew-normal the estimator fits (Carlini et al.'s assumption);
  token sums  what the harness scores: the sum of 12 per-token NLLs of uniformly random tokens under a Zipf-shaped
              next-token distribution over 49,152 tokens (SmolLM2's vocabulary) — not a skew-normal.
A secret sits at a known true exposure b (its NLL is the 2^-b quantile of the law; for token sums found by Monte
Carlo over 2·10^7 draws). Each replicate draws a fresh candidate set, estimates the exposure and its interval; the
table gives the median estimate, the 2.5–97.5 % range of estimates, the interval's median width and its
coverage of b. Each fit ≈ 10 ms: replicates × resamples fits per row.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats
from tqdm import tqdm

from chrono_membench.chrono.memorisation import extrapolated_exposure, extrapolated_interval

VOCAB, LENGTH = 49_152, 12


def token_sum_law(rng: np.random.Generator):
    """(sampler, quantile) of the sum of LENGTH token NLLs, each −log p(token) of a uniform random token under a
    Zipf(1.1) next-token distribution (a fixed random permutation of ranks per position makes no difference)."""
    p = 1.0 / np.arange(1, VOCAB + 1) ** 1.1
    nll = -np.log(p / p.sum())
    def sample(n):
        return nll[rng.integers(0, VOCAB, size=(n, LENGTH))].sum(1)
    reference = np.sort(np.concatenate([sample(1_000_000) for _ in range(20)]))
    return sample, lambda q: float(np.quantile(reference, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--candidates", type=int, nargs="+", default=[127, 1023])
    parser.add_argument("--bits", type=float, nargs="+", default=[8.0, 14.0])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    skew = stats.skewnorm(4.0, loc=100.0, scale=12.0)
    laws = {"skewnorm": (lambda n: skew.rvs(size=n, random_state=rng), lambda q: float(skew.ppf(q))),
            "token sums": token_sum_law(rng)}
    print(f"{'law':<11} {'n':>5} {'true b':>6}  {'median est.':>11} {'95 % of estimates':>18} {'width':>6} coverage")
    for name, (sample, quantile) in laws.items():
        for n in args.candidates:
            for bits in args.bits:
                secret = np.array([quantile(2.0 ** -bits)])
                estimates, covered, widths, t0 = [], 0, [], time.time()
                for r in tqdm(range(args.replicates), desc=f"{name} n={n} b={bits:g}", leave=False):
                    others = sample(n)
                    estimates.append(float(extrapolated_exposure(secret, others)[0]))
                    lo, hi = extrapolated_interval({"s": secret}, others, args.resamples, seed=r)["s"]
                    covered += lo <= bits <= hi
                    widths.append(hi - lo)
                lo_e, med, hi_e = np.quantile(estimates, [0.025, 0.5, 0.975])
                print(f"{name:<11} {n:>5} {bits:>6g}  {med:>11.1f} {f'[{lo_e:.1f}, {hi_e:.1f}]':>18} "
                      f"{np.median(widths):>6.1f} {covered / args.replicates:.2f}   ({time.time() - t0:.0f} s)",
                      flush=True)


if __name__ == "__main__":
    main()
