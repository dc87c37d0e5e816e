"""Checkpoints: the payload round-trips, corrupt ones are skipped, a full disk keeps the previous one."""

import errno
import warnings

import pytest
import torch
from helpers import tiny

import chrono_membench.checkpoint as checkpoint
import chrono_membench.train as train_mod
from chrono_membench.checkpoint import CheckpointWriteError, latest_good_checkpoint, list_checkpoints


def test_payload_holds_what_resume_needs(tmp_path):
    train_mod.train(tiny("train.max_steps=4"), tmp_path / "r", progress=False)
    path, ckpt = latest_good_checkpoint(tmp_path / "r")
    assert set(ckpt) == {"model", "optim", "state", "saes"}
    state = ckpt["state"]
    assert state["step"] == 4 and state["world_size"] == 1 and state["skipped"] == 0
    assert set(state["batches"]) == {"stream", "seen_log", "last_counted", "pending", "probes"}
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    assert all(entry[2] >= 1 for entry in state["batches"]["seen_log"].values())  # every seen document counted


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path):
    run = tmp_path / "r"
    train_mod.train(tiny("train.max_steps=8"), run, progress=False)
    newest = list_checkpoints(run)[-1]
    with open(checkpoint.payload_file(newest, "model"), "r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, _ = latest_good_checkpoint(run)
    assert path.name == "step_00000004" and any("skipping corrupt checkpoint" in str(w.message) for w in caught)
    (list_checkpoints(run)[0] / "manifest.json").unlink()
    assert latest_good_checkpoint(run) is None


def test_full_disk_during_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = tiny("train.max_steps=8", "checkpointing.checkpoint_every_n_steps=4")
    real_save, calls = torch.save, {"n": 0}

    def save_until_disk_fills(obj, f):
        calls["n"] += 1
        if calls["n"] > 4:  # the first checkpoint (model, optim, state, saes) fits; the second does not
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(checkpoint.torch, "save", save_until_disk_fills)
    with pytest.raises(CheckpointWriteError, match=r"cannot write .*step_00000008: No space left on device; "
                                                   r"it needs about .* GB, .* GB free; the previous good checkpoint"):
        train_mod.train(cfg, tmp_path / "r", progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_00000004"]
    assert not list((tmp_path / "r" / "checkpoints").glob(".tmp*"))  # nothing half-written left behind
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    path, _ = latest_good_checkpoint(tmp_path / "r")
    summary = train_mod.train(cfg, tmp_path / "r", resume=True, progress=False)  # and it resumes from there
    assert path.name == "step_00000004" and summary.steps == 8


def test_a_finished_run_sheds_the_optimiser_states_of_all_but_its_last_checkpoint(tmp_path):
    """checkpointing.shed_optimizer (the demo's): the earlier checkpoints keep model and SAEs (what analysis reads)
    but not the optimiser state only a resume from them needs; a resume from one says why in one line; the last stays
    whole."""
    from chrono_membench.checkpoint import load_checkpoint, verify_checkpoint

    train_mod.train(tiny("train.max_steps=4", "checkpointing.checkpoint_every_n_steps=2",
                         "checkpointing.shed_optimizer=true"), tmp_path / "r", progress=False)
    first, last = list_checkpoints(tmp_path / "r")
    assert not (first / "optim.pt").exists() and (last / "optim.pt").exists()
    assert set(load_checkpoint(first, required=("model",))) == {"model", "saes", "state"}  # analysis still reads it
    with pytest.raises(ValueError, match="deleted when the run finished .*resume from the last checkpoint"):
        verify_checkpoint(first)
    assert latest_good_checkpoint(tmp_path / "r")[0] == last
    train_mod.train(tiny("train.max_steps=4", "checkpointing.checkpoint_every_n_steps=2"), tmp_path / "kept",
                    progress=False)  # the default: every checkpoint whole (resume from any, corrupt-last fallback)
    assert all((p / "optim.pt").exists() for p in list_checkpoints(tmp_path / "kept"))
