"""The run directory: atomic writes never leave half a file, one writer at a time, stale locks are taken."""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import HOLD

from chrono_membench.config import ConfigError
from chrono_membench.run_dir import RunDir, RunWriteError, atomic_write, latest_run, run_lock

def test_lock_prevents_two_writers_and_stale_locks_are_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"in use by pid {holder.pid}"):
            with run_lock(RunDir(tmp_path)):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies holding it: no clean-up ran
        holder.wait()
    assert (tmp_path / ".lock").exists()  # left behind by the killed holder: stale
    with run_lock(RunDir(tmp_path)):  # taken over
        assert json.loads((tmp_path / ".lock.owner").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists() and not (tmp_path / ".lock.owner").exists()


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_write(target) as tmp:
        tmp.write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(RunWriteError, match=r"cannot write .*a.txt: No space left on device, .* GB free"):
        with atomic_write(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    directory = tmp_path / "d"
    for content in ("x", "y"):
        with atomic_write(directory) as tmp:
            tmp.mkdir()
            (tmp / "f").write_text(content)
    assert (directory / "f").read_text() == "y" and not list(tmp_path.glob(".tmp*d"))


def test_run_dir_paths_and_latest_run(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.checkpoint(12).name == "step_00000012" and run.artifacts(12).parent == run.artifacts_root
    assert run.list_checkpoints() == [] and latest_run(tmp_path) is None
    run.checkpoint(4).mkdir(parents=True)
    run.write_text(run.config, "run: {}\n")
    (tmp_path / "never_trained").mkdir()
    (tmp_path / "never_trained" / "config.yaml").write_text("run: {}\n")
    assert latest_run(tmp_path).root == run.root


def test_one_table_names_every_artifact_and_finds_them_by_step(tmp_path):
    from chrono_membench.run_dir import RunDir

    run = RunDir(tmp_path)
    assert run.artifact(10, "features", "blocks.6.hook_resid_post") == \
        tmp_path / "artifacts" / "step_00000010" / "features_blocks_6_hook_resid_post.safetensors"
    assert run.artifact(10, "sae", "blocks.6.hook_resid_post", variant="k16") == \
        tmp_path / "artifacts" / "step_00000010" / "variant_k16" / "sae_blocks_6_hook_resid_post"
    for step in (20, 10):
        for hook in ("blocks.1.hook_resid_post", "blocks.2.hook_resid_post"):
            path = run.artifact(step, "purity", hook)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    assert [s for s, _ in run.artifact_steps("purity")] == [10, 10, 20, 20]
    assert run.artifact_steps("purity", "blocks.2.hook_resid_post") == [
        (s, run.artifact(s, "purity", "blocks.2.hook_resid_post")) for s in (10, 20)]
    assert run.artifact_steps("latents") == [] and RunDir(tmp_path / "none").artifact_steps("purity") == []
