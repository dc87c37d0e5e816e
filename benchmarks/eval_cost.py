"""Evaluation cost of a finished run, split by part, against its training time.

    python benchmarks/eval_cost.py RUN_DIR            # e.g. the demo's run directory
    python benchmarks/eval_cost.py RUN_DIR --every 250 # and the share at another eval cadence

The trainer logs `time/eval_s` at every eval and the wall time of each of its parts (`time/eval_<part>_s`:
val, sae_panel, canaries, reference, probe_forward, extraction, probe_saes), `time/attn_metrics_s` and
`time/latent_records_s` where they run, and `train/tokens_per_s` at every step. This prints each eval's split, the
run's totals, and evals / (training steps + evals + the rest of the chrono work) — the share of the loop's wall
time — at the run's cadence and projected to `--every` steps per eval (the probe set of the last eval).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from chrono_membench import metric_keys as K
from chrono_membench.config import read_yaml
from chrono_membench.logging import read_metrics
from chrono_membench.run_dir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--every", type=int, default=250, help="eval cadence to project to (the hub presets': 250)")
    args = parser.parse_args()
    cfg = read_yaml(RunDir(args.run).config)
    t = cfg["train"]
    tokens_per_step = t["micro_batch"] * t["grad_accum"] * cfg["data"]["seq_len"]
    records = read_metrics(RunDir(args.run).metrics)
    step_s = [tokens_per_step / r["train/tokens_per_s"] for r in records if "train/tokens_per_s" in r]
    evals = [r for r in records if "time/eval_s" in r]
    other = sum(r.get("time/attn_metrics_s", 0) + r.get("time/latent_records_s", 0) for r in records)
    parts = [p for p in K.EVAL_PARTS if any(K.eval_time(p) in r for r in evals)]
    print(f"{args.run.name}: {len(step_s)} steps, {sum(step_s):.0f} s training; {len(evals)} evals")
    print(f"{'step':>6s} {'eval s':>7s}  " + "  ".join(f"{p:>13s}" for p in parts))
    for r in evals:
        print(f"{r['step']:6d} {r['time/eval_s']:7.1f}  " + "  ".join(f"{r.get(K.eval_time(p), 0):13.1f}" for p in parts))
    eval_total = sum(r["time/eval_s"] for r in evals)
    loop = sum(step_s) + eval_total + other
    print(f"evals {eval_total:.0f} s = {eval_total / loop:.1%} of the loop's {loop:.0f} s "
          f"(attention metrics + latent records {other:.0f} s = {other / loop:.1%})")
    mean_step = sum(step_s) / len(step_s)
    last = evals[-1]["time/eval_s"]
    share = {every: last / (last + every * mean_step) for every in (t["eval_every"], args.every)}
    print(f"one eval (the last, {last:.1f} s) per {t['eval_every']} steps: {share[t['eval_every']]:.1%} of wall time; "
          f"per {args.every} steps: {share[args.every]:.1%} (steps of {mean_step:.2f} s)")


if __name__ == "__main__":
    main()
