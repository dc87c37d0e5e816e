"""The SAE bank inside the trainer: it never touches the LM, it learns, it saves, it resumes."""

import pytest
import torch
import yaml
from helpers import HOOK, ROOT, series, train_tiny
from safetensors.torch import load_file
from sae_lens import SAE

import chrono_membench.train as train_mod
from chrono_membench import hooks
from chrono_membench import metric_keys as K
from chrono_membench.checkpoint import latest_good_checkpoint
from chrono_membench.config import ConfigError, load_config
from chrono_membench.logging import run_records
from chrono_membench.model import load_model
from chrono_membench.run_dir import RunDir
from studies.summary import headline
from chrono_membench.sae import SAEBank
from chrono_membench.saes import ARCHITECTURES


def run(tmp_path, name, *overrides, ablation=None):
    return train_tiny(tmp_path / name, *overrides, ablation=ablation)


def bank_for(cfg, model, hook_points):
    return SAEBank(cfg.sae, cfg.chrono, cfg.train.max_steps, hooks.activation_widths(model, hook_points),
                   torch.device("cpu"))


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


def test_ablations_switch_exactly_their_mechanism_and_a_variant_equals_its_own_run(tmp_path):
    common = ("train.max_steps=8", "train.chrono_every=1", "checkpointing.checkpoint_every_n_steps=4")
    variants = "sae.variants={no_dropout: {chrono.dropout_p_max: 0}, no_alignment: {chrono.alignment_weight: 0}, " \
               "k4: {sae.k: 4, seed: 5}}"
    full = run(tmp_path, "full", *common, variants)
    rates = [v for _, v in series(full, "chrono/temporal_dropout_rate")]
    expected = [0.1 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / 8)).item()) for s in range(1, 9)]
    assert rates == pytest.approx(expected)
    assert any(v > 0 for _, v in series(full, f"chrono/{HOOK}/alignment_loss"))
    assert any(v > 0 for _, v in series(full, f"chrono/{HOOK}/dropped_frac"))
    # an SAE-only ablation as a variant of the full run: its view is what its own run logs, bitwise, every key
    no_dropout = run_records(f"{tmp_path / 'full'}#no_dropout")
    for key in ("chrono/temporal_dropout_rate", f"chrono/{HOOK}/dropped_frac"):
        logged = series(no_dropout, key)
        assert len(logged) == 8 and all(v == 0.0 for _, v in logged), key
    alone = run(tmp_path, "nd", *common, ablation="no_dropout")
    strip = lambda rs: [{k: v for k, v in r.items() if not K.is_timing(k)} for r in rs]  # noqa: E731
    assert strip(no_dropout) == strip(alone) and len(alone) > 20
    assert series(no_dropout, f"sae/{HOOK}/fve") != series(full, f"sae/{HOOK}/fve")  # another SAE than the main one
    no_align = run_records(f"{tmp_path / 'full'}#no_alignment")
    align = series(no_align, f"chrono/{HOOK}/alignment_loss")
    assert len(align) == 8 and all(v == 0.0 for _, v in align)
    assert series(no_align, f"chrono/{HOOK}/mmcs") and series(no_align, f"chrono/{HOOK}/hungarian_mcs")
    assert series(no_align, f"sae/{HOOK}/ce_recovered") and series(no_align, f"chrono/{HOOK}/temporal_purity_excess")
    k4 = run_records(f"{tmp_path / 'full'}#k4")  # another k and another initialisation seed
    assert all(v == 4.0 for _, v in series(k4, f"sae/{HOOK}/l0"))
    step_8 = tmp_path / "full" / "artifacts" / "step_00000008"
    exported = SAE.load_from_disk(step_8 / "variant_k4" / f"sae_{hooks.file_name(HOOK)}")
    assert exported.cfg.k == 4
    saved = yaml.safe_load((tmp_path / "nd" / "config.yaml").read_text())
    assert saved["run"]["ablation"] == "no_dropout" and saved["chrono"]["dropout_p_max"] == 0.0
    assert set(yaml.safe_load((tmp_path / "full" / "config.yaml").read_text())["sae"]["variants"]) == {
        "no_dropout", "no_alignment", "k4"}
    with pytest.raises(ConfigError, match="sae.variants.x.train.lr: a variant may set only"):
        load_config("tiny", overrides=["sae.variants={x: {train.lr: 1}}"])


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
        # its latents are the bank's over export_units (sae-lens's fold divides TopK's by the scale)
        assert bank.export_units(HOOK) == s
        torch.testing.assert_close(loaded.encode(raw), bank.encode(HOOK, raw) / s, atol=1e-4, rtol=1e-4)


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


