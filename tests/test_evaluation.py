"""Evaluation inside a tiny training run: every key logged (the keys metric_keys lists), purity matrices on disk."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import chrono_membench.train as train_mod
from chrono_membench import attention_rows
from chrono_membench import metric_keys as K
from chrono_membench.config import load_config
from chrono_membench.logging import read_metrics
from chrono_membench.registry import KeySpace, eval_keys

HOOK = "blocks.1.hook_resid_post"


def test_chrono_keys_purity_files_and_probe_table(tmp_path):
    cfg = load_config("tiny", overrides=["chrono.canary_repetitions=[1, 3]", "chrono.canary_candidates=15",
                                         "chrono.canary_until=1", "chrono.canary_interim_candidates=7"])
    train_mod.train(cfg, tmp_path / "r", progress=False)
    run = tmp_path / "r"
    metrics = read_metrics(run / "metrics.jsonl")
    keys = set().union(*metrics)
    expected = {"chrono/attn_diversity/layer_0", "chrono/attn_diversity/layer_1", "chrono/attn_diversity/mean",
                "chrono/attn_diversity_nosink/mean", "chrono/attn_entropy/mean", "chrono/attn_diversity/train_term",
                "mem/loss_gap", "mem/canary_exposure/1", "mem/canary_exposure/3_extrap", "mem/canary_exposure/control",
                "mem/exposures/loss/1", "mem/probe_share/fineweb_edu/unseen"}
    expected |= {K.chrono(HOOK, n) for n in K.PURITY}
    expected |= {K.chrono(HOOK, f"selective_source_{k}") for k in ("count", "frac", "tested")}
    expected |= {K.order(stat, score, by) for stat in ("rho", "p") for score in K.ORDER_SCORES for by in K.ORDER_BY}
    for bucket in ("b0", "b1"):
        expected |= {k for s in K.MIA_SCORES for k in K.with_ci(K.mia("auc", s, bucket))}
        expected |= {K.mia("tpr0", "ref", bucket), *K.with_ci(K.did(bucket)), *K.with_ci(K.mem("loss", bucket, "last_seen"))}
    for bucket in ("b0", "b1", "unseen"):
        expected |= {k for s in K.MEM_SCORES for k in K.with_ci(K.mem(s, bucket))}
    assert expected <= keys, expected - keys
    # Every key the run logged is one metric_keys lists (what plan.py counts): a new metric is added there.
    # (Exposure bins no probe falls in, and the within-source DiD while no source has windows on both sides, are not
    # logged, so the run's keys are a subset.)
    listed = set(K.chrono_step_keys([HOOK], 2, diversity=True))
    listed |= set(eval_keys(KeySpace([HOOK], ["b0", "b1"], ["1", "3", "control"], list(cfg.data.mixture))))
    listed |= {K.train(n) for n in K.TRAIN} | {K.chrono(HOOK, n) for n in K.DRIFT + K.REDUNDANCY} | set(K.TIMING)
    logged = {k for k in keys if not k.startswith("data/")} - {"step"}  # the stream's statistics: test_stream
    listed = {k for k in listed if not k.startswith("data/")}
    optional = {K.mem(s, b, "exposures") + x for s in K.MEM_SCORES for b in K.EXPOSURE_BINS for x in ("", *K.CI)}
    optional |= {k for b in ("b0", "b1") for k in K.with_ci(K.did(b, stratified=True))}
    optional |= {K.SAE_WARMUP_S}  # with sae.warmup_tokens only
    # forgetting slopes need ≥ 2 windows each seen at ≥ 2 evals after its step: tiny's 2 per bucket rarely are
    optional |= {k for s in ("ref", "did") for k in [*K.with_ci(K.forgetting(s)), K.forgetting_windows(s)]}
    optional |= {K.eval_time("forgetting")}
    # the blind baselines need ≥ 5 windows per class: tiny has 2 per bucket
    optional |= {k for kind in ("member", "time") for k in K.with_ci(K.blind(kind))} | {K.eval_time("blind")}
    optional |= {K.mia("tpr1", s, b) for s in K.MIA_SCORES for b in ("b0", "b1")}  # ≥ 100 unseen windows only
    # time selectivity needs latents firing in ≥ chrono.min_windows seen windows: tiny has 4
    optional |= {K.chrono(HOOK, f"selective_time_{k}") for k in ("count", "frac", "tested", "fire")}
    optional |= {K.order(stat, s, by, True) for stat in ("rho", "p") for s in K.ORDER_SCORES for by in K.ORDER_BY}
    optional |= {K.order(stat, s, by, within, True) for stat in ("rho", "p") for s in K.ORDER_SCORES
                 for by in K.ORDER_BY for within in (False, True)}  # the full-LR subset: as few windows again
    # (within source: only once some source has 3 seen windows spread over steps)
    assert logged <= listed and listed - logged <= optional
    for r in (r for r in metrics if "time/eval_s" in r):  # the eval's parts are timed, and they are parts of it
        parts = [v for k, v in r.items() if k.startswith("time/eval_") and k != "time/eval_s"]
        assert len(parts) >= 2 and min(parts) >= 0 and sum(parts) <= r["time/eval_s"], r
    # step 0 (nothing trained): no canary exposure and no greedy decoding, the teacher-forced scores of the unseen
    # windows only; every later eval has both
    step0 = next(r for r in metrics if r["step"] == 0 and "time/eval_s" in r)
    assert K.mem("loss", "unseen") in step0 and K.mem("exact_match", "unseen") not in step0
    assert not any(k.startswith("mem/canary") for k in step0) and K.eval_time("canaries") not in step0
    # the evals before the last score the first 7 candidates, the last all 15 (its rank-based exposure's cap: 4 bits)
    evals = [r for r in metrics if K.CANARY_CANDIDATES in r]
    assert [r[K.CANARY_CANDIDATES] for r in evals] == [7] * (len(evals) - 1) + [15] and len(evals) >= 2
    assert all(K.mem("exact_match", "unseen") in r for r in evals) and evals[0]["step"] > 0
    assert all(0 <= r["mem/canary_exposure/control"] <= 3 for r in evals[:-1])  # log2(8)
    final = {k: v for r in metrics for k, v in r.items()}
    assert 0 <= final["chrono/attn_diversity/mean"] <= 1 and final["chrono/attn_entropy/mean"] > 0
    assert 0 <= final["mem/canary_exposure/control"] <= 4  # log2(16)
    assert 0 <= final["chrono/attn_diversity_nosink/mean"] <= 1
    for bucket in ("b0", "b1"):
        loss = K.mem("loss", bucket)
        assert 0 <= final[K.mia("auc", "loss", bucket)] <= 1 and final[loss + "_lo"] <= final[loss] <= final[loss + "_hi"]
    d_sae = cfg.sae.expansion * cfg.model.tiny_d_model
    for step, n_time_columns in (("00000004", 2), ("00000008", 3)):  # buckets with windows so far + unseen
        path = run / "artifacts" / f"step_{step}" / "purity_blocks_1_hook_resid_post.safetensors"
        tensors = load_file(path)
        assert tensors["temporal"].shape == (d_sae, n_time_columns) and tensors["temporal"].dtype == torch.float16
        assert tensors["source"].shape[0] == d_sae
        live = tensors["temporal"].float().sum(1) > 0
        torch.testing.assert_close(tensors["temporal"].float().sum(1)[live], torch.ones(int(live.sum())), atol=2e-3, rtol=0)
        with safe_open(path, "pt") as f:
            assert json.loads(f.metadata()["temporal_columns"])[-1] == "unseen"
    table = json.loads((run / "probe_set.json").read_text())
    assert {r["bucket"] for r in table} == {"b0", "b1", "unseen"}
    assert all(len([r for r in table if r["bucket"] == b]) == 2 for b in ("b0", "b1", "unseen"))
    pin_values_independently(cfg, run, {k: v for r in metrics if r["step"] == cfg.train.max_steps for k, v in r.items()})


def pin_values_independently(cfg, run, last):
    """One value of each family at the last step, recomputed without the harness's metric code: the final model
    through plain Hugging Face (eager attention), scipy's Jensen–Shannon and Mann–Whitney, Carlini's rank
    formula, and the purity definition on the saved matrix."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import mannwhitneyu
    from transformers import AutoModelForCausalLM

    from chrono_membench.checkpoint import latest_good_checkpoint
    from chrono_membench.data import MixtureStream, collate
    from chrono_membench.model import load_tokenizer
    from chrono_membench.probes import Canaries

    hf = AutoModelForCausalLM.from_pretrained(run / "final_model", attn_implementation="eager").eval()
    tokenizer = load_tokenizer(cfg.model)

    def nll(tokens, start):  # per-token −log p of tokens[:, start:] given what precedes them
        with torch.no_grad():
            logits = hf(tokens).logits[:, start - 1:-1].double()
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, start:], reduction="none")

    # diversity: layer 0's mean JS divergence over head pairs, on the first micro-batch of validation rows
    val_rows = [r for _, r in zip(range(cfg.data.val_rows), MixtureStream(cfg.data, tokenizer, "val", repeat=False))]
    val = collate(val_rows[:cfg.train.micro_batch])
    valid = val["source_index"] != -1
    with torch.no_grad():
        pattern = hf(val["tokens"], attention_mask=valid.long(), output_attentions=True).attentions[0].double()
    js = [np.mean([jensenshannon(rows[i] * valid[b], rows[j] * valid[b], base=2) ** 2
                   for i in range(len(rows)) for j in range(i + 1, len(rows))])
          for b in range(len(pattern)) for q, rows in enumerate(pattern[b].transpose(0, 1)) if valid[b, q]]
    # (the harness computes it in float32 as a difference of entropies of ~6 bits: ~1e-6 of cancellation error)
    assert last[K.attn_layer(0)] == pytest.approx(np.mean(js), abs=5e-6)

    # AUROC: bucket b0's windows against the unseen ones, by −LOSS on the 32 scored tokens after the 32-token context
    probes = latest_good_checkpoint(run)[1]["state"]["batches"]["probes"]
    loss = {name: nll(torch.tensor([p["tokens"] for p in windows]), 32).mean(1).numpy()
            for name, windows in (("b0", probes["buckets"][0]), ("unseen", probes["unseen"]))}
    u = mannwhitneyu(-loss["b0"], -loss["unseen"]).statistic
    assert last[K.mia("auc", "loss", "b0")] == pytest.approx(u / (len(loss["b0"]) * len(loss["unseen"])))

    # exposure (Carlini et al.): log2(#candidates + 1) − log2(rank of the secret among secret + candidates)
    canaries = Canaries(cfg, tokenizer, cfg.run.seed)
    prefix = torch.tensor(canaries.prefix)
    summed = lambda c: nll(torch.cat([prefix.expand(len(c), -1), c], 1), len(prefix)).sum(1).numpy()  # noqa: E731
    secrets, others = summed(canaries.secrets), summed(canaries.reference)
    for label in ("control", "1"):
        ranks = [1 + (others <= secrets[i]).sum() for i, c in enumerate(canaries.cells) if c == label]
        assert last[K.canary(label)] == pytest.approx(np.mean(np.log2(len(others) + 1) - np.log2(ranks)))

    # purity: mean over live latents of (max_c P − 1/C)/(1 − 1/C), from the matrix saved at that eval
    P = load_file(run / "artifacts" / f"step_{cfg.train.max_steps:08d}" / "purity_blocks_1_hook_resid_post.safetensors")
    P = P["temporal"].double()
    live = P.sum(1) > 0
    C = P.shape[1]
    expected = ((P.max(1).values[live] - 1 / C) / (1 - 1 / C)).mean().item()
    assert last[K.chrono(HOOK, "temporal_purity")] == pytest.approx(expected, abs=2e-3)  # fp16 on disk


