"""What the per-latent records cost at a checkpoint, next to the forward they ride on.

    python benchmarks/latent_records_cost.py runs/<name> [--repeats 5]

On a run's latest checkpoint (its model, SAEs and probe set), times in a fresh random order each repeat:
`latent_records` (one forward over the probe windows with the SAEs' encode, plus the running top-k, histograms and
profiles) and that forward alone (`scored_activations`, what purity's pass also costs). Prints medians and
records / forward: what the bookkeeping adds to the one forward. Until 2026-11-25 a second forward over the windows
gathered the top windows' contexts, so the old cost was about records + forward.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from chrono_membench.restore import restore_for_analysis
from chrono_membench.latent_records import latent_records, windows_of
from chrono_membench.probe_eval import scored_activations
from timing import interleaved  # benchmarks/timing.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    r = restore_for_analysis(args.run)
    tokens = torch.tensor([w["tokens"] for w in windows_of(r.probes)])
    autocast = contextlib.nullcontext()
    jobs = {"latent_records": lambda: latent_records(r.model, r.saes, r.probes, autocast, "cpu"),
            "forward + encode": lambda: sum(1 for _ in scored_activations(r.model, r.saes, tokens, autocast))}
    med, times = interleaved(jobs, args.repeats)
    print(f"step {r.step}: {len(tokens)} probe windows × {tokens.shape[1]} tokens, hooks {r.saes.hook_points}")
    for name, t in med.items():
        print(f"  {name:<18} median {t:6.2f} s  ({', '.join(f'{x:.2f}' for x in times[name])})")
    print(f"  records / forward  {med['latent_records'] / med['forward + encode']:.2f}×")


if __name__ == "__main__":
    main()