@pytest.mark.parametrize("arch", sorted(set(ARCHITECTURES) - {"topk"}))  # topk: every other test
def test_other_sae_lens_architectures_train(tmp_path, arch):
    """Each architecture, through the bank's own step on a fixed batch: its MSE falls, and the SAE it exports
    reconstructs raw activations with sae-lens's own forward as the bank does. BatchTopK exports as JumpReLU with
    the running threshold sae-lens keeps (an average with rate 0.01 from 0): only once that has converged does it
    fire k latents per token (measured here: 24 of k = 4 after 60 steps, 6.8 after 200, 3.8 after 600)."""
    from chrono_membench.artifacts import write_sae_artifacts
    from chrono_membench.run_dir import RunDir

    torch.manual_seed(0)
    x = torch.randn(256, 16) @ torch.randn(16, 16) + 2.0  # correlated, off-centre: something to learn
    # sae-lens's default L1 coefficient (5) is sized for wide residual streams: at d_in = 16 it kills every latent
    bank = unit_bank(arch, lr=3e-3, **({"sparsity_coefficient": 0.1} if arch == "standard" else {}))
    steps = 600 if arch == "batchtopk" else 60
    mse = []
    for step in range(1, steps + 1):
        bank._captured["h"].append(x)
        bank.state["h"].real = len(x)
        metrics = bank.step(step, with_metrics=step in (2, 60))  # before step 2's update: after b_dec's init
        mse += [metrics["sae/h/mse"]] if metrics else []
    assert mse[1] < 0.5 * mse[0], mse
    write_sae_artifacts(RunDir(tmp_path), steps, bank, save_sae=True, save_features=False)
    loaded = SAE.load_from_disk(str(tmp_path / "artifacts" / f"step_{steps:08d}" / "sae_h"))
    with torch.no_grad():
        ours, theirs = bank.reconstruct("h", x), loaded(x)
        if arch != "batchtopk":
            torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
        else:  # a threshold in place of the batch's top k·B: close, not equal
            variance = (x - x.mean(0)).pow(2).sum(1).mean()
            assert (theirs - ours).pow(2).sum(1).mean() < 0.02 * variance
            assert (loaded.encode(x) != 0).sum(1).float().mean().item() == pytest.approx(bank.cfg.k, rel=0.1)


def unit_bank(arch="topk", **sae_overrides):
    """A bank on one 16-wide hook, no LM: activations are fed to it directly."""
    from chrono_membench.config import ChronoConfig, SAEConfig

    sae_cfg = SAEConfig(**{"architecture": arch, "expansion": 4, "k": 4, "lr": 1e-3, "dead_window": 64, **sae_overrides})
    return SAEBank(sae_cfg, ChronoConfig(dropout_p_max=0.5), 10, {"h": 16}, torch.device("cpu"), seed=0)


