"""The SAE bank inside the trainer: it never touches the LM, it learns, it saves, it resumes."""

import pytest
import torch
import yaml
from helpers import HOOK, series, train_tiny
from safetensors.torch import load_file
from sae_lens import SAE

import chrono_membench.train as train_mod
from chrono_membench import hooks
from chrono_membench.checkpoint import latest_good_checkpoint
from chrono_membench.config import ConfigError, load_config
from chrono_membench.model import load_model
from chrono_membench.sae import SAEBank


def run(tmp_path, name, *overrides, ablation=None):
    return train_tiny(tmp_path / name, *overrides, ablation=ablation)


def bank_for(cfg, model, hook_points):
    return SAEBank(cfg.sae, cfg.chrono, cfg.train.max_steps, hooks.activation_widths(model, hook_points),
                   torch.device("cpu"))


def test_sae_bank_leaves_the_lm_bitwise_unchanged(tmp_path):
    run(tmp_path, "with", "train.max_steps=6", "checkpointing.checkpoint_every_n_steps=6")
    run(tmp_path, "without", "train.max_steps=6", "checkpointing.checkpoint_every_n_steps=6", "sae.enabled=false")
    a = latest_good_checkpoint(tmp_path / "with")[1]["model"]
    b = latest_good_checkpoint(tmp_path / "without")[1]["model"]
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sae_learns_and_logs_every_key(tmp_path):
    # A nearly frozen LM, so the test isolates the SAE's learning from the LM's drift.
    m = run(tmp_path, "r", "train.lr=1e-7", "train.max_steps=24", "train.chrono_every=4", "train.eval_every=12",
            "checkpointing.checkpoint_every_n_steps=12")
    keys = set().union(*m)
    for key in ("mse", "sparsity", "fve", "l0", "dead_frac", "ce_recovered"):
        assert f"sae/{HOOK}/{key}" in keys
    for key in ("alignment_loss", "mmcs", "self_match_frac"):
        assert f"chrono/{HOOK}/{key}" in keys
    assert "chrono/temporal_dropout_rate" in keys
    fve, mse = series(m, f"sae/{HOOK}/fve"), series(m, f"sae/{HOOK}/mse")
    assert fve[-1][1] > fve[0][1] + 0.2 and mse[-1][1] < 0.7 * mse[0][1]
    l0 = series(m, f"sae/{HOOK}/l0")
    assert len(l0) == 6 and all(v == 8.0 for _, v in l0)  # topk, k=8 in the tiny preset


def test_ablations_switch_exactly_their_mechanism(tmp_path):
    common = ("train.max_steps=8", "train.chrono_every=1")
    full = run(tmp_path, "full", *common)
    rates = [v for _, v in series(full, "chrono/temporal_dropout_rate")]
    expected = [0.1 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / 8)).item()) for s in range(1, 9)]
    assert rates == pytest.approx(expected)
    assert any(v > 0 for _, v in series(full, f"chrono/{HOOK}/alignment_loss"))
    no_dropout = run(tmp_path, "nd", *common, ablation="no_dropout")
    for key in ("chrono/temporal_dropout_rate", f"chrono/{HOOK}/dropped_frac"):
        logged = series(no_dropout, key)
        assert len(logged) == 8 and all(v == 0.0 for _, v in logged), key
    no_align = run(tmp_path, "na", *common, ablation="no_alignment")
    align = series(no_align, f"chrono/{HOOK}/alignment_loss")
    assert len(align) == 8 and all(v == 0.0 for _, v in align)
    assert series(no_align, f"chrono/{HOOK}/mmcs") and series(no_align, f"chrono/{HOOK}/hungarian_mcs")
    saved = yaml.safe_load((tmp_path / "na" / "config.yaml").read_text())
    assert saved["run"]["ablation"] == "no_alignment" and saved["chrono"]["alignment_weight"] == 0.0


def test_artifacts_load_with_sae_lens_and_match_the_bank(tmp_path):
    cfg = load_config("tiny", overrides=["train.max_steps=4"])
    train_mod.train(cfg, tmp_path / "r", progress=False)
    step_dir = tmp_path / "r" / "artifacts" / "step_00000004"
    features = load_file(step_dir / "features_blocks_1_hook_resid_post.safetensors")
    d_sae = cfg.sae.expansion * cfg.model.tiny_d_model
    assert features["decoder_unit"].shape == (d_sae, cfg.model.tiny_d_model)
    assert features["decoder_unit"].dtype == torch.float16
    assert features["firing_frequency"].shape == features["mean_activation"].shape == (d_sae,)
    assert features["firing_frequency"].sum().item() == pytest.approx(cfg.sae.k, rel=0.01)  # k fire per token
    loaded = SAE.load_from_disk(str(step_dir / "sae_blocks_1_hook_resid_post"))
    # The bank, restored from the checkpoint, reconstructs raw activations exactly as the saved SAE does.
    model, _ = load_model(cfg.model)
    bank = bank_for(cfg, model, [HOOK])
    bank.load_state_dict(latest_good_checkpoint(tmp_path / "r")[1]["saes"])
    raw = torch.randn(64, cfg.model.tiny_d_model) * 3
    s = bank.scale(HOOK)
    with torch.no_grad():
        torch.testing.assert_close(loaded(raw), bank.saes[HOOK](raw * s) / s, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(loaded(raw), bank.reconstruct(HOOK, raw), atol=1e-4, rtol=1e-4)


def test_two_hook_points_and_bad_hook_names(tmp_path):
    m = run(tmp_path, "two", "train.max_steps=2", "train.chrono_every=2",
            "sae.hook_points=[blocks.0.hook_resid_post, blocks.1.hook_resid_post]")
    assert {"sae/blocks.0.hook_resid_post/fve", f"sae/{HOOK}/fve"} <= set().union(*m)
    with pytest.raises(ConfigError, match="sae.hook_points: 'blocks.1.hook_resid' is not a supported hook point"):
        load_config("tiny", overrides=["sae.hook_points=[blocks.1.hook_resid]"])
    with pytest.raises(ConfigError, match="'blocks.7.hook_resid_post' names layer 7, but the model has layers 0..1"):
        train_mod.train(load_config("tiny", overrides=["sae.hook_points=[blocks.7.hook_resid_post]"]), tmp_path / "bad",
                        progress=False)
    assert not (tmp_path / "bad").exists()  # refused before it trained: nothing left behind


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "batchtopk"])
def test_other_sae_lens_architectures_train(tmp_path, arch):
    m = run(tmp_path, arch, f"sae.architecture={arch}", "train.max_steps=4", "train.chrono_every=2")
    mse = series(m, f"sae/{HOOK}/mse")
    assert len(mse) == 2 and all(torch.isfinite(torch.tensor(v)) for _, v in mse)
    assert (tmp_path / arch / "artifacts" / "step_00000004" / "sae_blocks_1_hook_resid_post" / "cfg.json").exists()