@pytest.mark.parametrize("saes", ["false", "true"])
def test_reference_losses_are_the_step_0_models(tmp_path, saes):
    """Windows enter the probe set while the model trains; their reference loss must still be the untouched
    step-0 model's (a deepcopy of a bridge shares its modules' state with the live model: it would not be). The
    unseen windows' come from the step-0 eval's own forward (the live model is the step-0 model then), with the
    SAEs' capture on that forward or without."""
    from chrono_membench.checkpoint import latest_good_checkpoint
    from chrono_membench.chrono.memorisation import scored_token_losses
    from chrono_membench.model import load_model

    cfg = load_config("tiny", overrides=[f"sae.enabled={saes}"])
    train_mod.train(cfg, tmp_path / "r", progress=False)
    _, ckpt = latest_good_checkpoint(tmp_path / "r")
    probes = ckpt["state"]["batches"]["probes"]
    windows = [p for bucket in probes["buckets"] for p in bucket] + probes["unseen"]
    assert any(p["step"] > 1 for p in windows) and all(p["ref_loss"] is not None for p in windows)
    step0, _ = load_model(cfg.model, seed=cfg.run.seed)
    with torch.no_grad():
        losses = scored_token_losses(step0, torch.tensor([p["tokens"] for p in windows])).mean(1)
    torch.testing.assert_close(losses, torch.tensor([p["ref_loss"] for p in windows]), rtol=1e-4, atol=1e-4)
    trained, _ = load_model(load_config("tiny", overrides=[f"model.name=local:{tmp_path / 'r' / 'final_model'}"]).model)
    with torch.no_grad():
        now = scored_token_losses(trained, torch.tensor([p["tokens"] for p in windows])).mean(1)
    assert (now - losses).abs().max() > 1e-2  # training moved the losses: the comparison above can fail


