"""Dose-response sweeps: run a grid over one or two config keys as one wandb group, then print the final metrics.

    python experiments/sweep.py --preset demo chrono.alignment_weight=0,0.1,1,10
    python experiments/sweep.py --preset demo chrono.alignment_weight=0,1 chrono.dropout_p_max=0,0.1 train.max_steps=20

An override whose value holds commas (outside brackets) is a swept axis (at most two); the others apply to every
run. Runs are named <group>-<key>=<value>[-<key>=<value>][-s<seed>]; `analysis/sweep_curves.py` plots each final
metric against the swept value. With --seeds N every point runs N seeds (as experiments/suite.py: run.seed and
data.seed moved by i) and the table gives each point's mean with its 95 % interval and its difference to the
first point.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from chrono_membench.comparison import seed_overrides, seed_table
from chrono_membench.config import ConfigError, load_config, parse_override


def split_axes(overrides: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """({swept key: [raw values]}, fixed overrides)."""
    axes, fixed = {}, []
    for override in overrides:
        key, _, raw = override.partition("=")
        if "," in raw and not raw.strip().startswith(("[", "{")):
            axes[key.strip()] = [v.strip() for v in raw.split(",")]
        else:
            fixed.append(override)
    if not axes:
        raise ConfigError("sweep: give at least one key=v1,v2,... to sweep (e.g. chrono.alignment_weight=0,0.1,1)")
    if len(axes) > 2:
        raise ConfigError(f"sweep: at most two swept keys, got {', '.join(axes)}")
    return axes, fixed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--ablation", default=None)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per point (3 or more for intervals)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    group = f"{args.preset}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        axes, fixed = split_axes(args.overrides)
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be a positive integer, got {args.seeds}")
        configs = {}
        for values, i in itertools.product(itertools.product(*axes.values()), range(args.seeds)):
            point = [f"{k}={v}" for k, v in zip(axes, values)]
            name = f"{group}-" + "-".join(point).replace("/", "_") + (f"-s{i}" if args.seeds > 1 else "")
            configs[name] = (dict(parse_override(p) for p in point), load_config(
                args.preset, overrides=[*fixed, *point, *seed_overrides(load_config(args.preset, overrides=fixed), i),
                                        f"logging.group={group}", f"run.name={name}"],
                ablation=args.ablation))  # every point validated before the first run starts
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from chrono_membench.train import train

    runs, points = {}, {}
    for point, cfg in configs.values():
        print(f"\n=== {', '.join(f'{k}={v}' for k, v in point.items())} ===")
        run_dir = Path(cfg.run.out_dir) / cfg.run.name
        train(cfg, run_dir, progress=not args.no_progress)
        label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())
        runs.setdefault(label, []).append(run_dir)
        points[str(run_dir)] = point
    out = Path(configs[next(iter(configs))][1].run.out_dir) / f"{group}.json"
    out.write_text(json.dumps({"group": group, "axes": axes, "runs": points}, indent=1))
    print(f"\nwandb group {group}; sweep index {out}\n")
    print(seed_table(runs, baseline=next(iter(runs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
