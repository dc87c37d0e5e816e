"""Evaluation inside a tiny training run: every key logged (the keys metric_keys lists), purity matrices on disk."""

import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file

import chrono_membench.train as train_mod
from chrono_membench import metric_keys as K
from chrono_membench.config import load_config
from chrono_membench.logging import read_metrics

HOOK = "blocks.1.hook_resid_post"


def test_chrono_keys_purity_files_and_probe_table(tmp_path):
    cfg = load_config("tiny", overrides=["chrono.canary_repetitions=[1, 3]", "chrono.canary_candidates=15"])
    train_mod.train(cfg, tmp_path / "r", progress=False)
    run = tmp_path / "r"
    metrics = read_metrics(run / "metrics.jsonl")
    keys = set().union(*metrics)
    expected = {"chrono/attn_diversity/layer_0", "chrono/attn_diversity/layer_1", "chrono/attn_diversity/mean",
                "chrono/attn_entropy/mean", "chrono/attn_diversity/train_term", "mem/loss_gap",
                f"chrono/{HOOK}/temporal_purity", f"chrono/{HOOK}/temporal_purity_gt50",
                f"chrono/{HOOK}/source_purity", f"chrono/{HOOK}/source_purity_share_norm",
                "mem/canary_exposure/1", "mem/canary_exposure/3", "mem/canary_exposure/control"}
    for bucket in ("b0", "b1", "unseen"):
        expected |= {f"mem/exact_match/{bucket}", f"mem/token_match/{bucket}", f"mem/loss/{bucket}"}
    assert expected <= keys, expected - keys
    # Every key the run logged is one metric_keys lists (what plan.py counts): a new metric is added there.
    listed = set(K.chrono_step_keys([HOOK], 2, diversity=True))
    listed |= set(K.eval_keys([HOOK], ["b0", "b1", "unseen"], ["1", "3", "control"]))
    listed |= {K.train(n) for n in K.TRAIN} | {K.chrono(HOOK, n) for n in K.DRIFT}
    assert {k for k in keys if not k.startswith("data/")} - {"step"} == listed
    final = {k: v for r in metrics for k, v in r.items()}
    assert 0 <= final["chrono/attn_diversity/mean"] <= 1 and final["chrono/attn_entropy/mean"] > 0
    assert 0 <= final["mem/canary_exposure/control"] <= 4  # log2(16)
    d_sae = cfg.sae.expansion * cfg.model.tiny_d_model
    for step, n_time_columns in (("00000004", 2), ("00000008", 3)):  # buckets seen so far + unseen
        path = run / "artifacts" / f"step_{step}" / "purity_blocks_1_hook_resid_post.safetensors"
        tensors = load_file(path)
        assert tensors["temporal"].shape == (d_sae, n_time_columns) and tensors["temporal"].dtype == torch.float16
        assert tensors["source"].shape == (d_sae, 4)
        live = tensors["temporal"].float().sum(1) > 0
        torch.testing.assert_close(tensors["temporal"].float().sum(1)[live], torch.ones(int(live.sum())), atol=2e-3, rtol=0)
        with safe_open(path, "pt") as f:
            assert json.loads(f.metadata()["temporal_columns"])[-1] == "unseen"
    table = json.loads((run / "probe_set.json").read_text())
    assert {r["bucket"] for r in table} == {"b0", "b1", "unseen"}
    assert all(len([r for r in table if r["bucket"] == b]) == 2 for b in ("b0", "b1", "unseen"))


def test_chrono_off_and_no_diversity_change_only_what_they_should(tmp_path):
    off = load_config("tiny", overrides=["chrono.enabled=false", "train.max_steps=2"])
    train_mod.train(off, tmp_path / "off", progress=False)
    keys = set().union(*read_metrics(tmp_path / "off" / "metrics.jsonl"))
    assert not any(k.startswith(("mem/", "chrono/attn")) for k in keys)
    nd = load_config("tiny", overrides=["train.max_steps=2"], ablation="no_diversity")
    train_mod.train(nd, tmp_path / "nd", progress=False)
    keys = set().union(*read_metrics(tmp_path / "nd" / "metrics.jsonl"))
    assert "chrono/attn_diversity/mean" in keys and "chrono/attn_diversity/train_term" not in keys
