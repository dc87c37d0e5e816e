"""The crosscoder (chrono_membench/crosscoder.py) against its published definitions on hand-made cases, and in a
tiny run: classes, emergence, its files and its loader."""

import html
import json

import pytest
import torch

from chrono_membench import metric_keys as K
from chrono_membench.crosscoder import (Crosscoder, classes, decoder_cosine, emergence, latent_scaling, load,
                                        relative_norm, scaling_betas, threshold)
from chrono_membench.registry import KeySpace, eval_keys
from chrono_membench.run_dir import RunDir
from tests.helpers import HOOK, tiny, train_tiny


def hand_made(d=3, F=4, k=1):
    torch.manual_seed(0)
    cc = Crosscoder(d, F, k)
    with torch.no_grad():
        cc.W_enc.copy_(torch.randn(2, d, F))
        cc.W_dec.copy_(torch.randn(2, F, d))
        cc.b_enc.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        cc.b_dec.copy_(torch.randn(2, d) * 0.1)
    return cc


def test_loss_is_the_published_batchtopk_crosscoder_loss_on_a_hand_made_case():
    """f = BatchTopK(ReLU(Σ_m (x_m − b_dec,m) W_enc,m + b_enc)) keeping the k·B largest f_j·(‖d_j^0‖ + ‖d_j^1‖) of the
    batch; loss = mean over tokens of Σ_m ‖x_m − (f W_dec,m + b_dec,m)‖² (no dead latents: no AuxK) — written out
    element by element here."""
    cc = hand_made()
    x = torch.randn(5, 2, 3)
    loss, parts = cc.loss(x)
    W_enc, W_dec, b_enc, b_dec = cc.W_enc.detach(), cc.W_dec.detach(), cc.b_enc.detach(), cc.b_dec.detach()
    pre = torch.zeros(5, 4)
    for t in range(5):
        for j in range(4):
            pre[t, j] = max(0.0, sum(float((x[t, m] - b_dec[m]) @ W_enc[m, :, j]) for m in (0, 1)) + b_enc[j])
    weight = torch.tensor([float(W_dec[0, j].norm() + W_dec[1, j].norm()) for j in range(4)])
    scores = sorted(((pre[t, j] * weight[j]).item(), t, j) for t in range(5) for j in range(4))
    kept = {(t, j) for _, t, j in scores[-5:]}  # k · B = 1 · 5
    f = torch.tensor([[pre[t, j].item() if (t, j) in kept else 0.0 for j in range(4)] for t in range(5)])
    expected = sum(float(((x[t, m] - (f[t] @ W_dec[m] + b_dec[m])) ** 2).sum()) for t in range(5) for m in (0, 1)) / 5
    assert torch.allclose(parts["f"], f, atol=1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert (parts["f"] > 0).sum() <= 5


def test_batchtopk_weights_activations_by_the_decoder_norms():
    """Two latents with equal pre-activations: the one with the larger summed decoder norm is kept."""
    cc = Crosscoder(2, 2, k=1)
    with torch.no_grad():
        cc.W_enc.copy_(torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]))
        cc.W_dec.copy_(torch.tensor([[[1.0, 0.0], [3.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]]))
        cc.b_dec.zero_()
    f = cc.encode(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), batch_topk=True)
    assert f.tolist() == [[0.0, 1.0]]


def test_the_inference_threshold_follows_the_smallest_kept_activation():
    cc = hand_made()
    assert cc.threshold.item() == -1
    x = torch.randn(64, 2, 3)
    _, parts = cc.loss(x)
    weighted = parts["f"] * cc.norms().sum(0)
    assert cc.threshold.item() == pytest.approx(weighted[weighted > 0].min().item())
    # at inference, every activation whose weighted value passes it is kept: at least the batch's top k·B
    assert (cc.encode(x) > 0).sum() >= (parts["f"] > 0).sum()


