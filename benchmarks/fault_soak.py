"""Kill-and-resume soak: SIGKILL a run at random moments (checkpoint writes included), resume it, again and
again, and compare everything it logged with one uninterrupted run.

    python benchmarks/fault_soak.py --cycles 50 [--preset tiny] [--seed 0] [key=value ...]

Prints: cycles, resumes whose metrics matched the uninterrupted run bitwise, metric lines lost, metric lines
duplicated, checkpoints found corrupt and skipped. (The `demo` preset works too, at minutes per cycle.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chrono_membench.logging import read_metrics
from chrono_membench.metric_keys import TIMING  # wall-clock values differ between identical runs

ROOT = Path(__file__).resolve().parents[1]


def comparable(run_dir: Path) -> list[str]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.dumps({k: v for k, v in r.items() if k not in TIMING}, sort_keys=True) for r in read_metrics(path)]


def soak(cycles: int, preset: str, overrides: list[str], seed: int, out: Path, log=print,
         reference: tuple[Path, float] | None = None) -> dict:
    """`reference`: (run directory, wall seconds) of an uninterrupted run of the same command, if one exists."""
    rng = random.Random(seed)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "experiments/run.py", "--preset", preset, "--no-progress", *overrides, f"run.out_dir={out}"]
    if reference is None:
        t0 = time.time()
        done = subprocess.run([*base, "run.name=reference"], cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"reference run failed:\n{done.stderr[-2000:]}")
        reference = (out / "reference", time.time() - t0)
    reference, full_time = comparable(reference[0]), reference[1]
    victim = out / "victim"
    stats = {"cycles": 0, "resumes_matched": 0, "lines_lost": 0, "lines_duplicated": 0, "corrupt_skipped": 0,
             "completed_runs": 0}
    command = [*base, "run.name=victim"]
    while stats["cycles"] < cycles:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=rng.uniform(0.3, 1.0) * full_time)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        err = proc.stderr.read()
        stats["corrupt_skipped"] += err.count("skipping corrupt checkpoint")
        if proc.returncode == 0:  # finished before the kill: start a fresh victim
            stats["completed_runs"] += 1
            got = comparable(victim)
            stats["lines_lost"] += len(set(reference) - set(got))
            stats["lines_duplicated"] += len(got) - len(set(got))
            subprocess.run(["rm", "-rf", str(victim)])
            command = [*base, "run.name=victim"]
            continue
        stats["cycles"] += 1
        got = comparable(victim)
        ok = got == reference[: len(got)]  # everything logged so far is exactly the uninterrupted run's
        stats["resumes_matched"] += ok
        stats["lines_duplicated"] += len(got) - len(set(got))
        log(f"cycle {stats['cycles']:3d}: killed after {len(got)} metric lines; {'match' if ok else 'MISMATCH'}")
        has_checkpoint = (victim / "checkpoints").exists() and any(p.name.startswith("step_")
                                                                   for p in (victim / "checkpoints").iterdir())
        command = [sys.executable, "experiments/run.py", "--resume", str(victim), "--no-progress"] if has_checkpoint \
            else [*base, "run.name=victim"]
        if not has_checkpoint:
            subprocess.run(["rm", "-rf", str(victim)])
    # Let the last victim finish, then compare the whole log.
    final = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if final.returncode == 0:
        got = comparable(victim)
        stats["completed_runs"] += 1
        stats["lines_lost"] += len(set(reference) - set(got))
        stats["lines_duplicated"] += len(got) - len(set(got))
        stats["final_matched"] = got == reference
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", default=["train.max_steps=12", "checkpointing.checkpoint_every_n_steps=2",
                                                          "train.eval_every=3"])
    args = parser.parse_intermixed_args()
    with tempfile.TemporaryDirectory() as out:
        stats = soak(args.cycles, args.preset, args.overrides, args.seed, Path(out))
    print(json.dumps(stats, indent=1))
    print(f"{stats['cycles']} cycles: {stats['resumes_matched']}/{stats['cycles']} resumes matched bitwise; "
          f"{stats['lines_lost']} metric lines lost, {stats['lines_duplicated']} duplicated; "
          f"{stats['corrupt_skipped']} corrupt checkpoints skipped; final log identical: {stats.get('final_matched')}")


if __name__ == "__main__":
    main()