def test_chrono_off_and_no_diversity_change_only_what_they_should(tmp_path, monkeypatch):
    off = load_config("tiny", overrides=["chrono.enabled=false", "train.max_steps=2"])
    train_mod.train(off, tmp_path / "off", progress=False)
    keys = set().union(*read_metrics(tmp_path / "off" / "metrics.jsonl"))
    assert not any(k.startswith(("mem/", "chrono/attn")) for k in keys)
    # no_diversity isolates the regulariser: μ = 0. Neither arm hooks the attention in its training forwards (the
    # HF SDPA kernel runs in both); only `full` asks the kernel for the pattern rows at the sampled queries.
    captured, real = {}, attention_rows.capture

    def spy(query_index):
        captured.setdefault(arm, []).append(len(query_index))
        return real(query_index)

    monkeypatch.setattr(attention_rows, "capture", spy)
    first = {}
    for arm in ("full", "no_diversity"):
        cfg = load_config("tiny", overrides=["train.max_steps=2"], ablation=arm)
        train_mod.train(cfg, tmp_path / arm, progress=False)
        records = read_metrics(tmp_path / arm / "metrics.jsonl")
        keys = set().union(*records)
        assert "chrono/attn_diversity/mean" in keys and ("chrono/attn_diversity/train_term" in keys) == (arm == "full")
        first[arm] = next(r["train/loss"] for r in records if "train/loss" in r)
    assert captured == {"full": [cfg.chrono.probe_queries] * 4}  # 2 steps × 2 micro-batches
    assert first["full"] == first["no_diversity"]  # the first update's loss, before μ acts: the same kernels, bitwise