def test_latent_scaling_recovers_known_betas_and_separates_the_cases_it_exists_for():
    """Latent Scaling (Minder et al. 2025): β_j = argmin_β Σ_t ‖β f_tj d_j − y_tj‖², here against a least-squares
    solve; a latent whose direction the base model does not hold has ν ≈ 0, one the base holds in its
    reconstruction error (Complete Shrinkage) has ν^ε ≈ 1."""
    torch.manual_seed(1)
    T, d = 400, 8
    f = torch.rand(T, 1) * (torch.rand(T, 1) < 0.5)
    direction = torch.randn(1, d)
    y = 0.7 * f * direction + 0.01 * torch.randn(T, d)  # the target holds 0.7 of the direction
    beta = scaling_betas(f, direction, y @ direction.T)
    lstsq = torch.linalg.lstsq(f * direction.norm() ** 2, (y @ direction.T)).solution  # same normal equation
    assert beta.item() == pytest.approx(lstsq.item(), rel=1e-4)
    assert beta.item() == pytest.approx(0.7, abs=0.01)
    # two latents, fine-tuned decoder rows e0 and e1; base decoder rows zero (both classed fine-tuned-only)
    W_dec = torch.zeros(2, 2, d)
    W_dec[1, 0, 0] = W_dec[1, 1, 1] = 1.0
    acts = torch.rand(T, 2) * (torch.rand(T, 2) < 0.5)
    x = torch.zeros(T, 2, d)
    x[:, 1] = acts @ W_dec[1]  # the fine-tuned model holds both
    x[:, 0, 1] = acts[:, 1]  # the base model holds latent 1's direction, unreconstructed (its decoder row is 0)
    x_hat = torch.einsum("tf,mfd->tmd", acts, W_dec)
    nu = latent_scaling(x, acts, x_hat, W_dec, torch.tensor([0, 1]))
    assert nu["nu_eps"][0].item() == pytest.approx(0.0, abs=1e-6)  # truly fine-tuned-only
    assert nu["nu_eps"][1].item() == pytest.approx(1.0, abs=1e-6)  # Complete Shrinkage: the base holds it all
    assert nu["nu_rec"].abs().max().item() < 1e-6  # no other latent reconstructs either direction in the base


def test_relative_norm_classes_threshold_and_emergence():
    W_dec = torch.zeros(2, 3, 2)
    W_dec[0, 0, 0], W_dec[1, 0, 0] = 1.0, 1.0  # shared
    W_dec[1, 1, 1] = 2.0  # fine-tuned-only
    W_dec[0, 2, 0], W_dec[1, 2, 1] = 1.0, 0.01  # base-only
    r = relative_norm(W_dec)
    assert r.tolist() == pytest.approx([0.5, 1.0, 0.01 / 1.01])
    assert decoder_cosine(W_dec)[0].item() == pytest.approx(1.0)
    hi = threshold(torch.tensor([0.45, 0.5, 0.93]), floor=0.9)
    assert hi == pytest.approx(0.93)  # the null's most extreme latent, past the floor
    got = classes(r, hi)
    assert got["ft_only"].tolist() == [1] and got["base_only"].tolist() == [2] and got["shared"].tolist() == [0]
    history = [(5, torch.tensor([0.5, 0.95, 0.95]), 0.9), (10, torch.tensor([0.5, 0.8, 0.95]), 0.9),
               (15, torch.tensor([0.5, 0.95, 0.95]), 0.9), (20, torch.tensor([0.99, 0.97, 0.95]), 0.96)]
    # latent 0 emerges at 20; latent 1 left and came back at 15 (stays from 15 on: 0.97 > 0.96 at 20); latent 2
    # passes 0.9 throughout but not the last threshold: not fine-tuned-only now
    assert emergence(history).tolist() == [20, 15, -1]


def test_the_dashboard_latents_and_their_top_windows_by_hand():
    from chrono_membench.crosscoder import shown_latents, top_windows
    from chrono_membench.probes import Probe

    r, r_null = torch.tensor([0.5, 0.95, 0.6, 0.3, 0.5]), torch.tensor([0.5, 0.5, 0.5, 0.5, 0.51])
    got = shown_latents(r, r_null, classes(r, 0.9), n=2)
    assert got == [1, 2, 3, 4]  # the classed latent, then the furthest leaning to ft (1 again, 2), to base (3, 4)
    probes = [(0, Probe("a", "wikitext103", 3, 0, 0, list(range(100, 106)), 0)),
              (1, Probe("b", "orca_math", 0, 0, 0, list(range(200, 206)), 0))]
    window = torch.tensor([0] * 5 + [1] * 5)  # positions 1..5 of each window (position 0 is never scored)
    f = torch.zeros(10, 2)
    f[3, 0], f[7, 0] = 2.0, 5.0  # latent 0: window a's position 4, window b's position 3 (stronger)
    top = top_windows(f, window, probes, ["b0", "unseen"], k=5, around=(1, 1))
    assert [(e["uid"], e["column"], e["act"]) for e in top[0]] == [("b", "unseen", 5.0), ("a", "b0", 2.0)]
    assert top[0][0]["tokens"] == [202, 203, 204] and top[0][0]["at"] == 1 and top[0][0]["pos"] == 3  # 1 each side
    assert top[0][1]["tokens"] == [103, 104, 105] and top[1] == []  # latent 1 never fires: nothing shown