def test_a_huge_norm_token_changes_nothing_the_sae_learns_or_reports():
    torch.manual_seed(0)
    x = torch.randn(256, 16) + 2.0
    sink = torch.randn(1, 16) * 100 * x.norm(dim=-1).median()  # an attention sink's norm (≈ 100× the median)
    clean, sunk = unit_bank(), unit_bank()
    clean._captured["h"].append(x)
    sunk._captured["h"].append(torch.cat([x[:100], sink, x[100:]]))
    for bank in (clean, sunk):
        bank.state["h"].real = 256
    a, b = clean.step(1, with_metrics=True), sunk.step(1, with_metrics=True)
    assert b.pop("sae/h/masked_frac") > 0 and a.pop("sae/h/masked_frac") == 0
    assert a == b  # loss, MSE, FVE, L0, dead fraction, alignment: all as if the sink were not there
    for name, value in clean.saes["h"].state_dict().items():
        assert torch.equal(value, sunk.saes["h"].state_dict()[name]), name
    assert clean.state["h"].norm_ema == sunk.state["h"].norm_ema


def test_position_zero_and_planted_huge_norm_tokens_mid_row_are_masked(tmp_path):
    """A tiny model whose residual stream gets 100× norms at two positions mid-row (as Gemma's BOS tokens do):
    the SAE trains on neither them nor position 0, and says how much it left out."""
    cfg = load_config("tiny")
    model, _ = load_model(cfg.model)
    bank = bank_for(cfg, model, [HOOK])
    tokens = torch.randint(0, 1000, (2, 64))
    sources = torch.zeros(2, 64, dtype=torch.long)
    def plant(act, hook):
        out = act.clone()
        out[:, [10, 40]] *= 100
        return out

    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", plant)]), bank.capture(model, tokens, sources):
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == HOOK)
    captured = bank._captured[HOOK].tensor
    assert len(captured) == 2 * 63  # position 0 never captured
    metrics = bank.step(1, with_metrics=True)
    assert metrics[f"sae/{HOOK}/masked_frac"] == pytest.approx(6 / 128)  # 2 × (position 0 + the 2 planted)
    planted = cache[HOOK][:, [10, 40]].flatten(0, 1)
    assert bank.outliers(HOOK, planted).all()
    assert not bank.outliers(HOOK, cache[HOOK][:, 1:10].flatten(0, 1)).any()


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_temporal_dropout_touches_only_the_reconstruction_the_mse_sees(arch):
    from sae_lens.saes.sae import TrainStepInput

    from chrono_membench.sae import training_forward

    torch.manual_seed(0)
    x = torch.randn(128, 16)
    outputs = {}
    for p in (0.0, 0.5):
        bank = unit_bank(arch)
        sae = bank.saes["h"]
        dead = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
        dead[::2] = True  # half the latents dead: the aux loss is active
        step_input = TrainStepInput(x, {}, dead, n_training_steps=0, is_logging_step=False)
        _, losses, acts, clean_out, frac = training_forward(sae, step_input, p, torch.Generator().manual_seed(1),
                                                            sparse=bank.arch.sparse_decode)
        outputs[p] = (losses, acts, clean_out, frac, getattr(sae, "topk_threshold", None))
    (l0_, a0, o0, f0, t0), (l5, a5, o5, f5, t5) = outputs[0.0], outputs[0.5]
    assert f0 == 0 and 0.3 < f5 < 0.7  # the realised dropped fraction
    assert not torch.isclose(l5["mse_loss"], l0_["mse_loss"])  # the MSE sees the dropped reconstruction …
    if arch == "topk":  # … the dead-latent aux loss fits the undropped one's residual
        assert l0_["auxiliary_reconstruction_loss"] > 0
        torch.testing.assert_close(l5["auxiliary_reconstruction_loss"], l0_["auxiliary_reconstruction_loss"])
    torch.testing.assert_close(a5, a0)  # firing statistics: the encoder's, undropped
    torch.testing.assert_close(o5, o0)
    if arch == "batchtopk":  # the running threshold follows undropped activations
        torch.testing.assert_close(t5, t0)