def test_sae_eval_panel_agrees_with_sae_lens_own_evals():
    """The same model, SAE and tokens through sae_lens.evals (get_recons_loss with ignore_tokens, and its
    ExplainedVarianceCalculator) and through our panel: position 0 holds a token found nowhere else, so sae-lens's
    ignore-token mask and our position-0 mask are the same tokens."""
    from contextlib import nullcontext

    from sae_lens.evals import ExplainedVarianceCalculator, get_recons_loss
    from sae_lens.training.activation_scaler import ActivationScaler

    from chrono_membench import hooks
    from chrono_membench.evaluation import sae_eval_panel
    from chrono_membench.model import load_model
    from chrono_membench.sae import SAEBank

    cfg = load_config("tiny", overrides=["sae.outlier_norm_factor=0"])
    model, _ = load_model(cfg.model)
    bank = SAEBank(cfg.sae, cfg.chrono, 8, hooks.activation_widths(model, [HOOK]), torch.device("cpu"))
    torch.manual_seed(0)
    tokens = torch.randint(100, 1000, (4, 32))
    tokens[:, 0] = 7  # the ignored token
    sources = torch.zeros_like(tokens)
    for _ in range(30):  # a few SAE steps so the SAE is neither random nor perfect
        with bank.capture(model, tokens, sources), torch.no_grad():
            model(tokens)
        bank.step(1, with_metrics=False)
    ours, density = sae_eval_panel(model, bank, {"tokens": tokens, "source_index": sources}, 4 * 32, 2, nullcontext())
    with torch.no_grad():
        ref = get_recons_loss(bank.inference_sae(HOOK), model, ActivationScaler(), tokens, compute_kl=True,
                              compute_ce_loss=True, ignore_tokens=[7])
    keep = tokens != 7
    mean = {k: v[keep[:, :v.shape[1]]].mean().item() for k, v in ref.items()}  # CE: one position shorter
    ce_score = (mean["ce_loss_with_ablation"] - mean["ce_loss_with_sae"]) / (
        mean["ce_loss_with_ablation"] - mean["ce_loss_without_sae"])
    kl_score = (mean["kl_div_with_ablation"] - mean["kl_div_with_sae"]) / mean["kl_div_with_ablation"]
    assert ours[f"sae/{HOOK}/ce_recovered"] == pytest.approx(ce_score, rel=1e-4)
    assert ours[f"sae/{HOOK}/kl_div_score"] == pytest.approx(kl_score, rel=1e-4)
    assert ours[f"sae/{HOOK}/ce_delta"] == pytest.approx(mean["ce_loss_with_sae"] - mean["ce_loss_without_sae"],
                                                        rel=1e-3, abs=1e-6)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == HOOK)
        x = cache[HOOK][keep]
        latents = bank.inference_sae(HOOK).encode(x)
        x_hat = bank.inference_sae(HOOK).decode(latents)
    fve = ExplainedVarianceCalculator()
    fve.add_batch(x_hat, x)
    assert ours[f"sae/{HOOK}/eval_fve"] == pytest.approx(fve.compute(), rel=1e-4, abs=1e-5)
    assert ours[f"sae/{HOOK}/eval_l0"] == pytest.approx((latents != 0).sum(-1).float().mean().item())
    shrinkage = (x_hat.norm(dim=-1) / x.norm(dim=-1)).mean().item()  # sae-lens's l2_ratio formula
    assert ours[f"sae/{HOOK}/l2_ratio"] == pytest.approx(shrinkage, rel=1e-4)
    torch.testing.assert_close(density[HOOK], (latents != 0).float().mean(0))