@pytest.fixture(scope="module")
def crosscoder_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cc") / "run"
    metrics = train_tiny(run_dir, "crosscoder.enabled=true", "sae.warmup_tokens=512", "train.lr=3e-4")
    return run_dir, metrics


def test_a_run_logs_the_crosscoder_keys_it_promises_and_none_else(crosscoder_run):
    run_dir, metrics = crosscoder_run
    logged = {k for r in metrics for k in r if k.startswith("crosscoder/")}
    space = KeySpace.of(tiny("crosscoder.enabled=true").to_dict(), [HOOK])
    promised = {k for k in eval_keys(space) if k.startswith("crosscoder/")} | set(K.crosscoder_step_keys(True))
    assert logged == promised
    last = [r for r in metrics if K.crosscoder("threshold") in r][-1]
    assert last[K.crosscoder("threshold")] >= 0.9  # the floor, or the null twin's most extreme latent
    n = last[K.crosscoder("ft_only")] + last[K.crosscoder("base_only")] + last[K.crosscoder("shared")]
    assert n == 8 * 64  # every latent in exactly one class (expansion 8 × width 64)
    assert 0 < last[K.crosscoder("fve_ft")] <= 1


def test_saved_crosscoder_loads_and_encodes_as_in_training(crosscoder_run):
    from chrono_membench.restore import restore_for_analysis

    run_dir, _ = crosscoder_run
    steps = RunDir(run_dir).artifact_steps("crosscoder")
    assert [s for s, _ in steps] == [0, 4, 8]
    coder, meta = load(steps[-1][1])
    assert meta["hook"] == HOOK and meta["model_name"] == "tiny" and meta["chrono_membench_step"] == "8"
    trainer = restore_for_analysis(run_dir).saes.crosscoder
    x = torch.randn(16, 2, 64)
    assert torch.equal(coder.encode(x), trainer.model.encode(x))
    assert meta["scale"] == pytest.approx(trainer.scale)
    latents = json.loads(RunDir(run_dir).artifact(8, "crosscoder_latents", HOOK).read_text())
    assert len(latents["relative_norm"]) == coder.d_sae and latents["step"] == latents["eval_step"] == 8
    r = torch.tensor(latents["relative_norm"])
    assert torch.allclose(r, trainer.relative_norms()[0], atol=1e-5)  # the checkpoint's own weights
    assert latents["history_steps"] == [0, 2, 4, 6, 8]  # the warm-up's last step, then the chrono cadence
    shown = latents["top_windows"]  # the dashboard's latents: 16 leaning each way, at least (no class is forced)
    assert len(shown) >= 32 and all(len(w) <= 5 for w in shown.values())
    entry = next(w[0] for w in shown.values() if w)
    assert entry["act"] > 0 and 0 <= entry["at"] < len(entry["tokens"]) and entry["column"].startswith(("b", "un"))


def test_the_dashboards_crosscoder_page_shows_each_latents_windows_with_its_strongest_token(crosscoder_run, tmp_path):
    """analysis/feature_dashboard.py's crosscoder view: a row per shown latent with its readings, and each of its
    windows' bold token is the token the crosscoder's top activation sat on (from the probe set's own tokens)."""
    from helpers import load_script

    from chrono_membench.model import load_tokenizer
    from chrono_membench.restore import restore_for_analysis

    run_dir, _ = crosscoder_run
    page = load_script("analysis/feature_dashboard.py").write_crosscoder_page(run_dir, HOOK, tmp_path)
    text = page.read_text()
    latents = json.loads(RunDir(run_dir).artifact(8, "crosscoder_latents", HOOK).read_text())
    assert "Plotly.newPlot" in text and 'src="http' not in text  # opens offline
    assert text.count("<tr><td>") == len(latents["top_windows"])
    r = restore_for_analysis(run_dir)
    probes = {p.uid: p for _, ps in r.probes.columns() for p in ps}
    tokenizer = load_tokenizer(r.cfg.model)
    i, windows = next((i, w) for i, w in latents["top_windows"].items() if w)
    for w in windows:
        probe = probes[w["uid"]]
        start = w["pos"] - w["at"]
        assert w["pos"] >= 1 and w["tokens"] == probe.tokens[start:start + len(w["tokens"])]
    strongest = windows[0]["tokens"][windows[0]["at"]]
    assert f"<b style='background:#fd8'>{html.escape(tokenizer.decode([strongest]))}</b>" in text


