import subprocess
import sys
from pathlib import Path

import pytest

from chrono_membench.config import ABLATIONS, ConfigError, load_config, preset_names

ROOT = Path(__file__).resolve().parents[1]


def test_presets_load_and_carry_seed_values():
    assert {"demo", "demo-gemma", "gemma-2b", "llama-3-8b"} <= set(preset_names())
    for name in ("gemma-2b", "llama-3-8b"):
        cfg = load_config(name)
        t = cfg.train
        assert (t.micro_batch, t.grad_accum, cfg.data.seq_len, t.max_steps) == (2, 16, 2048, 5000)
        assert (t.eval_every, t.log_every, t.chrono_every) == (250, 50, 100)
        assert cfg.checkpointing.checkpoint_every_n_steps == 500
        assert cfg.checkpointing.save_features and cfg.checkpointing.save_sae_state


def test_overrides_are_typed():
    cfg = load_config("demo", overrides=["train.max_steps=20", "train.lr=1e-3",
                                         "sae.hook_points=[blocks.1.hook_resid_post]"])
    assert cfg.train.max_steps == 20 and cfg.train.lr == 1e-3
    assert cfg.sae.hook_points == ["blocks.1.hook_resid_post"]


def test_ablation_sets_exactly_its_switches():
    full = load_config("demo").to_dict()
    for name, switches in ABLATIONS.items():
        cfg = load_config("demo", ablation=name).to_dict()
        changed = {f"{s}.{k}" for s in full for k in full[s] if full[s][k] != cfg[s][k]}
        # every switch holds its value; nothing else moves (a switch may equal the preset's value already, e.g.
        # no_diversity's fixed μ of 0, which matters when a run fixes μ instead of its share)
        assert all(cfg[key.split(".")[0]][key.split(".")[1]] == value for key, value in switches.items()), name
        assert changed <= set(switches) | {"run.ablation"}, name
        assert (name == "full") == (changed == set()), name


@pytest.mark.parametrize("overrides, needle", [
    (["train.max_stepz=3"], "unknown key 'train.max_stepz'"),
    (["bogus.x=1"], "unknown key 'bogus'"),
    (["train.max_steps=abc"], "train.max_steps must be int"),
    (["train.max_steps=0"], "train.max_steps must be a positive integer"),
    (["train.eval_every=-5"], "train.eval_every must be a positive integer"),
    (["checkpointing.checkpoint_every_n_steps=0"], "checkpointing.checkpoint_every_n_steps must be a positive"),
    (["data.mixture={fineweb_edu: 0.5, orca_math: 0.2}"], "data.mixture weights must sum to 1"),
    (["data.mixture={fineweb_edu: 0.5, reddit: 0.5}"], "data.mixture source 'reddit' must be one of"),
    (["run.ablation=no_everything"], "unknown ablation 'no_everything'; allowed: full, no_dropout"),
    (["train.optimizer=sgd"], "train.optimizer must be one of adamw, muon"),
    (["checkpointing.save_features=maybe"], "checkpointing.save_features must be bool"),
    (["train.max_steps"], "must look like section.key=value"),
    # values the loop would take and crash on after the model loads (issue 47): refused here
    (["train.lr=nan"], "train.lr must be a finite number, got nan"),
    (["train.lr=.inf"], "train.lr must be a finite number, got inf"),
    (["train.weight_decay=-1"], "train.weight_decay must be >= 0"),
    (["train.betas=[1.5, 0.9]"], "train.betas must be two numbers in [0, 1)"),
    (["train.grad_clip=0"], "train.grad_clip must be > 0"),
    (["run.seed=-1"], "run.seed must be >= 0"),
    (["data.seq_len=1"], "data.seq_len must be >= 2"),
    (["sae.sparsity_coefficient=nan"], "sae.sparsity_coefficient must be a finite number"),
    (["run.name=../../escape_dir"], "run.name='../../escape_dir' must be a plain directory name inside run.out_dir"),
    (["run.out_dir="], "run.out_dir must name a directory"),
    (["sae.architecture=nope"], "sae.architecture='nope' is not a registered SAE architecture"),
])
def test_validation_errors_name_the_field(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config("demo", overrides=overrides)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_preset_lists_allowed():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; allowed: .*demo"):
        load_config("nope")


def test_malformed_yaml_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_steps: [1,\n")
    with pytest.raises(ConfigError, match=f"{bad} is not valid YAML at line"):
        load_config(config_path=bad)


def test_cli_exits_2_with_one_line_and_no_traceback():
    for args in (["train.max_steps=0"], ["run.ablation=nope"], ["data.mixture.fineweb_edu=0.9"]):
        proc = subprocess.run([sys.executable, "experiments/inspect_data.py", "--preset", "demo", *args],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_a_cuda_device_without_cuda_is_refused_by_the_config():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"^run.device=cuda: this torch \(.*\) sees no CUDA device; allowed here"):
        load_config("tiny", overrides=["run.device=cuda"])


def test_the_config_is_checked_without_torch():
    """Every check but a CUDA request runs without importing torch (a bad value, or a run directory in use, is
    refused in a fraction of a second, not after torch's import)."""
    code = ("import sys; from chrono_membench.config import load_config; load_config('demo'); "
            "load_config('tiny', overrides=['sae.hook_points=[blocks.1.hook_resid_post]']); "
            "print('torch' in sys.modules, 'sae_lens' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.split() == ["False", "False"], proc.stderr[-2000:]
