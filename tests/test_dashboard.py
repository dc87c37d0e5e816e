"""Per-latent records and the feature dashboard: the page's data is the SAE's, recomputed independently."""

import json

import torch
from sae_lens import SAE

from chrono_membench.checkpoint import latest_good_checkpoint
from chrono_membench.hooks import file_name
from chrono_membench.model import load_hf_state_dict, load_model
from helpers import HOOK, load_script, tiny, train_tiny


def test_dashboard_top_activations_are_the_checkpoints_sae_on_that_token(tmp_path):
    run = tmp_path / "run"
    metrics = train_tiny(run)
    assert all(r["time/latent_records_s"] > 0 for r in metrics if "time/latent_records_s" in r)
    dashboard = load_script("analysis/feature_dashboard.py")
    page = dashboard.write_dashboard(run, HOOK, tmp_path / "report")
    text = page.read_text()
    assert "Plotly.newPlot" in text and 'src="http' not in text  # plotly inlined, nothing fetched: opens offline
    meta = json.loads(text.split("const META = ", 1)[1].split(";\n", 1)[0])
    assert meta["steps"] == [4, 8] and meta["n_shown"] > 0
    block = (page.parent / "data" / "block_0.js").read_text()
    data = json.loads(block.split("Object.assign(window.DASH, ", 1)[1].rsplit(");", 1)[0])

    # recompute: the step-8 model and the step-8 SAE as exported (sae-lens format), on the listed token
    path, ckpt = latest_good_checkpoint(run)
    model, _ = load_model(tiny().model)
    load_hf_state_dict(model, ckpt["model"])
    sae = SAE.load_from_disk(str(run / "artifacts" / path.name / f"sae_{file_name(HOOK)}"))
    windows = {w["uid"]: w["tokens"] for w in json.loads((run / "artifacts" / path.name / "windows.json").read_text())}
    checked = 0
    for latent, per_step in list(data.items())[:5]:
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
