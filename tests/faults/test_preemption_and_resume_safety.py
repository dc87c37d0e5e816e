"""Fault injection: SIGTERM/SIGINT mid-run, SIGKILL of the trainer or its data worker at random points, a truncated
checkpoint; every resume exact."""

import signal
import subprocess
import sys

import pytest
from helpers import FAULT_ARGS, ROOT, differing_payload, load_script, run_main, values, wait_for_step

from chrono_membench.checkpoint import payload_file
from chrono_membench.safety import EXIT_PREEMPTED

ARGS = FAULT_ARGS
SOAK_SEED = 0  # with worker_share 0.5: the trainer killed, then (if the resumed run is still going) its worker stopped
run = run_main  # the resumes: in this process (the faults themselves are real processes)


def test_sigint_is_caught_like_sigterm():
    """Ctrl-C goes through the same handler as SIGTERM (the CLI test below sends SIGTERM): the first only asks."""
    import os

    from chrono_membench.safety import PreemptionGuard

    with PreemptionGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.requested == signal.SIGINT and guard.name == "SIGINT"


@pytest.mark.parametrize("sig", [signal.SIGTERM])
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
    assert differing_payload(straight, tmp_path / "sig", 10) == []  # the last checkpoint, RNG states included


def test_sigkill_at_random_points_soak(tmp_path, uninterrupted_run):
    soak = load_script("benchmarks/fault_soak.py").soak

    # which faults land depends on the machine's speed (a kill timed as a share of the uninterrupted run's wall time);
    # each kind has a deterministic test of its own (a stopped worker: tests/data/test_stream.py; a foreign
    # checkpoint: tests/faults/test_real_faults.py), the soak checks that whatever lands loses and repeats nothing
    stats = soak(2, "tiny", FAULT_ARGS[3:], seed=SOAK_SEED, out=tmp_path, log=lambda *a: None,
                 reference=uninterrupted_run, worker_share=0.5, foreign_share=0.0)
    assert stats["cycles"] == 2 == stats["trainer_kills"] + stats["worker_kills"] + stats["worker_stops"], stats
    assert stats["resumable"] == stats["trainer_kills"] == stats["resumes_matched"], stats
    assert stats["survived"] == stats["worker_kills"] + stats["worker_stops"] and not stats["failures"], stats
    assert stats["lines_lost"] == 0 and stats["lines_duplicated"] == 0 and stats["final_matched"], stats


def test_corrupt_checkpoints_are_skipped_and_the_resume_is_still_exact(tmp_path, uninterrupted_run):
    """The newest checkpoint truncated, the one before it with a manifest that lists no file: both are skipped
    (a checkpoint is good only if every payload file is listed and matches), and the run resumes from the third."""
    import json
    import shutil

    from chrono_membench.checkpoint import MANIFEST

    cut = tmp_path / "cut"
    shutil.copytree(uninterrupted_run[0], cut)
    shutil.rmtree(cut / "final_model")
    model_file = payload_file(cut / "checkpoints" / "step_00000010", "model")
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    (cut / "checkpoints" / "step_00000008" / MANIFEST).write_text(json.dumps({"step": 8, "files": {}}))
    resumed = run("--resume", str(cut), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "does not match its checksum" in resumed.stderr
    assert "does not list model.pt, optim.pt, state.pt" in resumed.stderr
    assert values(uninterrupted_run[0]) == values(cut)
