"""Fault injection: SIGTERM/SIGINT mid-run, SIGKILL of the trainer or its data worker at random points, a truncated
checkpoint; every resume exact."""

import signal
import subprocess
import sys

import pytest
from helpers import FAULT_ARGS, ROOT, cli, load_script, values, wait_for_step

from chrono_membench.checkpoint import payload_file
from chrono_membench.safety import EXIT_PREEMPTED

ARGS = FAULT_ARGS
SOAK_SEED = 1  # with worker_share 0.5, its draws kill both the trainer and the data worker (asserted below)
run = cli


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_the_step_in_flight_and_resume_is_exact(tmp_path, sig, uninterrupted_run):
    straight = uninterrupted_run[0]
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
    assert values(straight) == values(tmp_path / "sig")  # bitwise, no line lost or repeated


def test_sigkill_at_random_points_soak(tmp_path, uninterrupted_run):
    soak = load_script("benchmarks/fault_soak.py").soak

    stats = soak(3, "tiny", FAULT_ARGS[3:], seed=SOAK_SEED, out=tmp_path, log=lambda *a: None,
                 reference=uninterrupted_run, worker_share=0.5)
    assert stats["cycles"] == 3 and stats["trainer_kills"] >= 1 and stats["worker_kills"] >= 1, stats
    assert stats["resumable"] == stats["trainer_kills"] == stats["resumes_matched"], stats
    assert stats["survived"] == stats["worker_kills"] and not stats["failures"], stats
    assert stats["lines_lost"] == 0 and stats["lines_duplicated"] == 0 and stats["final_matched"], stats


def test_truncated_checkpoint_is_skipped_and_the_resume_is_still_exact(tmp_path, uninterrupted_run):
    args = [*ARGS, f"run.out_dir={tmp_path}"]
    partial = run(*args, "run.name=cut", "train.max_steps=10")  # same run, then damage its newest checkpoint
    assert partial.returncode == 0
    newest = sorted((tmp_path / "cut" / "checkpoints").glob("step_*"))[-1]
    model_file = payload_file(newest, "model")
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    (tmp_path / "cut" / "final_model").rename(tmp_path / "cut" / "final_model.old")
    resumed = run("--resume", str(tmp_path / "cut"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "skipping corrupt checkpoint" in resumed.stderr and "does not match its checksum" in resumed.stderr
    assert values(uninterrupted_run[0]) == values(tmp_path / "cut")