@pytest.mark.parametrize("arch,rescale", [("topk", True), ("topk", False), ("batchtopk", True)])
def test_sparse_decode_matches_sae_lens_decode_in_value_and_gradient(arch, rescale):
    """The TopK decode gathers only the active decoder rows; it must be sae-lens's decode, gradients included."""
    from chrono_membench.sae import sparse_decode

    torch.manual_seed(0)
    sae = unit_bank(arch).saes["h"]
    sae.cfg.rescale_acts_by_decoder_norm = rescale
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(len(sae.W_dec), 1) + 0.5)  # rows of unequal norm: the rescaling matters
    acts = sae.encode_with_hidden_pre(torch.randn(32, 16))[0].detach()
    acts[3] = 0  # a token with no active latent
    results = []
    for sparse in (False, True):
        a = acts.clone().requires_grad_(True)
        sae.zero_grad()
        if sparse:
            rows, cols = a.nonzero(as_tuple=True)
            out = sparse_decode(sae, rows, cols, len(a), a[rows, cols])
        else:
            out = sae.decode(a)
        out.pow(2).sum().backward()
        # the latents' gradient where they are active: TopK's scatter passes only those back to the encoder
        results.append((out.detach(), a.grad[acts != 0], sae.W_dec.grad.clone(), sae.b_dec.grad.clone()))
    for dense, sparse in zip(*results):
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


def test_the_metrics_pass_changes_no_state():
    bank = unit_bank("batchtopk")
    bank._captured["h"].append(torch.randn(64, 16))
    before = {k: v.clone() for k, v in bank.saes["h"].state_dict().items()}
    from sae_lens.saes.sae import TrainStepInput

    step_input = TrainStepInput(torch.randn(64, 16), {}, None, n_training_steps=0, is_logging_step=False)
    bank._metrics("h", bank.saes["h"], step_input, torch.zeros(64, dtype=torch.bool))
    for name, value in bank.saes["h"].state_dict().items():
        assert torch.equal(value, before[name]), name


def test_drift_is_measured_in_every_arm_over_alive_latents_with_a_cross_seed_floor(tmp_path):
    m = run(tmp_path, "r", "train.max_steps=8", "sae.seed_baseline=true", ablation="no_alignment")
    for key in ("hungarian_mcs", "mmcs", "self_match_frac"):
        assert len(series(m, f"chrono/{HOOK}/{key}")) == 1, key  # checkpoint 8 against checkpoint 4
    floor = series(m, f"chrono/{HOOK}/cross_seed_mcs")
    assert len(floor) == 2 and all(0 < v < 1 for _, v in floor)  # two seeds learn different latents
    # the second seed's own checkpoint-to-checkpoint drift: the same Hungarian-matched cosine, on its decoder
    baseline = series(m, f"chrono/{HOOK}/hungarian_mcs_seed_baseline")
    assert len(baseline) == 1 and 0 < baseline[0][1] <= 1 and baseline != series(m, f"chrono/{HOOK}/hungarian_mcs")
    full = run(tmp_path, "f", "train.max_steps=8")
    assert series(full, f"chrono/{HOOK}/hungarian_mcs")  # alignment on: measured all the same
    share = [v for _, v in series(full, f"chrono/{HOOK}/alignment_share")]
    assert share and max(share) > 0


