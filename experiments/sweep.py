"""Dose-response sweeps: run a grid over one or two config keys as one wandb group, then print the final metrics.

    python experiments/sweep.py --preset demo chrono.alignment_weight=0,0.1,1,10
    python experiments/sweep.py --preset demo chrono.alignment_weight=0,1 chrono.dropout_p_max=0,0.1 train.max_steps=20

An override whose value holds commas (outside brackets) is a swept axis (at most two); the others apply to every
run. Runs are named <group>-<key>=<value>[-<key>=<value>][-s<seed>]; `analysis/sweep_curves.py` plots each final
metric against the swept value. With --seeds N every point runs N seeds (as experiments/suite.py: run.seed and
data.seed moved by i) and the table gives each point's mean with its 95 % interval and its difference to the
first point.

When every swept key is one an SAE variant may set (config.VARIANT_KEYS: the SAEs' settings, temporal dropout,
alignment), the LM is the same at every point: each seed then trains one LM run, with the first point's
settings and every other point as an SAE variant of it (sae.variants) on the same activations; the table and the
index name those points `<run>#<point>`. --separate runs one LM per point instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from studies.comparison import seed_overrides, seed_table, with_variants
from chrono_membench.config import VARIANT_KEYS, ConfigError, load_config, parse_override


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
    parser.add_argument("--separate", action="store_true", help="one LM run per point even where SAE variants would do")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    group = f"{args.preset}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        axes, fixed = split_axes(args.overrides)
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be a positive integer, got {args.seeds}")
        grid = [dict(parse_override(f"{k}={v}") for k, v in zip(axes, values))
                for values in itertools.product(*axes.values())]
        label = lambda point: ",".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())  # noqa: E731
        # every swept key SAE-only: the points after the first train as SAE variants inside the first point's run
        as_variants = not args.separate and all(k in VARIANT_KEYS for k in axes)
        configs = {}
        for i in range(args.seeds):
            for point in grid[:1] if as_variants else grid:
                given = with_variants(fixed, {label(p): p for p in grid[1:]} if as_variants else {})
                name = f"{group}-" + "-".join(f"{k}={v}" for k, v in point.items()).replace("/", "_") \
                    + (f"-s{i}" if args.seeds > 1 else "")
                configs[name] = (point, load_config(
                    args.preset, overrides=[*given, *(f"{k}={v}" for k, v in point.items()),
                                            *seed_overrides(load_config(args.preset, overrides=fixed), i),
                                            f"logging.group={group}", f"run.name={name}"],
                    ablation=args.ablation))  # every point validated before the first run starts
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from chrono_membench.train import train

    runs, points = {}, {}
    for point, cfg in configs.values():
        print(f"\n=== {label(point)}{' (+ the other points as SAE variants)' if as_variants else ''} ===")
        run_dir = Path(cfg.run.out_dir) / cfg.run.name
        train(cfg, run_dir, progress=not args.no_progress)
        for p, ref in [(point, str(run_dir))] + [(p, f"{run_dir}#{label(p)}") for p in grid[1:] if as_variants]:
            runs.setdefault(label(p), []).append(ref)
            points[ref] = p
    out = Path(configs[next(iter(configs))][1].run.out_dir) / f"{group}.json"
    out.write_text(json.dumps({"group": group, "axes": axes, "runs": points}, indent=1))
    print(f"\nwandb group {group}; sweep index {out}\n")
    print(seed_table(runs, baseline=next(iter(runs))))
    return 0


if __name__ == "__main__":
    from chrono_membench.safety import exit_with

    exit_with(main())
