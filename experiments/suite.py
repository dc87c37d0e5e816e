"""Run the ablation study: full, no_dropout, no_alignment, no_diversity as one wandb group, then print the
final metrics side by side.

    python experiments/suite.py --preset demo [key=value ...]
    python experiments/suite.py --preset tiny --ablations full no_dropout train.max_steps=6
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from chrono_membench.config import ABLATIONS, ConfigError, load_config
from chrono_membench.logging import final_table

SUITE = ["full", "no_dropout", "no_alignment", "no_diversity"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--ablations", nargs="+", default=SUITE)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    group = f"{args.preset}-suite-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        unknown = [a for a in args.ablations if a not in ABLATIONS]
        if unknown:
            raise ConfigError(f"unknown ablation {unknown[0]!r}; allowed: {', '.join(ABLATIONS)}")
        # the cross-seed SAE gives every drift number its noise floor (an explicit override wins)
        overrides = ["sae.seed_baseline=true", *args.overrides, f"logging.group={group}"]
        configs = {a: load_config(args.preset, overrides=[*overrides, f"run.name={group}-{a}"], ablation=a)
                   for a in args.ablations}  # all validated before the first run starts
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from chrono_membench.train import train

    runs = {}
    for ablation, cfg in configs.items():
        print(f"\n=== {ablation} ===")
        run_dir = Path(cfg.run.out_dir) / cfg.run.name
        train(cfg, run_dir, progress=not args.no_progress)
        runs[ablation] = run_dir
    print(f"\nwandb group {group}; run directories: {', '.join(str(p) for p in runs.values())}\n")
    print(final_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
