"""Per-latent records, the feature dashboard (its data is the SAE's, recomputed independently), and the causal
ablation of memorisation latents."""

import json

import pytest
import torch
from sae_lens import SAE

from chrono_membench.checkpoint import latest_good_checkpoint
from chrono_membench.hooks import file_name
from chrono_membench.model import load_hf_state_dict, load_model
from chrono_membench.run_dir import RunDir
from helpers import HOOK, load_script, tiny, train_tiny


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dash") / "run"
    return run, train_tiny(run)


def test_dashboard_top_activations_are_the_checkpoints_sae_on_that_token(tiny_run, tmp_path):
    run, metrics = tiny_run
    assert all(r["time/latent_records_s"] > 0 for r in metrics if "time/latent_records_s" in r)
    dashboard = load_script("analysis/feature_dashboard.py")
    page = dashboard.write_dashboard(run, HOOK, tmp_path / "report")
    text = page.read_text()
    assert "Plotly.newPlot" in text and 'src="http' not in text  # plotly inlined, nothing fetched: opens offline
    meta = json.loads(text.split("const META = ", 1)[1].split(";\n", 1)[0])
    assert meta["steps"] == [4, 8] and meta["n_shown"] > 0
    # the memorisation link: the last eval's table, every latent of it in the picker with its AUROC
    assert meta["memorisation_step"] == 8
    table = json.loads((RunDir(run).artifacts(8) / f"memorisation_latents_{file_name(HOOK)}.json").read_text())["latents"]
    picker = {r["id"]: r["mem_auc"] for r in meta["table"]}
    assert table and all(abs(picker[i] - auc) < 1e-9 for i, auc in table)
    assert sum(auc is not None for auc in picker.values()) == len(table)
    block = (page.parent / "data" / "block_0.js").read_text()
    data = json.loads(block.split("Object.assign(window.DASH, ", 1)[1].rsplit(");", 1)[0])

    # recompute: the step-8 model and the step-8 SAE as exported (sae-lens format), on the listed token
    path, ckpt = latest_good_checkpoint(run)
    model, _ = load_model(tiny().model)
    load_hf_state_dict(model, ckpt["model"])
    sae = SAE.load_from_disk(str(run / "artifacts" / path.name / f"sae_{file_name(HOOK)}"))
    windows = {w["uid"]: w["tokens"] for w in json.loads((run / "artifacts" / path.name / "windows.json").read_text())}
    checked = 0
    for latent, per_step in [(i, d) for i, d in data.items() if d[-1]["contexts"]][:5]:  # latents firing at step 8
        last = per_step[-1]
        assert last["step"] == 8 and len(per_step) == 2
        for context in last["contexts"][:3]:
            tokens = torch.tensor([windows[context["uid"]]])
            _, cache = model.run_with_cache(tokens, names_filter=HOOK)
            act = sae.encode(cache[HOOK][0, context["pos"]][None].float())[0, int(latent)].item()
            assert abs(act - context["act"]) < 1e-2 * max(1.0, abs(act)), (latent, context["pos"], act, context["act"])
            assert abs(context["scored_act"][context["pos"] - 32] - context["act"]) < 1e-2  # the shaded max token
            checked += 1
    assert checked >= 5