def test_diversity_strength_benchmark_measures_both_gradients_on_the_qk_projections():
    """benchmarks/diversity_strength.py: the diversity term has a gradient, it lands on the q/k projections (found by
    name: a renamed parameter would silently leave the q/k share undefined), and the LM loss is the model's."""
    from helpers import load_script, tiny

    r = load_script("benchmarks/diversity_strength.py").gradient_shares(tiny(), n_batches=2, mus=(0.0, 0.05, 0.1))
    assert 0 < r["qk_params"] < r["params"]
    assert 0 < r["ratio"] < r["ratio_qk"]  # the term acts through the attention patterns: q/k carry its gradient
    assert r["lm_loss"] > 5  # a random tiny model: CE near log(vocab)
    # the share measured on the training objective itself: none at μ = 0, twice as much at twice the μ, and μ times
    # the ratio of the two gradients it reports
    shares = r["shares"]
    assert shares[0.0] == 0 and shares[0.05] > 0
    assert shares[0.1] == pytest.approx(2 * shares[0.05], rel=1e-3)
    assert shares[0.1] == pytest.approx(0.1 * r["ratio"], rel=1e-3)


def test_the_panels_clean_forwards_give_the_validation_loss_bitwise():
    """validation_metrics runs each validation row clean once: the val loss it takes from the SAE panel's forwards
    is validation_loss's, bitwise; the panel's own metrics are unchanged by it."""
    from contextlib import nullcontext

    from chrono_membench import hooks
    from chrono_membench.evaluation import sae_eval_panel, validation_loss, validation_metrics
    from chrono_membench.model import load_model
    from chrono_membench.sae import SAEBank

    cfg = load_config("tiny")
    model, _ = load_model(cfg.model)
    bank = SAEBank(cfg.sae, cfg.chrono, 8, hooks.activation_widths(model, [HOOK]), torch.device("cpu"))
    tokens = torch.randint(1000, 30000, (4, 32), generator=torch.Generator().manual_seed(0))
    sources = torch.zeros_like(tokens)
    sources[3, 20:] = -1  # padding: its targets are not counted
    val = {"tokens": tokens, "source_index": sources}
    shared, _ = validation_metrics(model, bank, val, 4 * 32, 2, nullcontext())
    alone = validation_loss(model, val, 2, nullcontext())
    assert shared[K.val("loss")] == alone[K.val("loss")] and shared[K.val("ppl")] == alone[K.val("ppl")]
    panel, _ = sae_eval_panel(model, bank, val, 4 * 32, 2, nullcontext())
    stability = panel.pop(K.chrono(HOOK, "activation_stability"))  # a second eval: the same LM, SAE and tokens
    assert stability == pytest.approx(1.0) and K.chrono(HOOK, "activation_stability") not in shared
    assert all(shared[k] == v for k, v in panel.items() if not k.startswith("time/"))
    partial, _ = validation_metrics(model, bank, val, 2 * 32, 2, nullcontext())  # the panel sees 2 of 4 rows
    assert partial[K.val("loss")] == alone[K.val("loss")] and K.eval_time("val") in partial