def test_crosscoder_config_is_refused_in_one_line_where_it_cannot_run():
    from chrono_membench.errors import ConfigError

    for overrides, field in ((["sae.enabled=false"], "sae.enabled"), (["crosscoder.every=3"], "crosscoder.every"),
                             (["crosscoder.hook=blocks.7.hook_resid_post"], "crosscoder.hook"),
                             (["chrono.reference_loss=false"], "chrono.reference_loss")):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            tiny("crosscoder.enabled=true", *overrides)


def test_the_warm_up_reaches_a_crosscoder_hook_deeper_than_the_saes(tmp_path):
    """The warm-up's forwards stop after the deepest hooked block: the crosscoder's counts too."""
    metrics = train_tiny(tmp_path / "deep", "crosscoder.enabled=true", "sae.hook_points=[blocks.0.hook_resid_post]",
                         f"crosscoder.hook={HOOK}", "sae.warmup_tokens=512", "train.max_steps=2")
    assert any(r["step"] == 0 and K.crosscoder("train_mse") in r for r in metrics)


def test_a_fit_after_the_run_reads_the_rows_it_trained_on_and_writes_a_crosscoder_that_loads(crosscoder_run, tmp_path,
                                                                                            capsys):
    """analysis/crosscoder_fit.py: the rows it reads again are the run's own (every probe window of a time bucket
    sits in its row at its offset, canaries and plants in place), and its crosscoder loads with its step."""
    from chrono_membench.restore import restore_for_analysis
    from tests.helpers import load_script

    run_dir, _ = crosscoder_run
    fit = load_script("analysis/crosscoder_fit.py")
    r = restore_for_analysis(run_dir)
    tokens, mask = fit.training_rows(r.cfg, r.tokenizer, r.step, 10 ** 9)
    per_step = r.cfg.train.grad_accum * r.cfg.train.micro_batch
    assert len(tokens) == r.step * per_step and not mask[:, 0].any()
    windows = [p for _, ps in r.probes.columns()[:-1] for p in ps]
    assert windows
    for p in windows:
        row = tokens[(p.step - 1) * per_step + p.row]
        assert row[p.offset:p.offset + len(p.tokens)].tolist() == p.tokens
    fit.main([str(run_dir), "--out", str(tmp_path), "--epochs", "2", "--tokens", "1024"])
    printed = capsys.readouterr().out
    assert "fine-tuned-only" in printed and printed.count("    latent ") == 2 * fit.SHOWN  # leaning each way
    coder, meta = load(tmp_path / "crosscoder_fit_blocks_1_hook_resid_post.safetensors")
    assert meta["hook"] == HOOK and meta["step"] == str(r.step) and int(meta["tokens"]) <= 1024 + r.cfg.data.seq_len
    latents = json.loads((tmp_path / "crosscoder_fit_latents_blocks_1_hook_resid_post.json").read_text())
    assert latents["history_steps"] == [r.step] and len(latents["relative_norm"]) == coder.d_sae
    assert latents["relative_norm"] != latents["relative_norm_null"]  # the LM changed: not its null twin


def test_a_fit_on_a_frozen_lm_is_its_null_twin_to_the_bit(tmp_path):
    """An LM that never changed gives the crosscoder the null twin's inputs from the same initialisation: every
    latent's r equals the null's exactly, so nothing can be classed."""
    from tests.helpers import load_script

    train_tiny(tmp_path / "frozen", "train.lr=0", "train.muon_lr=0", "train.max_steps=4", "sae.warmup_tokens=0")
    load_script("analysis/crosscoder_fit.py").main([str(tmp_path / "frozen"), "--out", str(tmp_path), "--epochs", "2"])
    latents = json.loads((tmp_path / "crosscoder_fit_latents_blocks_1_hook_resid_post.json").read_text())
    assert latents["relative_norm"] == latents["relative_norm_null"]
    assert latents["ft_only"] == [] and latents["base_only"] == []
    coder, _ = load(tmp_path / "crosscoder_fit_blocks_1_hook_resid_post.safetensors")
    assert not torch.equal(coder.W_dec, Crosscoder(coder.d_in, coder.d_sae, coder.k).W_dec)  # it trained


def test_the_fit_refuses_a_bad_hook_in_one_line_before_loading_anything(tmp_path):
    from tests.helpers import load_script

    with pytest.raises(SystemExit, match="--hook: 'blocks.x' is not a supported hook point"):
        load_script("analysis/crosscoder_fit.py").main([str(tmp_path / "nothing"), "--out", str(tmp_path),
                                                        "--hook", "blocks.x"])
