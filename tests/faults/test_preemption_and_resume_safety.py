"""Fault injection: SIGTERM mid-run, resumes that would change the experiment, two writers, broken files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chrono_membench.config import ConfigError
from chrono_membench.logging import read_metrics, truncate_metrics
from chrono_membench.safety import EXIT_PREEMPTED, run_lock

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


def test_resume_refuses_a_different_experiment_and_records_safe_changes(tmp_path):
    first = run(*ARGS, "train.max_steps=4", "checkpointing.checkpoint_every_n_steps=2", f"run.out_dir={tmp_path}",
                "run.name=r")
    assert first.returncode == 0, first.stderr[-2000:]
    for override, key in (("data.seq_len=32", "data.seq_len"), ("sae.expansion=2", "sae.expansion"),
                          ("run.seed=7", "run.seed"), ("model.tiny_d_model=32", "model.tiny_d_model")):
        refused = run("--resume", str(tmp_path / "r"), override)
        assert refused.returncode == 2 and "different experiment" in refused.stderr and key in refused.stderr
    refused = run("--resume", str(tmp_path / "r"), "--ablation", "no_dropout")
    assert refused.returncode == 2 and "chrono.dropout_p_max" in refused.stderr and "run.ablation" in refused.stderr
    longer = run("--resume", str(tmp_path / "r"), "train.max_steps=6", "train.log_every=2", "--no-progress")
    assert longer.returncode == 0, longer.stderr[-2000:]
    record = json.loads((tmp_path / "r" / "resume_log.jsonl").read_text().splitlines()[-1])
    assert record["changed"] == {"train.max_steps": 6, "train.log_every": 2}
    assert record["was"] == {"train.max_steps": 4, "train.log_every": 1}
    assert max(r["step"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")) == 6


def test_lock_prevents_two_writers_and_stale_locks_are_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        with pytest.raises(ConfigError, match=f"in use by pid {sleeper.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with run_lock(tmp_path):  # the holder is dead now: stale, taken over
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_half_written_metrics_tail_is_dropped_on_resume_and_nothing_else(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "train/loss": 1.0 / s}) for s in range(1, 7)]
    path.write_text("\n".join(lines) + "\n" + '{"step": 7, "train/lo')
    assert truncate_metrics(path, 6) == 1
    assert path.read_text() == "\n".join(lines) + "\n"
    truncate_metrics(path, 4)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]


def test_malformed_preset_missing_package_offline_hub_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {max_steps: [\n")
    proc = run("--config", str(bad))
    assert proc.returncode == 2 and "is not valid YAML" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("--preset", "tiny", "model.name=gguf:/nonexistent/model.gguf", f"run.out_dir={tmp_path}")
    assert proc.returncode == 2 and "nor an existing .gguf file" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "experiments/run.py", "--preset", "tiny", "data.origin=hub",
                           f"run.out_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "data/prepare.py" in proc.stderr and "Traceback" not in proc.stderr


def test_full_disk_during_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    import torch

    import chrono_membench.checkpoint as ckpt_mod
    import chrono_membench.train as train_mod
    from chrono_membench.checkpoint import CheckpointWriteError, latest_good_checkpoint, list_checkpoints
    from chrono_membench.config import load_config

    cfg = load_config("tiny", overrides=["train.max_steps=8", "checkpointing.checkpoint_every_n_steps=4"])
    real_save, calls = torch.save, {"n": 0}

    def save_until_disk_fills(obj, f):
        calls["n"] += 1
        if calls["n"] > 4:  # the first checkpoint (model, optim, state, saes) fits; the second does not
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(ckpt_mod.torch, "save", save_until_disk_fills)
    with pytest.raises(CheckpointWriteError, match=r"cannot write .*step_00000008: No space left on device; "
                                                   r"it needs about .* GB, .* GB free; the previous good checkpoint"):
        train_mod.train(cfg, tmp_path / "r", progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_00000004"]
    assert not list((tmp_path / "r" / "checkpoints").glob(".tmp*"))  # nothing half-written left behind
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    path, _ = latest_good_checkpoint(tmp_path / "r")
    summary = train_mod.train(cfg, tmp_path / "r", resume=True, progress=False)  # and it resumes from there
    assert path.name == "step_00000004" and summary.steps == 8


def test_full_disk_during_an_artifact_write(tmp_path, monkeypatch):
    import errno

    import chrono_membench.evaluation as evaluation
    import chrono_membench.train as train_mod
    from chrono_membench.checkpoint import CheckpointWriteError, list_checkpoints
    from chrono_membench.config import load_config

    real, calls = evaluation.save_file, {"n": 0}

    def fill(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # purity at steps 0 and 4 fit; at step 8 the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "save_file", fill)
    cfg = load_config("tiny", overrides=["train.max_steps=8"])
    with pytest.raises(CheckpointWriteError, match=r"purity_blocks_1_hook_resid_post.safetensors: No space left"):
        train_mod.train(cfg, tmp_path / "r", progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_00000004"]
    assert not list((tmp_path / "r" / "artifacts").rglob("*.tmp"))


def test_failed_artifact_uploads_are_counted_and_retried(tmp_path):
    from chrono_membench.logging import MetricsLogger

    logger = MetricsLogger(tmp_path, {}, "disabled", "p", "g", "full", "r")
    uploaded, fail = [], {"on": True}

    class FakeRun:
        def log_artifact(self, artifact):
            if fail["on"]:
                raise ConnectionError("no network")
            uploaded.append(artifact.name)

    logger.wandb_run = FakeRun()
    (tmp_path / "a.bin").write_bytes(b"x")
    with pytest.warns(UserWarning, match="will retry"):
        logger.log_artifact(tmp_path / "a.bin", "first", "features")
    assert logger.artifact_failures == 1 and len(logger.pending_artifacts) == 1
    fail["on"] = False
    logger.log_artifact(tmp_path / "a.bin", "second", "features")
    assert uploaded == ["first", "second"] and not logger.pending_artifacts
    logger.wandb_run = None
    logger.close()


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
