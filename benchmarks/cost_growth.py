"""The cost of a run as it grows: a tiny-model run at a long run's cadence (5,000 steps: an eval every 250, a
checkpoint every 500, a log line every 50, the chrono cadence every 100; the `study` preset's probe set, 528 windows
in each of 10 buckets), watched from outside.

    python benchmarks/cost_growth.py [--steps 5000] [--out runs/cost-growth]    # resumes an unfinished run

Prints, each as a ratio: an eval's seconds late in the run against early (and per scored window, since the probe set
itself grows while its buckets fill), a checkpoint's seconds (the manifest's write_s) late against early, the peak
RSS of the second half against the first (a leak grows it), and the measured run directory's artifacts and logged
scalars against `studies/plan.py`'s storage prediction.

    python benchmarks/cost_growth.py --plan-check runs/<demo run> runs/<study-cpu run>

prints `plan.py --from-run`'s predicted wall time (the demo's unit costs) against the study's measured one, as ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from chrono_membench import metric_keys as K
from chrono_membench.config import load_config
from chrono_membench.logging import read_metrics
from chrono_membench.run_dir import RunDir
from studies.plan import storage_plan

ROOT = Path(__file__).resolve().parents[1]
# artifact file name prefix → storage_plan item
ITEMS = {"features_": "features", "sae_": "sae_state", "purity_": "purity", "latents_": "latent_records",
         "crosscoder_": "crosscoder"}


def overrides(steps: int, out: Path) -> list[str]:
    return [f"train.max_steps={steps}", f"train.eval_every={steps // 20}", f"train.log_every={steps // 100}",
            f"train.chrono_every={steps // 50}", f"checkpointing.checkpoint_every_n_steps={steps // 10}",
            "checkpointing.keep_last=100", "chrono.n_buckets=10", "chrono.probe_per_bucket=528",
            f"run.out_dir={out.parent}", f"run.name={out.name}"]


def watch(proc: subprocess.Popen, samples: list) -> None:
    """RSS of the run's process and its children, every 0.5 s, with the time."""
    p = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            samples.append((time.perf_counter(), rss))
        except psutil.Error:
            pass
        time.sleep(0.5)


def ratio(late: list[float], early: list[float]) -> str:
    if not late or not early:
        return "n/a"
    return f"{statistics.median(late) / statistics.median(early):.3f}"