def test_ablating_latents_through_the_splice(tiny_run, tmp_path):
    from chrono_membench.restore import restore_for_analysis

    run, _ = tiny_run
    ablate = load_script("analysis/ablate_latents.py")
    r = restore_for_analysis(run)
    tokens = torch.tensor([r.probes.buckets[0][0].tokens])
    plain = r.model(tokens)
    def spliced(latents):
        return r.model.run_with_hooks(tokens, fwd_hooks=[(HOOK, ablate.splice(r.saes, HOOK, latents))])
    torch.testing.assert_close(spliced(torch.tensor([], dtype=torch.long)), plain, atol=1e-4, rtol=1e-4)  # error kept
    assert (spliced(torch.arange(r.saes.saes[HOOK].cfg.d_sae)) - plain).abs().max() > 1e-2
    ablate.main([str(run), "--out", str(tmp_path), "--n", "3", "--draws", "2"])
    summary = json.loads((tmp_path / f"ablate_latents_{file_name(HOOK)}.json").read_text())
    assert len(summary["top_latents"]) == 3 and set(summary["top"]) == set(summary["random_mean"])
    assert summary["memorised_windows"] >= 2  # one (top decile, at least one) per bucket
    decided = summary["verdict"].startswith(("detected", "none detected"))
    assert decided and summary["resolution"] > 0 or summary["verdict"].startswith("undecided"), summary["verdict"]
    ablate = load_script("analysis/ablate_latents.py")
    assert ablate.verdict(0.5, [0.0, 0.01, -0.01])[0].startswith("detected")
    said, half = ablate.verdict(0.5, [0.0, 0.0])  # random sets that never fire there: no yardstick, not "detected"
    assert said.startswith("undecided") and half != half
    said, half = ablate.verdict(0.005, [0.0, 0.01, -0.01])
    assert said.startswith("none detected") and half == pytest.approx(4.303 * 0.01 * (4 / 3) ** 0.5, rel=1e-3)
    (tmp_path / "bare" / "checkpoints").mkdir(parents=True)  # a run without a checkpoint: one line, no traceback
    with pytest.raises(SystemExit, match=r"^error: .*bare has no good checkpoint; ablate_latents reads"):
        ablate.main([str(tmp_path / "bare"), "--out", str(tmp_path)])


def test_records_folded_from_the_evals_forward_equal_a_forward_of_their_own(tiny_run):
    """The tiny run checkpoints at its eval steps, so its records were folded from the eval's forward over the
    probe windows: a separate forward (latent_records) with the restored step-8 model and SAEs gives the same."""
    from safetensors.torch import load_file

    from chrono_membench.latent_records import latent_records
    from chrono_membench.model import autocast
    from chrono_membench.restore import restore_for_analysis

    run, _ = tiny_run
    r = restore_for_analysis(run)
    assert r.step == 8
    records, windows = latent_records(r.model, r.saes, r.probes, autocast("cpu", r.cfg.train.autocast), "cpu")
    stored = load_file(RunDir(run).artifact(8, "latents", HOOK))
    assert windows == json.loads(RunDir(run).artifact(8, "windows").read_text())
    assert set(stored) == {k for k, v in records[HOOK].items() if isinstance(v, torch.Tensor)}
    for key, value in stored.items():
        mine = records[HOOK][key].cpu()
        if value.is_floating_point():  # one forward per chunk either way; the SAE sees 64 or 32 tokens per window
            torch.testing.assert_close(mine.float(), value.float(), atol=2e-3, rtol=2e-3, msg=key)
        else:
            assert torch.equal(mine, value), key


def test_running_top_k_keeps_each_top_windows_context():
    """One pass over chunks of windows gives the same top-k (value, window·S + position, the window's S
    activations) as a top-k over all windows at once."""
    from chrono_membench.latent_records import merge_top

    acts = torch.rand(11, 8, 5, generator=torch.Generator().manual_seed(0))  # windows, scored tokens, latents
    r = {"top_act": torch.zeros(0, 5), "top_index": torch.zeros(0, 5, dtype=torch.long), "top_ctx": torch.zeros(0, 5, 8)}
    for start in range(0, 11, 3):
        merge_top(r, acts[start:start + 3], start, k=4)
    top = acts.reshape(-1, 5).topk(4, dim=0)
    torch.testing.assert_close(r["top_act"], top.values)
    torch.testing.assert_close(r["top_index"], top.indices)
    for j in range(4):
        for f in range(5):
            torch.testing.assert_close(r["top_ctx"][j, f], acts[top.indices[j, f] // 8, :, f])
