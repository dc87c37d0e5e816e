"""Kill soak: SIGKILL a run's trainer at random moments (before its first checkpoint and during checkpoint writes
included) and resume it with `--resume`, or SIGKILL its data worker, or stop it (SIGSTOP: a stuck worker, found
after data.worker_timeout_s=5) and let the run go on; now and then, before a resume, plant a checkpoint written by
a model of another width as the newest (it must be refused in one line, exit 2, and the resume then goes on once
it is removed); again and again; compare everything it logged with one uninterrupted run.

    python benchmarks/fault_soak.py --cycles 50 [--preset tiny] [--seed 0] [--worker-share 0.3] [key=value ...]

Prints: trainer kills and how many of them `--resume` continued from (resumable), worker kills and stops and how
many runs went on to finish by themselves (survived), foreign checkpoints refused, resumes whose metrics matched
the uninterrupted run bitwise, metric lines lost and duplicated, checkpoints found corrupt and skipped. (The `demo`
preset works too, at minutes per cycle; the foreign checkpoint is planted in `tiny` runs only.) Rows are
prefetched one step ahead (data.prefetch_rows=4), so a worker is always needed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chrono_membench.logging import read_metrics
from chrono_membench.metric_keys import is_timing  # wall-clock values differ between identical runs
from chrono_membench.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[1]


def comparable(run_dir: Path) -> list[str]:
    path = RunDir(run_dir).metrics
    if not path.exists():
        return []
    return [json.dumps({k: v for k, v in r.items() if not is_timing(k)}, sort_keys=True) for r in read_metrics(path)]


def data_workers(pid: int) -> list[int]:
    """The trainer's DataLoader worker processes (torch names their threads pt_data_worker)."""
    try:
        children = [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
        return [int(c) for c in children if Path(f"/proc/{c}/comm").read_text().strip() == "pt_data_worker"]
    except OSError:  # the trainer (or the child) is gone
        return []


def foreign_checkpoint(base: list[str], out: Path, env: dict) -> Path | None:
    """A checkpoint of the same command with a model half as wide (tiny only): what a resume must refuse."""
    if "tiny" not in base:
        return None
    done = subprocess.run([*base, "run.name=foreign", "model.tiny_d_model=32"], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"foreign run failed:\n{done.stderr[-2000:]}")
    return RunDir(out / "foreign").list_checkpoints()[0]


def soak(cycles: int, preset: str, overrides: list[str], seed: int, out: Path, log=print,
         reference: tuple[Path, float] | None = None, worker_share: float = 0.3, foreign_share: float = 0.2) -> dict:
    """`reference`: (run directory, wall seconds) of an uninterrupted run of the same command, if one exists.
    worker_share: the share of cycles that kill or stop the data worker instead of killing the trainer (half each);
    foreign_share: the share of resumes (with a checkpoint to resume) first tried with a foreign checkpoint planted."""
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
    stats = {"cycles": 0, "trainer_kills": 0, "before_first_checkpoint": 0, "resumable": 0, "worker_kills": 0,
             "worker_stops": 0, "survived": 0, "foreign_planted": 0, "foreign_refused": 0, "resumes_matched": 0,
             "lines_lost": 0, "lines_duplicated": 0, "corrupt_skipped": 0, "completed_runs": 0, "failures": []}
    foreign = foreign_checkpoint(base, out, env) if foreign_share > 0 else None
    fresh = [*base, "run.name=victim", "data.prefetch_rows=4", "data.worker_timeout_s=5"]
    command, after_trainer_kill = fresh, False

    def finished() -> None:  # a victim that ran to its end: its whole log against the reference, then a new one
        got = comparable(victim)
        stats["completed_runs"] += 1
        stats["lines_lost"] += len(set(reference) - set(got))
        stats["lines_duplicated"] += len(got) - len(set(got))
        stats["final_matched"] = stats.get("final_matched", True) and got == reference
        subprocess.run(["rm", "-rf", str(victim)])

    while stats["cycles"] < cycles:
        kill_worker = rng.random() < worker_share
        stop_worker = kill_worker and rng.random() < 0.5  # SIGSTOP: stuck, not dead
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        worker_killed = False
        try:
            proc.wait(timeout=rng.uniform(0.05, 1.0) * full_time)
        except subprocess.TimeoutExpired:
            if kill_worker:  # its worker, as soon as there is one (it starts with the first batch)
                while proc.poll() is None and not (workers := data_workers(proc.pid)):
                    time.sleep(0.05)
                if proc.poll() is None:
                    os.kill(workers[0], signal.SIGSTOP if stop_worker else signal.SIGKILL)
                    worker_killed = True
            else:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        err = proc.stderr.read()
        stats["corrupt_skipped"] += err.count("skipping corrupt checkpoint")
        if after_trainer_kill:  # did `--resume` (or the restart) take it from there?
            ok = proc.returncode in (0, -signal.SIGKILL)
            stats["resumable"] += ok
            if not ok:
                stats["failures"].append(err.strip().splitlines()[-1:])
        if worker_killed:
            stats["cycles"] += 1
            stats["worker_stops" if stop_worker else "worker_kills"] += 1
            stats["survived"] += proc.returncode == 0
            log(f"cycle {stats['cycles']:3d}: data worker {'stopped' if stop_worker else 'killed'}; the run "
                + ("went on and finished" + (" (worker restarted)" if "data worker died" in err else "")
                   if proc.returncode == 0 else f"FAILED ({proc.returncode})"))
        if proc.returncode == 0:
            finished()
            command, after_trainer_kill = fresh, False
            continue
        if proc.returncode != -signal.SIGKILL:  # it failed by itself: record why, start a new victim
            stats["failures"].append(err.strip().splitlines()[-1:])
            subprocess.run(["rm", "-rf", str(victim)])
            command, after_trainer_kill = fresh, False
            continue
        stats["cycles"] += 1
        stats["trainer_kills"] += 1
        checkpoints = RunDir(victim).list_checkpoints()
        stats["before_first_checkpoint"] += not checkpoints
        got = comparable(victim)
        ok = got == reference[: len(got)]  # everything logged so far is exactly the uninterrupted run's
        stats["resumes_matched"] += ok
        stats["lines_duplicated"] += len(got) - len(set(got))
        log(f"cycle {stats['cycles']:3d}: trainer killed after {len(got)} metric lines, "
            f"{len(checkpoints)} checkpoint(s); {'match' if ok else 'MISMATCH'}")
        # the harness's own way back: --resume where it left its config (also before any checkpoint), else anew
        command = [sys.executable, "experiments/run.py", "--resume", str(victim), "--no-progress"] \
            if RunDir(victim).config.exists() else fresh
        if foreign is not None and checkpoints and command is not fresh and rng.random() < foreign_share:
            stats["foreign_planted"] += 1  # as the newest: the resume must name it and refuse, changing nothing
            planted = RunDir(victim).checkpoint(int(checkpoints[-1].name.removeprefix("step_")) + 1)
            shutil.copytree(foreign, planted)
            tried = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            said = tried.stderr.strip().splitlines()[-1:]
            refused = tried.returncode == 2 and bool(said) and "the saved weights are not this model's" in said[0]
            stats["foreign_refused"] += refused
            if not refused:
                stats["failures"].append(said)
            shutil.rmtree(planted)
        after_trainer_kill = True
    # Let the last victim finish, then compare the whole log.
    final = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if after_trainer_kill:
        stats["resumable"] += final.returncode == 0
    if final.returncode == 0:
        finished()
    else:
        stats["failures"].append(final.stderr.strip().splitlines()[-1:])
        stats["final_matched"] = False
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker-share", type=float, default=0.3, help="share of kills aimed at the data worker")
    parser.add_argument("--foreign-share", type=float, default=0.2,
                        help="share of resumes first tried with a foreign checkpoint planted as the newest")
    parser.add_argument("overrides", nargs="*", default=["train.max_steps=12", "checkpointing.checkpoint_every_n_steps=2",
                                                          "train.eval_every=3"])
    args = parser.parse_intermixed_args()
    with tempfile.TemporaryDirectory() as out:
        stats = soak(args.cycles, args.preset, args.overrides, args.seed, Path(out), worker_share=args.worker_share,
                     foreign_share=args.foreign_share)
    print(json.dumps(stats, indent=1))
    print(f"{stats['cycles']} kills: trainer {stats['trainer_kills']} ({stats['before_first_checkpoint']} before the "
          f"first checkpoint), resumable {stats['resumable']}/{stats['trainer_kills']}; data worker killed "
          f"{stats['worker_kills']}, stopped {stats['worker_stops']}, survived {stats['survived']}/"
          f"{stats['worker_kills'] + stats['worker_stops']}; foreign checkpoints refused {stats['foreign_refused']}/"
          f"{stats['foreign_planted']}; "
          f"{stats['resumes_matched']}/{stats['trainer_kills']} logs matched bitwise at the kill; "
          f"{stats['lines_lost']} metric lines lost, {stats['lines_duplicated']} duplicated; "
          f"{stats['corrupt_skipped']} corrupt checkpoints skipped; every finished log identical: "
          f"{stats.get('final_matched')}")


if __name__ == "__main__":
    main()
