"""Fault injection: SIGTERM mid-run, resumes that would change the experiment, two writers, broken files."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chrono_membench.logging import read_metrics
from chrono_membench.safety import EXIT_PREEMPTED

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--preset", "tiny", "--no-progress", "train.max_steps=10", "checkpointing.checkpoint_every_n_steps=5",
        "train.eval_every=3"]
TIMING = ("train/tokens_per_s", "time/eval_s", "time/attn_metrics_s")




def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "experiments/run.py", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def values(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run_dir / "metrics.jsonl")]


def wait_for_step(run_dir, step, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "metrics.jsonl").exists() and any(
                r.get("step", 0) >= step and "train/loss" in r for r in read_metrics(run_dir / "metrics.jsonl")):
            return
        time.sleep(0.05)
    raise AssertionError(f"run did not reach step {step}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_the_step_in_flight_and_resume_is_exact(tmp_path, sig):
    straight = run(*ARGS, f"run.out_dir={tmp_path}", "run.name=straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    proc = subprocess.Popen([sys.executable, "experiments/run.py", *ARGS, f"run.out_dir={tmp_path}", "run.name=sig"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(tmp_path / "sig", 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    assert "preempted: stopped by" in err and "--resume" in err
    assert not (tmp_path / "sig" / ".lock").exists()  # released
    resumed = run("--resume", str(tmp_path / "sig"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert values(tmp_path / "straight") == values(tmp_path / "sig")  # bitwise, no line lost or repeated


def test_sigkill_at_random_points_soak(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fault_soak import soak

    stats = soak(2, "tiny", ["train.max_steps=8", "checkpointing.checkpoint_every_n_steps=2", "train.eval_every=3"],
                 seed=1, out=tmp_path, log=lambda *a: None)
    assert stats["cycles"] == 2 and stats["resumes_matched"] == 2
    assert stats["lines_lost"] == 0 and stats["lines_duplicated"] == 0 and stats["final_matched"]


def test_truncated_checkpoint_is_skipped_and_the_resume_is_still_exact(tmp_path):
    args = [*ARGS, f"run.out_dir={tmp_path}"]
    assert run(*args, "run.name=straight").returncode == 0
    partial = run(*args, "run.name=cut", "train.max_steps=10")  # same run, then damage its newest checkpoint
    assert partial.returncode == 0
    newest = sorted((tmp_path / "cut" / "checkpoints").glob("step_*"))[-1]
    model_file = newest / "model.pt"
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    (tmp_path / "cut" / "final_model").rename(tmp_path / "cut" / "final_model.old")
    resumed = run("--resume", str(tmp_path / "cut"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "skipping corrupt checkpoint" in resumed.stderr and "does not match its checksum" in resumed.stderr
    assert values(tmp_path / "straight") == values(tmp_path / "cut")