def test_alignment_keeps_the_decoder_closer_to_its_anchor_than_without_it():
    """The direction of the effect, on the same activations and seed: after a checkpoint sets the anchor, the data
    shifts; with alignment on, the decoder's alive rows end nearer the anchor (and drift is matched higher)."""
    from chrono_membench.chrono.alignment import matched_similarity, unit_rows
    from chrono_membench.config import ChronoConfig, SAEConfig

    torch.manual_seed(0)
    before, after = torch.randn(256, 16) @ torch.randn(16, 16), torch.randn(256, 16) @ torch.randn(16, 16)
    banks = {w: SAEBank(SAEConfig(expansion=4, k=4, lr=3e-3, dead_window=10_000), ChronoConfig(alignment_weight=w,
                        dropout_p_max=0.0), 100, {"h": 16}, torch.device("cpu"), seed=0) for w in (0.0, 10.0)}
    distance, matched = {}, {}
    for w, bank in banks.items():
        for step in range(1, 61):
            if step == 31:
                bank.on_checkpoint()  # the anchor: the decoder at step 30
            bank._captured["h"].append(before if step <= 30 else after)
            bank.step(step, with_metrics=False)
        now, anchor = bank._since_anchor("h", 0)
        distance[w] = (unit_rows(now) - unit_rows(anchor)).norm(dim=1).mean().item()  # the directions TopK decodes
        matched[w] = matched_similarity(now, anchor)
    assert distance[10.0] < 0.9 * distance[0.0], distance
    assert matched[10.0] > matched[0.0], matched


def test_a_non_finite_sae_is_skipped_then_retired_while_the_other_hooks_train_on():
    from chrono_membench.config import ChronoConfig, SAEConfig

    def bank():
        sae_cfg = SAEConfig(expansion=4, k=4, lr=1e-3, dead_window=64, max_skipped_in_a_row=2)
        return SAEBank(sae_cfg, ChronoConfig(dropout_p_max=0.5), 10, {"a": 16, "b": 16}, torch.device("cpu"), seed=0)

    torch.manual_seed(0)
    x = torch.randn(64, 16) + 2.0
    healthy, poisoned = bank(), bank()
    poisoned.saes["b"].W_enc.data.mul_(1e30)  # finite weights whose reconstruction overflows: the loss is inf
    after_first = None
    for step in range(1, 5):
        for b in (healthy, poisoned):
            for hook in b.hook_points:
                b._captured[hook].append(x)
        expected, got = healthy.step(step, with_metrics=False), poisoned.step(step, with_metrics=False)
        assert expected == {} and "sae/a/skipped_steps" not in got
        if step <= 3:
            assert got["sae/b/skipped_steps"] == step, got  # counted every time
        after_first = after_first or {k: v.clone() for k, v in poisoned.saes["b"].state_dict().items()}
        for name, value in poisoned.saes["b"].state_dict().items():  # never updated (b_dec is set at step 1)
            assert torch.equal(value, after_first[name]), name
    assert poisoned.retired == {"b": 3} and poisoned.hook_points == ["a"]  # the third skip in a row retires it
    for name, value in healthy.saes["a"].state_dict().items():  # hook a trained exactly as without the failure
        assert torch.equal(value, poisoned.saes["a"].state_dict()[name]), name
    restored = bank()
    restored.load_state_dict(poisoned.state_dict())
    assert restored.hook_points == ["a"] and restored.retired == {"b": 3} and restored.skipped["b"] == 3


def test_a_registered_architecture_trains_and_an_unknown_one_is_a_config_error():
    """A custom architecture is one register() call (a module chrono_membench/saes/<name>.py in real use): here a
    TopK whose k is twice sae.k, registered as it would be, then trained by the bank, which asks its row (k
    bound, sparse decode) and never its name."""
    from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    from chrono_membench import saes

    class DoubleK(TopKTrainingSAE):
        pass

    saes.register("double_k", DoubleK, TopKTrainingSAEConfig,
                  saes.Architecture(lambda c: {"k": 2 * c.k}, k=True, sparse_decode=True))
    try:
        bank = unit_bank("double_k")
        assert isinstance(bank.saes["h"], DoubleK) and bank.saes["h"].cfg.k == 8
        bank._captured["h"].append(torch.randn(64, 16))
        assert bank.step(1, with_metrics=True)["sae/h/l0"] == 8
        with pytest.raises(ValueError, match="already registered"):
            saes.register("double_k", DoubleK, TopKTrainingSAEConfig, saes.Architecture(lambda c: {}))
        cfg = load_config("tiny", overrides=["sae.architecture=double_k", "sae.k=257"])
        with pytest.raises(ConfigError, match="sae.k=257: at most d_sae"):  # k applies: at most d_sae = 4 × 64
            SAEBank.for_model(cfg, *load_model(cfg.model), torch.device("cpu"))
    finally:
        saes.ARCHITECTURES.pop("double_k")
        SAE_TRAINING_CLASS_REGISTRY.pop("double_k")
    with pytest.raises(ConfigError, match=r"^sae.architecture='double_k' is not a registered SAE architecture; "
                                          r"allowed: batchtopk, jumprelu, standard, topk \(a custom one"):
        load_config("tiny", overrides=["sae.architecture=double_k"])  # in the config, before any model


