"""Artifacts: sae-lens SAEs on every hook kind, features and purity files; a full disk leaves nothing half-written."""

import errno

import pytest
import torch
from helpers import tiny, train_tiny
from safetensors.torch import load_file
from sae_lens import SAE

import chrono_membench.artifacts as artifacts
import chrono_membench.train as train_mod
from chrono_membench.checkpoint import CheckpointWriteError, list_checkpoints
from chrono_membench.hooks import file_name

HOOKS = ["blocks.1.hook_mlp_out", "blocks.1.attn.hook_z", "blocks.0.hook_resid_pre"]


def test_every_hook_kind_trains_logs_and_exports_a_sae_lens_sae(tmp_path):
    metrics = train_tiny(tmp_path / "r", "train.max_steps=4", f"sae.hook_points=[{','.join(HOOKS)}]")
    keys = set().union(*metrics)
    step_dir = tmp_path / "r" / "artifacts" / "step_00000004"
    cfg = tiny()
    for hook in HOOKS:
        assert {f"sae/{hook}/fve", f"sae/{hook}/ce_recovered", f"chrono/{hook}/temporal_purity"} <= keys
        sae = SAE.load_from_disk(str(step_dir / f"sae_{file_name(hook)}"))
        # hook_z: n_heads · d_head = 4 · 16; the others: d_model
        assert sae.cfg.metadata.hook_name == hook and sae.cfg.d_in == cfg.model.tiny_d_model
        meta = sae.cfg.metadata  # what another tool needs to place it: model, context, data, the step it belongs to
        assert (meta.model_name, meta.context_size, meta.chrono_membench_step) == ("tiny", cfg.data.seq_len, 4)
        assert meta.dataset_path.startswith("chrono-membench synthetic mixture (fineweb_edu 0.4")
        assert sae.cfg.d_sae == cfg.sae.expansion * cfg.model.tiny_d_model
        features = load_file(step_dir / f"features_{file_name(hook)}.safetensors")
        assert features["decoder_unit"].shape == (sae.cfg.d_sae, sae.cfg.d_in)
        assert features["firing_frequency"].sum().item() == pytest.approx(cfg.sae.k, rel=0.01)  # k fire per token
        assert features["decoder_unit"].dtype == torch.float16


def test_full_disk_during_an_artifact_write(tmp_path, monkeypatch):
    real, calls = artifacts.save_file, {"n": 0}

    def fill(*args, **kwargs):
        calls["n"] += 1
        # eval: density (steps 0, 4, 8) then purity (4, 8: step 0 has only the unseen column, no purity);
        # checkpoint: features and latent records (4, 8). The 7th write, purity at 8, fails.
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(artifacts, "save_file", fill)
    with pytest.raises(CheckpointWriteError, match=r"purity_blocks_1_hook_resid_post.safetensors: No space left"):
        train_mod.train(tiny("train.max_steps=8"), tmp_path / "r", progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_00000004"]
    assert not list((tmp_path / "r" / "artifacts").rglob(".tmp*"))
