"""Run the ablation study: full, no_dropout, no_alignment, no_diversity, frozen_lm, no_warmup as one wandb group, each
arm over --seeds seeds, then print per metric each arm's mean with its 95 % interval over seeds, its difference to `full`
with its interval (paired by seed: seed i of every arm shares run.seed and data.seed), and whether that difference
is distinguishable from seed noise.

    python experiments/suite.py --preset demo --seeds 3 [key=value ...]
    python experiments/suite.py --preset tiny --ablations full no_dropout train.max_steps=6
    python experiments/suite.py --preset demo --seeds 3 --group demo-suite-20261130-133000   # continue a suite

An SAE-only arm (no_dropout, no_alignment, no_warmup: it changes only what the SAEs do with the activations) does not need
an LM run of its own: it trains as an SAE variant (sae.variants) inside the `full` run of the same seed, on the
same captured activations, and is compared as that run seen through the variant (`<run>#<arm>`): the LM is the
same bitwise, as it was when the arm ran separately. --separate runs every arm as its own LM run. More variants,
e.g. a dose point `'sae.variants={p_max_0.3: {chrono.dropout_p_max: 0.3}}'`, join as arms of their own.
`frozen_lm` (the LM's learning rates 0) gives every drift and time metric its floor: what it reads on an LM that
never changes.

Runs go seed by seed (all arms of seed 0, then seed 1, ...), so a suite stopped part-way already holds complete
paired seeds. With --group naming an existing suite, finished runs (final_model/ written) are kept, a run with a
checkpoint resumes from it, and the rest start; pass the same overrides as the first time (resume refuses a
different experiment).

Seed i sets run.seed = preset's + i (SAE initialisation, probe-window and canary draws, the regulariser's query
positions, torch's RNG) and data.seed = preset's + i (the mixture's draws and every epoch's permutation, hence
which documents land in which time bucket). The LM is dropout-free, so on one device a fixed pair of seeds
reproduces a run; the seed-to-seed spread is the data order's and the SAE initialisation's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from studies.comparison import seed_overrides, seed_table, with_variants
from chrono_membench.config import ABLATIONS, SUITE, ConfigError, load_config, parse_override, sae_only



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--ablations", nargs="+", default=list(SUITE))
    parser.add_argument("--seeds", type=int, default=1, help="seeds per arm (3 or more for intervals)")
    parser.add_argument("--group", help="the suite's name; an existing suite's name continues it")
    parser.add_argument("--separate", action="store_true",
                        help="run SAE-only arms (no_dropout, no_alignment) as LM runs of their own, not as variants")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    group = args.group or f"{args.preset}-suite-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        unknown = [a for a in args.ablations if a not in ABLATIONS]
        if unknown:
            raise ConfigError(f"unknown ablation {unknown[0]!r}; allowed: {', '.join(ABLATIONS)}")
        # SAE-only arms train as SAE variants inside the first arm's LM run (the same LM, bitwise), when that arm
        # is `full`: seed i of such an arm is run <group>-full-s<i>#<arm>
        first = args.ablations[0]
        variants = {} if args.separate or ABLATIONS[first] else {
            a: ABLATIONS[a] for a in args.ablations[1:] if sae_only(a)}
        lm_arms = [a for a in args.ablations if a not in variants]
        # variants given as an override (dose points, other SAE settings) are arms of their own, inside `first`
        given = dict(parse_override(o) for o in args.overrides if o.startswith("sae.variants="))
        extra = given.get("sae.variants") or {}
        if not isinstance(extra, dict) or set(extra) & set(args.ablations):
            raise ConfigError("sae.variants must be a mapping of new arm names (not ablation names) to settings")
        variants.update(extra)
        arms = [*args.ablations, *extra]
        # the cross-seed SAE gives every drift number its noise floor (an explicit override wins)
        overrides = ["sae.seed_baseline=true", *(o for o in args.overrides if not o.startswith("sae.variants=")),
                     f"logging.group={group}"]
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be a positive integer, got {args.seeds}")
        base = load_config(args.preset, overrides=overrides)
        configs = {(a, i): load_config(args.preset, overrides=[
            *(with_variants(overrides, variants) if a == first else overrides), *seed_overrides(base, i),
            f"run.name={group}-{a}-s{i}"], ablation=a)
            for i in range(args.seeds) for a in lm_arms}  # all validated before the first run starts
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from chrono_membench.run_dir import RunDir
    from chrono_membench.train import train

    runs: dict[str, list] = {a: [] for a in arms}
    for (ablation, i), cfg in configs.items():
        run_dir = RunDir(Path(cfg.run.out_dir) / cfg.run.name)
        runs[ablation].append(run_dir.root)
        if ablation == first:
            for variant in variants:
                runs[variant].append(f"{run_dir.root}#{variant}")
        if run_dir.final_model.exists():
            print(f"\n=== {ablation} · seed {i}: finished already ({run_dir.root}) ===")
            continue
        resume = bool(run_dir.list_checkpoints())
        print(f"\n=== {ablation} · seed {i} (run.seed={cfg.run.seed}, data.seed={cfg.data.seed})"
              f"{' resumed' if resume else ''} ===")
        train(cfg, run_dir.root, resume=resume, progress=not args.no_progress)
    print(f"\nwandb group {group}; run directories under {Path(cfg.run.out_dir)}\n")
    print(seed_table(runs, baseline=first))
    return 0


if __name__ == "__main__":
    from chrono_membench.safety import exit_with

    exit_with(main())