def plan_check(calibration: Path, run: Path) -> int:
    """plan.py --from-run's wall time for `run`'s configuration at `calibration`'s unit costs, against what `run`
    took (its sessions.jsonl; the steps' and evals' seconds from its metrics), part by part."""
    from chrono_membench.config import read_yaml
    from studies.plan import step_split, steps_total, unit_costs, wall_plan_parts

    sessions = RunDir(run).read_sessions()
    if not sessions:
        print(f"error: --plan-check: {run} has no sessions.jsonl (not finished, or from before run.py kept it)",
              file=sys.stderr)
        return 2
    cfg, records = read_yaml(RunDir(run).config), read_metrics(RunDir(run).metrics)
    predicted = wall_plan_parts(cfg, unit_costs(calibration))
    measured = {"steps": steps_total(cfg, *step_split(cfg, records)),  # the logged plain and chrono steps, weighted
                "evals": sum(r["time/eval_s"] for r in records if "time/eval_s" in r),
                "total": sum(s["wall_s"] for s in sessions)}
    print(f"plan.py --from-run {calibration} for {run} ({sessions[-1]['machine']}), predicted / measured:")
    for part, value in (("steps", predicted["steps"]), ("evals", predicted["evals"]),
                        ("total", sum(predicted.values()))):
        if part == "total" and sessions[0]["resumed"]:
            print(f"  total  {value / 60:7.1f} min / n/a: the run's first session left no record (killed or failed)")
        else:
            print(f"  {part:6s} {value / 60:7.1f} min / {measured[part] / 60:7.1f} min = {value / measured[part]:.3f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("runs/cost-growth"))
    parser.add_argument("--plan-check", nargs=2, type=Path, metavar=("CALIBRATION_RUN", "RUN"), default=None,
                        help="only this: plan.py --from-run CALIBRATION_RUN's wall time for RUN's configuration "
                             "against RUN's measured one (e.g. a demo run and a study-cpu run on one machine)")
    args = parser.parse_args()
    if args.plan_check:
        return plan_check(*args.plan_check)
    if args.steps < 100 or args.steps % 100:
        print("error: --steps must be a multiple of 100 (the cadences are steps / 20, / 50, / 100)", file=sys.stderr)
        return 2
    run = RunDir(args.out)
    cmd = [sys.executable, "experiments/run.py", "--preset", "tiny", "--no-progress", *overrides(args.steps, args.out)]
    if run.list_checkpoints():
        cmd.append("--resume")
    samples: list = []
    start = time.perf_counter()
    if not run.final_model.exists():  # finished before: read it again (no RSS then)
        proc = subprocess.Popen(cmd, cwd=ROOT)
        watcher = threading.Thread(target=watch, args=(proc, samples), daemon=True)
        watcher.start()
        if proc.wait():
            print(f"error: the run failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        watcher.join()
    wall = time.perf_counter() - start
    records = read_metrics(run.metrics)
    n_unseen = load_config("tiny", overrides=overrides(args.steps, args.out)).chrono.probe_per_bucket

    # the windows an eval scores: the seen ones so far and the unseen column (chrono.probe_per_bucket)
    evals = [(r["step"], r["time/eval_s"], (r.get(K.ORDER_N) or 0) + n_unseen) for r in records if "time/eval_s" in r]
    evals = [(s, t, n) for s, t, n in evals if s > 0]
    half = len(evals) // 2
    print(f"tiny model, {args.steps} steps, {wall:.0f} s wall this session\n\nevals (step, s, windows scored):")
    for s, t, n in evals:
        print(f"  {s:6d} {t:7.2f} s  {n:6.0f}  {1e3 * t / n:6.1f} ms per window")
    per_window = [t / n for _, t, n in evals]
    print(f"eval s, second half / first half: {ratio([t for _, t, _ in evals[half:]], [t for _, t, _ in evals[:half]])}"
          f"; per window scored: {ratio(per_window[half:], per_window[:half])}")

    writes = sorted((json.loads((p / "manifest.json").read_text()).get("step"),
                     json.loads((p / "manifest.json").read_text()).get("write_s")) for p in run.list_checkpoints())
    writes = [(s, w) for s, w in writes if w is not None]
    print("checkpoints (step, write s): " + ", ".join(f"{s}: {w:.2f}" for s, w in writes))
    half = len(writes) // 2
    print(f"checkpoint s, second half / first half: {ratio([w for _, w in writes[half:]], [w for _, w in writes[:half]])}")

    if samples:
        t0, t1 = samples[0][0], samples[-1][0]
        warm = [r for t, r in samples if t > t0 + 0.1 * (t1 - t0)]  # past the first tenth: loading, first evals
        first, second = warm[:len(warm) // 2], warm[len(warm) // 2:]
        print(f"peak RSS {max(r for _, r in samples) / 2**30:.2f} GiB; second half's peak / first half's: "
              f"{max(second) / max(first):.3f}" if first and second else "too few RSS samples")
    else:
        print("RSS: not watched (the run had finished before this call)")

    cfg = load_config("tiny", overrides=overrides(args.steps, args.out))
    plan = storage_plan(cfg, cfg.model.tiny_d_model, cfg.model.tiny_layers, 1)
    measured: dict[str, int] = {}
    for path in run.artifacts_root.rglob("*"):
        if path.is_file():
            top = path.relative_to(run.artifacts_root).parts[1]
            item = next((v for k, v in ITEMS.items() if top.startswith(k)), None)
            if item:
                measured[item] = measured.get(item, 0) + path.stat().st_size
    print("\nstorage, measured / plan.py's prediction:")
    for item, p in plan.items():
        if item == "scalars":
            logged = sum(len(r) - 1 for r in records)
            print(f"  scalars        {logged:>12,} logged / {p['count']:>12,} predicted = {logged / p['count']:.3f}")
        elif item in measured:
            print(f"  {item:14s} {measured[item]:>12,} B / {p['bytes']:>12,} B = {measured[item] / p['bytes']:.3f}")
    print(f"  metrics.jsonl  {run.metrics.stat().st_size:,} B; run directory "
          f"{sum(f.stat().st_size for f in run.root.rglob('*') if f.is_file()):,} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
