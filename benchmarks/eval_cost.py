"""Evaluation cost: eval time / training time per eval interval, from one short run of a preset.

    python benchmarks/eval_cost.py [--preset demo] [--steps 10] [key=value ...]

The trainer logs `time/eval_s` (val loss, CE recovered, memorisation probes, canaries, purity) at every
eval and `train/tokens_per_s` at every step; this runs `--steps` steps with an eval at the start and end,
then prints the ratio at the preset's eval cadence and at the seeds' cadence (every 250 steps). The probe
set grows with the buckets seen, so the later eval is the one used (the worst case).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


from chrono_membench.config import load_config
from chrono_membench.logging import read_metrics
from chrono_membench.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    base = load_config(args.preset, overrides=args.overrides)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(args.preset, overrides=[*args.overrides, f"run.out_dir={out}", "run.name=eval-cost",
                                                  "logging.wandb_mode=disabled", f"train.max_steps={base.train.max_steps}",
                                                  "checkpointing.checkpoint_every_n_steps=1000000"])
        # Keep the preset's schedule (max_steps sets the buckets) but stop early: eval at 0 and at --steps.
        cfg.train.eval_every = args.steps
        cfg.train.max_steps = args.steps
        cfg.chrono.n_buckets = base.chrono.n_buckets
        train(cfg, Path(out) / "eval-cost", progress=True)
        metrics = read_metrics(Path(out) / "eval-cost" / "metrics.jsonl")
    tokens_per_step = cfg.train.micro_batch * cfg.train.grad_accum * cfg.data.seq_len
    step_s = statistics.mean(tokens_per_step / r["train/tokens_per_s"] for r in metrics if "train/tokens_per_s" in r)
    eval_s = [r["time/eval_s"] for r in metrics if "time/eval_s" in r]
    attn_s = [r["time/attn_metrics_s"] for r in metrics if "time/attn_metrics_s" in r]
    print(f"\n{args.preset}: {step_s:.2f} s/train step; eval {eval_s[-1]:.2f} s (at step 0: {eval_s[0]:.2f} s); "
          f"attention metrics {statistics.mean(attn_s):.2f} s")
    cadences = ((f"preset cadence (every {base.train.eval_every})", base.train.eval_every),
                ("seeds' cadence (every 250)", 250))
    for label, every in cadences:
        print(f"eval / training per interval, {label}: {eval_s[-1] / (every * step_s):.3f}")
    print(f"attention metrics / training per interval (every {base.train.chrono_every}): "
          f"{statistics.mean(attn_s) / (base.train.chrono_every * step_s):.3f}")


if __name__ == "__main__":
    main()