def test_a_new_memorisation_score_is_one_registry_entry(monkeypatch):
    """extraction_scores already computes Min-K% Prob; naming it in K.MEM_SCORES is all it takes to have it per
    column with a t interval (and a 0/1 score with a Wilson interval), as a new score would."""
    from chrono_membench.chrono.stats import mean_interval, wilson_interval
    from chrono_membench.probe_eval import _score_group

    monkeypatch.setattr(K, "MEM_SCORES", {**K.MEM_SCORES, "min_k": "mean", "first_token_right": "rate"})
    rng = np.random.default_rng(0)
    scores = {"exact_match": (rng.random(20) < 0.2).astype(float), "token_match": rng.random(20),
              "loss": rng.random(20) * 3, "min_k": -rng.random(20), "first_token_right": (rng.random(20) < 0.5) * 1.0}
    rows = np.arange(20) < 12
    out = _score_group(scores, rows, "b0")
    x = scores["min_k"][rows]
    assert out[K.mem("min_k", "b0")] == pytest.approx(x.mean())
    assert (out[K.mem("min_k", "b0") + K.CI[0]], out[K.mem("min_k", "b0") + K.CI[1]]) == pytest.approx(mean_interval(x))
    hits = int(scores["first_token_right"][rows].sum())
    assert (out[K.mem("first_token_right", "b0") + K.CI[0]], out[K.mem("first_token_right", "b0") + K.CI[1]]) \
        == pytest.approx(wilson_interval(hits, 12))


def test_light_interim_evals_skip_greedy_decoding_and_the_last_decodes_every_window(tmp_path):
    from helpers import train_tiny

    records = train_tiny(tmp_path / "r", "train.max_steps=4", "train.eval_every=2", "chrono.interim_greedy=false")
    evals = [r for r in records if "time/eval_s" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert K.mem("loss", "b0") in evals[1] and K.mem("exact_match", "b0") not in evals[1]  # teacher-forced only
    assert K.mem("exact_match", "b0") in evals[2] and K.mem("token_match", "unseen") in evals[2]


def test_lm_loss_is_the_mean_next_token_cross_entropy_over_real_targets():
    """lm_loss against its definition written out token by token: −log softmax(logits[b, t])[tokens[b, t + 1]],
    averaged over the t whose target is not padding (a padded row's tail, and no target after the last position)."""
    from chrono_membench.data.sources import PAD_SOURCE
    from chrono_membench.evaluation import lm_loss

    gen = torch.Generator().manual_seed(0)
    logits, tokens = torch.randn(3, 9, 11, generator=gen), torch.randint(0, 11, (3, 9), generator=gen)
    sources = torch.zeros(3, 9, dtype=torch.long)
    sources[1, 5:] = PAD_SOURCE
    terms = [-torch.log_softmax(logits[b, t].double(), -1)[tokens[b, t + 1]] for b in range(3) for t in range(8)
             if sources[b, t + 1] != PAD_SOURCE]
    assert len(terms) == 20
    assert torch.allclose(lm_loss(logits, tokens, sources).double(), torch.stack(terms).mean(), atol=1e-6)
    before = tokens.clone()  # the targets are a new tensor: the batch is not written
    lm_loss(logits, tokens, sources)
    assert torch.equal(tokens, before)
