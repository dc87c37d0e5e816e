"""Find the largest micro-batch that fits, and measure tokens/s over enough steps to include one eval.

    python experiments/tune.py --preset demo [--max-memory-gb 8] [--steps 4] [key=value ...]

Grows the micro-batch by doubling, then bisects, each trial a few real training steps. On CUDA a trial
fails on out-of-memory; on CPU, where memory is not a hard wall, a trial fails when the process's peak RSS
exceeds --max-memory-gb (each CPU trial runs in its own process, so peaks are not mixed). Then one run at
the chosen micro-batch measures tokens/s including one eval, and the result is written to
runs/tune/<preset>.json, where experiments/plan.py reads it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


from chrono_membench.config import ConfigError, load_config
from chrono_membench.logging import read_metrics
from studies.plan import find_max_micro_batch
from chrono_membench.run_dir import RunDir

OUT_DIR = Path("runs") / "tune"


def run_trial(preset: str, overrides: list[str], micro_batch: int, steps: int, with_eval: bool) -> dict:
    """Train `steps` steps at this micro-batch in this process; return tokens/s and peak memory."""
    import torch

    from chrono_membench.train import train

    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(preset, overrides=[*overrides, f"train.micro_batch={micro_batch}", f"train.max_steps={steps}",
                                             f"train.eval_every={steps if with_eval else 10 ** 9}", "train.grad_accum=1",
                                             f"run.out_dir={out}", "run.name=trial", "logging.wandb_mode=disabled",
                                             f"checkpointing.checkpoint_every_n_steps={10 ** 9}"])
        run_dir = Path(out) / "trial"
        train(cfg, run_dir, progress=False)
        metrics = read_metrics(RunDir(run_dir).metrics)
    tokens = micro_batch * cfg.data.seq_len
    step_s = [tokens / r["train/tokens_per_s"] for r in metrics if "train/tokens_per_s" in r]
    evals = [r["time/eval_s"] for r in metrics if "time/eval_s" in r][1:]  # the eval at step 0 is not part of the interval
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"micro_batch": micro_batch, "tokens_per_s": tokens * len(step_s) / (sum(step_s) + sum(evals)),
            "tokens_per_s_without_eval": tokens * len(step_s) / sum(step_s), "peak_memory_gb": peak / 1e9}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--max-memory-gb", type=float, default=None, help="CPU: the bound that stands in for OOM")
    parser.add_argument("--max-micro-batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--trial", type=int, default=None, help=argparse.SUPPRESS)  # internal: one CPU trial
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = load_config(args.preset, overrides=args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.trial is not None:
        print(json.dumps(run_trial(args.preset, args.overrides, args.trial, args.steps, with_eval=False)))
        return 0
    import torch

    trials = {}

    def fits(m: int) -> bool:
        if torch.cuda.is_available():
            try:
                torch.cuda.reset_peak_memory_stats()
                trials[m] = run_trial(args.preset, args.overrides, m, args.steps, with_eval=False)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                trials[m] = None
        else:
            proc = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--trial", str(m),
                                   "--steps", str(args.steps), *args.overrides], capture_output=True, text=True)
            trials[m] = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
            if trials[m] and args.max_memory_gb and trials[m]["peak_memory_gb"] > args.max_memory_gb:
                trials[m]["over_bound"] = True
        ok = trials[m] is not None and not trials[m].get("over_bound")
        peak = f"{trials[m]['peak_memory_gb']:.2f} GB" if trials[m] else "out of memory"
        print(f"micro_batch {m:>4}: {'fits' if ok else 'does not fit'} ({peak})", file=sys.stderr)
        return ok

    best = find_max_micro_batch(fits, 1, args.max_micro_batch)
    if best == 0:
        print("error: micro_batch 1 does not fit", file=sys.stderr)
        return 1
    measured = run_trial(args.preset, args.overrides, best, args.steps + 1, with_eval=True)
    result = {"preset": args.preset, "device": "cuda" if torch.cuda.is_available() else "cpu",
              "max_memory_gb": args.max_memory_gb, "seq_len": cfg.data.seq_len, **measured,
              "trials": {m: t for m, t in sorted(trials.items())}}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{args.preset}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "trials"}, indent=1))
    print(f"written to {OUT_DIR / (args.preset + '.json')} (experiments/plan.py --preset {args.preset} reads it)")
    return 0


if __name__ == "__main__":
    from chrono_membench.safety import exit_with

    exit_with(main())