def test_sae_py_never_decides_by_an_architecture_name():
    from chrono_membench import saes

    source = (ROOT / "chrono_membench" / "sae.py").read_text()
    said = {name for name in saes.ARCHITECTURES} | {a.sparsity_loss for a in saes.ARCHITECTURES.values() if a.sparsity_loss}
    assert not [name for name in said if f'"{name}"' in source or f"'{name}'" in source]
    assert "TopKTrainingSAE" not in source  # no class checks either: the row says sparse_decode


def test_the_sparsity_coefficient_reads_under_its_old_name(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("sae:\n  architecture: standard\n  l1_coefficient: 0.25\n")
    assert load_config(config_path=old).sae.sparsity_coefficient == 0.25
    assert load_config("tiny", overrides=["sae.l1_coefficient=0.5"]).sae.sparsity_coefficient == 0.5


def test_an_lm_steps_tokens_are_split_into_sae_batches_of_batch_tokens():
    """One LM step's 256 tokens at sae.batch_tokens=64 are 4 SAE steps: exactly 4 steps on 4 shuffled quarters."""
    from chrono_membench.sae import minibatches

    torch.manual_seed(0)
    first, x = torch.randn(64, 16) + 1.0, torch.randn(256, 16) + 1.0
    split, whole = unit_bank(batch_tokens=64), unit_bank(batch_tokens=4096)
    split.step(1, False, inputs={"h": first})  # one SAE step each: b_dec initialised alike
    whole.step(1, False, inputs={"h": first})
    split.step(2, False, inputs={"h": x})
    quarters = minibatches({"h": x}, 4, torch.Generator().manual_seed((0 * 1_000_003 + 1) * 64 + 0))  # seed, SAE step
    assert sorted(torch.cat([q["h"] for q in quarters]).sum(1).tolist()) == sorted(x.sum(1).tolist())  # a permutation
    assert not torch.equal(torch.cat([q["h"] for q in quarters]), x)  # of the tokens, not their row order
    for quarter in quarters:
        whole.step(2, False, inputs=quarter)
    assert split.n_steps == whole.n_steps == 5
    for key, value in whole.saes["h"].state_dict().items():
        assert torch.equal(split.saes["h"].state_dict()[key], value), key
    assert torch.equal(split.latents["h", 0].fire_count, whole.latents["h", 0].fire_count)
    metrics = unit_bank(batch_tokens=64).step(1, True, inputs={"h": x})
    assert metrics["sae/h/l0"] == 4.0 and "sae/h/fve" in metrics  # metrics: on the first minibatch, before its update


def test_the_sae_bank_and_its_warm_up_leave_the_lm_bitwise_unchanged_and_the_warm_up_trains_the_saes(tmp_path):
    common = ("train.max_steps=4", "train.eval_every=2", "checkpointing.checkpoint_every_n_steps=2")
    warm = run(tmp_path, "with", *common, "sae.warmup_tokens=8192",
               "sae.variants={no_dropout: {chrono.dropout_p_max: 0}, cold: {sae.warmup_tokens: 0}}")
    without = run(tmp_path, "without", *common, "sae.enabled=false")
    a = latest_good_checkpoint(tmp_path / "with")[1]["model"]
    b = latest_good_checkpoint(tmp_path / "without")[1]["model"]
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("train/loss", "train/grad_norm", "val/loss", "mem/loss_gap"):  # the LM never sees the SAEs
        assert series(warm, key) == series(without, key) and series(without, key), key
    # 8,192 tokens = 32 SAE steps of one LM update's tokens (2 × 2 rows of 64), position 0 masked: 32 × 252
    assert series(warm, K.SAE_WARMUP_TOKENS) == [(0, 32 * 4 * 63)]
    fve = lambda variant="": series(warm, K.variant(variant, K.sae(HOOK, "eval_fve")) if variant  # noqa: E731
                                    else K.sae(HOOK, "eval_fve"))[0][1]  # at the eval of step 0
    assert fve() > fve("cold") + 0.2 and fve("no_dropout") > fve("cold") + 0.2  # "cold" sat the warm-up out
    # the warm SAEs are step 0's checkpoint and export; the first checkpoint's drift is measured against them
    assert (tmp_path / "with" / "checkpoints" / "step_00000000").exists()
    for variant in ("", "no_dropout"):
        assert SAE.load_from_disk(str(RunDir(tmp_path / "with").artifact(0, "sae", HOOK, variant))).cfg.d_sae == 64 * 4
    drift = lambda variant="": [s for s, _ in series(warm, K.variant(variant, K.chrono(HOOK, "hungarian_mcs"))  # noqa: E731
                                                     if variant else K.chrono(HOOK, "hungarian_mcs"))]
    assert drift() == drift("no_dropout") == [2, 4] and drift("cold") == [4]  # an untrained SAE is no anchor
    said = "\n".join(headline(tmp_path / "with"))  # the closing summary says both
    assert "SAE warm-up: 8,064 tokens through the step-0 model" in said and "the last checkpoint's SAE on this model" in said
    with pytest.raises(ConfigError, match=r"sae.variants.more.sae.warmup_tokens: at most the run's"):
        load_config("tiny", overrides=["sae.warmup_tokens=64", "sae.variants={more: {sae.warmup_tokens: 128}}"]
                    ).variant("more")


@pytest.mark.parametrize("arch", ["topk", "standard"])
def test_sae_autocast_bf16_trains_in_bf16_with_fp32_master_weights_and_learns_what_fp32_learns(arch):
    """sae.autocast=bf16: the step's arithmetic is bf16 (after one step the weights differ from the fp32 twin's),
    the weights and Adam's state stay fp32, and after training both reconstruct alike (FVE within 0.02)."""
    from chrono_membench.chrono.sae_metrics import fraction_of_variance_explained

    torch.manual_seed(0)
    basis = torch.randn(32, 16)
    data = [torch.relu(torch.randn(256, 32) - 1.0) @ basis for _ in range(60)]  # sparse codes of 32 directions
    banks = {p: unit_bank(arch, autocast=p, lr=3e-3, dead_window=10_000, sparsity_coefficient=0.1)
             for p in ("fp32", "bf16")}
    for i, x in enumerate(data):
        for bank in banks.values():
            bank._captured["h"].append(x)
            bank.state["h"].real += len(x)
            bank.step(i + 1, with_metrics=False)
        if i == 0:
            assert not torch.equal(banks["fp32"].saes["h"].W_enc, banks["bf16"].saes["h"].W_enc)
    bf16 = banks["bf16"]
    assert all(p.dtype == torch.float32 for p in bf16.saes["h"].parameters())
    assert all(v.dtype == torch.float32 for s in bf16.optimizer.state.values() for v in s.values() if v.dim())
    held = torch.relu(torch.randn(512, 32) - 1.0) @ basis
    fve = {p: fraction_of_variance_explained(held, b.reconstruct("h", held)) for p, b in banks.items()}
    assert fve["fp32"] > 0.5 and abs(fve["bf16"] - fve["fp32"]) < 0.02, fve
