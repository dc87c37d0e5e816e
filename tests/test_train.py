"""The loop: LR schedule, grad accumulation, a run's outputs, Muon, MFU, bitwise kill/resume, skipped steps."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import FAULT_ARGS, ROOT, differing_payload, losses, run_main, series, tiny, train_tiny

import chrono_membench.train as train_mod
from chrono_membench.checkpoint import latest_good_checkpoint, list_checkpoints
from chrono_membench.config import read_yaml
from chrono_membench.evaluation import lm_loss
from chrono_membench.logging import read_metrics
from chrono_membench.metric_keys import is_timing
from chrono_membench.model import hf_state_dict, load_model


def test_grad_accumulation_equals_one_big_batch():
    cfg = tiny()
    model, _ = load_model(cfg.model)
    tokens = torch.randint(0, 1000, (4, 24))
    src = torch.zeros_like(tokens)
    params = [p for p in model.parameters() if p.requires_grad]
    lm_loss(model(tokens), tokens, src).backward()
    big = [p.grad.clone() for p in params]
    model.zero_grad()
    for part in tokens.split(1):
        (lm_loss(model(part), part, src[:1]) / 4).backward()
    for a, p in zip(big, params):
        torch.testing.assert_close(p.grad, a, atol=1e-6, rtol=1e-4)


def test_run_writes_everything_and_val_improves(tmp_path):
    summary = train_mod.train(tiny("train.max_steps=8"), tmp_path / "r", progress=False)
    run = tmp_path / "r"
    assert (run / "config.yaml").exists() and [p.name for p in list_checkpoints(run)] == ["step_00000004", "step_00000008"]
    metrics = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in metrics if "train/loss" in r] == list(range(1, 9))
    keys = set().union(*metrics)
    assert {"train/loss", "train/ppl", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss", "val/ppl"} <= keys
    assert summary.val_ppl[-1][1] < summary.val_ppl[0][1]
    # The exported model loads with no harness code, in HF and in TransformerLens, and matches the trained one.
    from transformers import AutoModelForCausalLM
    from transformer_lens.model_bridge import TransformerBridge

    hf = AutoModelForCausalLM.from_pretrained(run / "final_model")
    bridge = TransformerBridge.boot_transformers(str(run / "final_model"), device="cpu")
    tokens = torch.randint(0, 1000, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(bridge(tokens), hf(tokens).logits)
    ckpt_model = latest_good_checkpoint(run)[1]["model"]
    torch.testing.assert_close(hf.state_dict()["model.norm.weight"], ckpt_model["model.norm.weight"])


def test_muon_path_runs(tmp_path):
    cfg = tiny("train.optimizer=muon", "train.max_steps=4")
    summary = train_mod.train(cfg, tmp_path / "m", progress=False)
    assert summary.steps == 4 and summary.last_loss < summary.first_loss
    muon, adamw = latest_good_checkpoint(tmp_path / "m")[1]["optim"]  # Muon really stepped the hidden matrices
    assert muon["param_groups"][0]["adjust_lr_fn"] == "match_rms_adamw" and muon["param_groups"][0]["base_lr"] == 0.02
    hf = load_model(cfg.model)[0].original_model
    hidden = [p for n, p in hf.named_parameters() if p.ndim == 2 and "embed" not in n]
    assert len(muon["param_groups"][0]["params"]) == len(hidden) and len(muon["state"]) == len(hidden)
    assert all("momentum_buffer" in st for st in muon["state"].values())
    assert "exp_avg" in next(iter(adamw["state"].values()))  # embeddings and norms: AdamW


def test_mfu_counts_the_model_flops_against_the_given_peak(tmp_path):
    from chrono_membench.mfu import flops_per_token, peak_flops

    cfg = tiny("train.max_steps=2", "train.peak_tflops=0.001", "sae.enabled=false", "chrono.enabled=false")
    model, _ = load_model(cfg.model)
    hf = model.original_model
    matrices = sum(p.numel() for n, p in hf.named_parameters() if p.ndim == 2 and "embed" not in n)
    unembedding = hf.config.vocab_size * hf.config.hidden_size  # tied: counted once as a matmul, not as a lookup
    attention = 12 * cfg.model.tiny_layers * cfg.data.seq_len * cfg.model.tiny_d_model
    assert flops_per_token(model.cfg, cfg.data.seq_len) == 6 * (matrices + unembedding) + attention
    assert peak_flops(torch.device("cpu")) == 0  # no datasheet peak for a CPU: no train/mfu unless configured
    train_mod.train(cfg, tmp_path / "mfu", progress=False)
    records = [r for r in read_metrics(tmp_path / "mfu" / "metrics.jsonl") if "train/mfu" in r]
    assert len(records) == 2
    for r in records:
        want = flops_per_token(model.cfg, cfg.data.seq_len) * r["train/tokens_per_s"] / 1e9
        assert r["train/mfu"] == pytest.approx(want)


def test_kill_and_resume_is_bitwise_identical(tmp_path, uninterrupted_run):
    straight = uninterrupted_run[0]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "experiments/run.py", *FAULT_ARGS, f"run.out_dir={tmp_path}",
                             "run.name=killed"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = tmp_path / "killed"
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step_00000004").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "final_model").exists()  # really killed mid-run
    resumed = run_main("--resume", str(killed), "--no-progress")  # in this process: what a fresh one computes
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_metrics(straight / "metrics.jsonl"), read_metrics(killed / "metrics.jsonl")
    assert losses(straight) == losses(killed)  # bitwise: JSON floats round-trip exactly
    assert losses(straight, "val/loss") == losses(killed, "val/loss")
    strip = lambda rs: [{k: v for k, v in r.items() if not is_timing(k)} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)  # every value bitwise (SAE metrics included); no line lost, none duplicated
    # 5 evals (0, 3, 6, 9, 10): the forgetting slopes, which read the evals before the kill back from their
    # probe_scores artifacts, are among those values
    assert [r["step"] for r in a if "mem/forgetting/ref" in r] == [9, 10]
    assert differing_payload(straight, killed, 10) == []  # the whole last checkpoint, RNG states included


def test_non_finite_steps_are_skipped_then_stop(tmp_path, monkeypatch):
    real = train_mod.lm_loss
    calls = {"n": 0}

    def sometimes_nan(logits, tokens, src):
        loss = real(logits, tokens, src)
        if not torch.is_grad_enabled():  # eval
            return loss
        calls["n"] += 1  # training micro-steps: step s runs calls 2s-1 and 2s (grad_accum=2)
        bad = calls["n"] in (3, 4) or calls["n"] >= 13  # step 2, then step 7 onwards
        return loss * float("nan") if bad else loss

    monkeypatch.setattr(train_mod, "lm_loss", sometimes_nan)
    cfg = tiny("train.max_steps=20", "train.max_skipped_in_a_row=2", "train.eval_every=100")
    with pytest.raises(train_mod.TrainingStopped, match="3 updates in a row"):
        train_mod.train(cfg, tmp_path / "r", progress=False)
    skipped = losses(tmp_path / "r", "train/skipped_steps")
    assert skipped[1] == 0 and skipped[2] == 1 and skipped[6] == 1  # one skipped, then training went on
    assert max(skipped) == 9 and skipped[9] == 4  # steps 7, 8, 9 in a row > 2 → stop
    path, ckpt = latest_good_checkpoint(tmp_path / "r")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_the_frozen_lm_arm_trains_the_saes_on_an_lm_that_never_changes(tmp_path):
    cfg = tiny("train.max_steps=4", "checkpointing.checkpoint_every_n_steps=2", "train.eval_every=2",
               ablation="frozen_lm")
    train_mod.train(cfg, tmp_path / "f", progress=False)
    start = hf_state_dict(load_model(cfg.model, "cpu", seed=cfg.run.seed)[0])
    end = latest_good_checkpoint(tmp_path / "f")[1]["model"]
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)
    val = losses(tmp_path / "f", "val/loss")
    assert len(val) == 3 and len(set(val.values())) == 1  # the same LM at every eval
    mse = list(losses(tmp_path / "f", "sae/blocks.1.hook_resid_post/mse").values())
    assert mse[-1] < mse[0]  # while its SAEs learn, and drift is measured against this floor
    for key in ("hungarian_mcs", "hungarian_mcs_encoder"):
        assert list(losses(tmp_path / "f", f"chrono/blocks.1.hook_resid_post/{key}")) == [4], key
    # The last checkpoint's exported SAE, evaluated on the model as it is now: on an LM that never changes it reads
    # what that SAE read at its own checkpoint's eval (the same SAE, model and tokens), though the SAE has moved on.
    for previous, own in (("previous_sae_fve", "eval_fve"), ("previous_sae_ce_recovered", "ce_recovered"),
                          ("previous_sae_kl_div_score", "kl_div_score")):
        stale = losses(tmp_path / "f", f"chrono/blocks.1.hook_resid_post/{previous}")
        then = losses(tmp_path / "f", f"sae/blocks.1.hook_resid_post/{own}")
        assert list(stale) == [4] and stale[4] == pytest.approx(then[2], rel=1e-4, abs=1e-6), previous
        assert abs(then[4] - then[2]) > 1e-3, own  # the SAE itself changed in between


def test_bf16_autocast_trains_fp32_weights_and_a_resume_must_keep_it(tmp_path):
    """train.autocast=bf16 on the CPU: the matmuls run in bf16 (the losses differ from fp32's, by bf16's rounding),
    the weights stay fp32, config.yaml records the resolved value, and resuming in fp32 is refused in one line."""
    from chrono_membench.errors import ConfigError
    from chrono_membench.model import resolve_autocast

    fp32 = train_tiny(tmp_path / "fp32", "train.max_steps=4")
    bf16 = train_tiny(tmp_path / "bf16", "train.max_steps=4", "train.autocast=bf16")
    a, b = (dict(series(m, "train/loss")) for m in (fp32, bf16))
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    assert a != b and all(abs(a[s] - b[s]) < 0.02 * a[s] for s in a)
    assert read_yaml(tmp_path / "bf16" / "config.yaml")["train"]["autocast"] == "bf16"
    weights = latest_good_checkpoint(tmp_path / "bf16")[1]["model"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    with pytest.raises(ConfigError, match=r"train\.autocast: 'bf16' → 'fp32'"):
        train_mod.train(tiny("train.max_steps=8", "train.autocast=fp32"), tmp_path / "bf16", resume=True, progress=False)
    # a run from before train.autocast (no such key in its config.yaml) ran fp32 on a CPU: it resumes in fp32
    config = tmp_path / "fp32" / "config.yaml"
    config.write_text(config.read_text().replace("  autocast: fp32\n", ""))
    assert "autocast" not in config.read_text()
    train_mod.train(tiny("train.max_steps=4"), tmp_path / "fp32", resume=True, progress=False)
    train_tiny(tmp_path / "auto", "train.max_steps=1", "train.autocast=auto", "sae.enabled=false", "chrono.enabled=false")
    assert read_yaml(tmp_path / "auto" / "config.yaml")["train"]["autocast"] == resolve_autocast("auto", "cpu")
