"""Each analysis script renders on a tiny run made here, and its HTML holds the expected traces."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import chrono_membench.train as train_mod
from chrono_membench.config import load_config
from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for name, ablation, seed in (("full", "full", 0), ("no_alignment", "no_alignment", 0), ("full-s1", "full", 1)):
        variants = ["sae.variants={no_dropout: {chrono.dropout_p_max: 0}}"] if ablation == "full" else []
        variants += ["crosscoder.enabled=true"] if name == "full" else []  # its figure, export and the report
        cfg = load_config("tiny", ablation=ablation, overrides=["chrono.canary_repetitions=[1, 3]",
                                                              "chrono.canary_candidates=15", f"run.seed={seed}",
                                                              f"data.seed={seed}", *variants])
        train_mod.train(cfg, out / name, progress=False)
    return out


def render(script, run_dirs, out, *extra):
    proc = subprocess.run([sys.executable, f"analysis/{script}.py", *map(str, run_dirs), "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def figure(out, name):
    """The figure a script saved, as plotly defines it (its JSON beside the HTML); the HTML must exist too."""
    import plotly.io

    assert (out / f"{name}.html").stat().st_size > 0
    return plotly.io.read_json(out / f"{name}.plotly.json")


def names(fig):
    return [t.name for t in fig.data]


def test_training_curves_overlay_runs(runs, tmp_path):
    render("training_curves", [runs / "full", runs / "no_alignment"], tmp_path)
    traces = names(figure(tmp_path, "training_curves"))
    for key in ("train/loss", "val/ppl", "train/lr", "train/grad_norm", "train/tokens_per_s"):
        assert f"{key} · full" in traces and f"{key} · no_alignment" in traces
    legend = [t.name for t in figure(tmp_path, "training_curves").data if t.showlegend is not False]
    assert legend == ["full", "no_alignment"]  # one entry a run, named for the run (not "train/loss · full")


def test_feature_trajectories(runs, tmp_path):
    render("feature_trajectories", [runs / "full"], tmp_path, "--top", "5")
    traces = names(figure(tmp_path, "feature_trajectories_full_blocks_1_hook_resid_post"))
    assert sum(n.startswith("latent ") for n in traces) == 10 and "mmcs" in traces and "self_match_frac" in traces


def test_purity_heatmaps(runs, tmp_path):
    render("purity_heatmaps", [runs / "full"], tmp_path)
    heatmaps = [t for t in figure(tmp_path, "purity_heatmaps_full_blocks_1_hook_resid_post").data if t.type == "heatmap"]
    columns = {str(c) for t in heatmaps for c in t.x}
    assert heatmaps and "unseen" in columns and "fineweb_edu" in columns
    note = figure(tmp_path, "purity_heatmaps_full_blocks_1_hook_resid_post").layout.annotations[-1].text
    assert "permutation null 0." in note and "time-selective under FDR: not tested" in note  # tiny: 2 per bucket
    assert "source-selective: " in note and "n/a" not in note
    curves = names(figure(tmp_path, "purity_curves_full_blocks_1_hook_resid_post"))
    assert "temporal" in curves and "temporal null" in curves and "source null" in curves


def test_memorisation(runs, tmp_path):
    render("memorisation", [runs / "full"], tmp_path)
    fig = figure(tmp_path, "memorisation_full")
    # tiny decodes at its evals 4 and 8: exact and token match are the last eval's bars; loss (0, 4, 8) a time series
    for name in ("exact_match (last eval)", "token_match (last eval)", "loss b1", "loss gap", "AUROC loss", "AUROC ref",
                 "DiD b0", "loss by exposures", "loss by last_seen", "rank-based (capped)", "sampled (no assumed tail)",
                 "extrapolated (skew-normal model)"):
        assert name in names(fig), name
    assert any(getattr(t, "error_y", None) is not None and t.error_y.arrayminus is not None for t in fig.data)  # intervals
    bars = {t.name: t for t in fig.data if t.type == "bar"}  # the canary cells, their interval bounds not bars
    assert list(bars["rank-based (capped)"].x) == ["×1", "×3", "control"]
    assert bars["extrapolated (skew-normal model)"].error_y.array and bars["sampled (no assumed tail)"].error_y.array


def test_the_memorisation_figure_draws_any_number_of_scores(runs, tmp_path, monkeypatch):
    """Six memorisation scores (K.MEM_SCORES drives the evaluation) take two rows of panels, not a column 4."""
    from chrono_membench import metric_keys as K

    monkeypatch.syspath_prepend(str(ROOT / "analysis"))  # the script imports its folder's common.py
    script = load_script("analysis/memorisation.py")
    monkeypatch.setattr(K, "MEM_SCORES", {**K.MEM_SCORES, "min_k": "mean", "a": "rate", "b": "mean"})
    monkeypatch.setattr(sys, "argv", ["memorisation.py", str(runs / "full"), "--out", str(tmp_path)])
    script.main()
    fig = figure(tmp_path, "memorisation_full")
    titles = [a.text for a in fig.layout.annotations]
    assert "min k (last eval)" in titles and "exact match (32-extractable) (last eval)" in titles
    assert fig.layout.height == 1600
    assert "exact_match (last eval)" in names(fig) and "loss b0" in names(fig) and "loss gap" in names(fig)


def test_compare_ablations_and_report(runs, tmp_path, monkeypatch):
    render("compare_ablations", [runs / "full", runs / "full-s1", runs / "no_alignment", f"{runs / 'full'}#no_dropout",
                                 f"{runs / 'full-s1'}#no_dropout"], tmp_path)  # an SAE variant is an arm of its own
    tables = [t for t in figure(tmp_path, "ablations_table").data if t.type == "table"]
    cells = [str(v) for t in tables for column in t.cells["values"] for v in column]
    assert tables and any("one seed: no interval" in c for c in cells)  # no_alignment has one seed
    summary = json.loads((tmp_path / "ablations_final.json").read_text())
    val = {r["arm"]: r for r in summary["rows"] if r["metric"] == "val/loss"}
    assert val["full"]["seeds"] == 2 and val["full"]["low"] <= val["full"]["mean"] <= val["full"]["high"]
    assert summary["baseline"] == "full" and "diff" in val["no_alignment"]
    assert val["no_dropout"]["seeds"] == 2 and val["no_dropout"]["verdict"] == "identical in every seed"  # same LM
    fve = {r["arm"]: r for r in summary["rows"] if r["metric"] == "sae/blocks.1.hook_resid_post/eval_fve"}
    assert fve["no_dropout"]["mean"] != fve["full"]["mean"]  # its own SAEs
    curves = names(figure(tmp_path, "ablations_curves"))
    assert "chrono/blocks.1.hook_resid_post/alignment_loss · no_alignment" in curves
    assert "val/loss · full 95 %" in curves  # the seed band of the two-seed arm
    legend = [t.name for t in figure(tmp_path, "ablations_curves").data if t.showlegend is not False]
    assert "full (2 seeds, 95 % band)" in legend and "no_alignment (1 seed: no band)" in legend
    report = tmp_path / "report"
    render("report", [runs / "full", runs / "no_alignment"], report, "--docs", str(tmp_path / "docs"))
    index = (report / "index.html").read_text()
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    figures = load_script("analysis/report.py").DOCS_FIGURES  # --docs: each as a small HTML (no PNGs in tests)
    made = [name for name, pattern in figures.items() if list(report.glob(f"{pattern}.plotly.json"))]
    assert len(made) >= 5  # tiny logs no blind baseline (too few windows to cross-fit); the demo does
    for name in made:
        page = (tmp_path / "docs" / f"{name}.html").read_text()
        assert "cdn.plot.ly" in page and len(page) < 1_000_000, name
    linked = [p.name for p in report.glob("*.html") if p.name != "index.html"]
    assert len(linked) >= 9 and all(f'href="{name}"' in index for name in linked)
    dashboards = sorted(p.relative_to(report).as_posix() for p in report.glob("dashboards_*/dashboard_*/index.html"))
    assert len(dashboards) == 2 and all(f'href="{d}"' in index for d in dashboards)  # one per run, linked
    for run in ("full", "no_alignment"):  # each run's closing summary, with what it could have seen
        assert f"{run}: results at the last eval" in index
    assert "MIA AUROC(ref)" in index and ("detected" in index or "undecided at this size" in index)
    assert "not computed: <code>python analysis/sparse_probing.py" in index  # linked once it is there


def test_wandb_workspace_is_built_offline_from_the_runs_keys(runs, tmp_path, monkeypatch):
    """Construction only (no server here): every line panel plots keys the run logged, runs group by ablation."""
    proc = render("wandb_workspace", [runs / "full"], tmp_path, "--entity", "someone")
    assert "wandb_workspace.json" in proc.stdout
    spec = json.loads((tmp_path / "wandb_workspace.json").read_text())
    assert spec["entity"] == "someone" and spec["project"] == "chrono-membench"
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))  # the script imports its neighbour common.py
    script = load_script("analysis/wandb_workspace.py")
    run = script.load_run(runs / "full")
    workspace = script.build_workspace(run, "someone", "chrono-membench", "test")
    names = [s.name for s in workspace.sections]
    hook = "blocks.1.hook_resid_post"
    assert names[0] == "training" and f"SAE {hook}" in names and f"chrono {hook}" in names and "memorisation" in names
    plotted = [y for s in workspace.sections for p in s.panels if hasattr(p, "y") for y in p.y]
    assert plotted and set(plotted) <= set(run.keys())
    assert f"chrono/{hook}/temporal_purity_excess" in plotted and "val/loss" in plotted
    assert [g.name for g in workspace.runset_settings.groupby] == ["run.ablation"]
    media = [k for s in workspace.sections for p in s.panels for k in getattr(p, "media_keys", [])]
    assert f"panels/purity/{hook}" in media and "panels/drift" in media


def test_no_run_given_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "analysis/training_curves.py", str(tmp_path), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "not a run directory" in proc.stderr


def test_sparse_probing_through_the_checkpoints(runs, tmp_path):
    """sae-probes's protocol on each checkpoint whose model is on disk: a raw-activation baseline per model
    checkpoint and each SAE (variants too) at each k; a step whose model is gone is said to be skipped."""
    import csv
    import shutil

    shutil.copytree(runs / "full", tmp_path / "full", ignore=shutil.ignore_patterns("final_model"))
    shutil.rmtree(tmp_path / "full" / "checkpoints" / "step_00000004")  # as keep_last would have
    out = tmp_path / "probing"
    proc = render("sparse_probing", [tmp_path / "full", runs / "full-s1"], out, "--datasets", "129_arith_mc_A",
                  "--max-examples", "300", "--ks", "1,4", "--no-wandb", "--no-progress")
    assert "skipped: full step 4: its model is not on disk" in proc.stderr
    rows = list(csv.DictReader(open(out / "sparse_probing.csv")))
    got = {(r["run"], int(r["step"]), r["sae"], int(r["k"])) for r in rows}
    probes = (("", 0), ("main", 1), ("main", 4), ("no_dropout", 1), ("no_dropout", 4))  # "": the raw baseline
    carried = {(run, 8, "previous", k) for run in ("full", "full-s1") for k in (1, 4)}  # step 4's SAE, step 8's model
    assert got == {("full", 8, *p) for p in probes} | {("full-s1", s, *p) for s in (4, 8) for p in probes} | carried
    assert all(0 <= float(r["test_auc"]) <= 1 and 0 < float(r["se"]) < 0.2 for r in rows)
    assert {(int(r["n_train"]), int(r["n_test"])) for r in rows} == {(200, 99)}  # sae-probes: min(n − 100, 1024)
    traces = names(figure(out, "sparse_probing"))
    assert {"raw activations", "SAE k=1", "SAE k=4", "SAE no_dropout k=1"} <= set(traces)
    assert "| blocks.1.hook_resid_post | 129_arith_mc_A | SAE k=4 |" in (out / "sparse_probing.md").read_text()
    # a second call reuses each run's rows (sparse_probing.jsonl): step 8 stays, though its model is gone now
    shutil.rmtree(tmp_path / "full" / "checkpoints")
    again = tmp_path / "again"
    render("sparse_probing", [tmp_path / "full"], again, "--datasets", "129_arith_mc_A", "--max-examples", "300",
           "--ks", "1,4", "--no-wandb", "--no-progress")
    assert list(csv.DictReader(open(again / "sparse_probing.csv"))) == [r for r in rows if r["run"] == "full"]
    bad = subprocess.run([sys.executable, "analysis/sparse_probing.py", str(runs / "full"), "--out", str(out),
                          "--datasets", "no_such_set"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "--datasets: unknown no_such_set" in bad.stderr


def test_sparse_probing_summarises_across_datasets_and_splits_a_change_into_model_and_sae(monkeypatch):
    """Hand-made rows: three datasets, steps 0 and 10, the main SAE and step 0's SAE carried onto step 10's model.
    The mean over datasets carries a t interval across them; the 0 → 10 change (+0.10 on every dataset) is detected,
    and splits into the model's change (+0.02, +0.03, +0.04) and the SAE's training (the rest)."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    sp = load_script("analysis/sparse_probing.py")
    rows = []
    for d, (base, model) in enumerate(((0.60, 0.02), (0.70, 0.03), (0.65, 0.04))):
        row = dict(hook="h", k=1, dataset=f"d{d}", run="r")
        rows += [{**row, "sae": "main", "step": 0, "test_auc": base}, {**row, "sae": "main", "step": 10,
                 "test_auc": base + 0.10}, {**row, "sae": sp.PREVIOUS, "step": 10, "test_auc": base + model}]
    got = {r["what"].strip(): r for r in sp.across_datasets(rows)}
    assert got["mean at step 0"]["datasets"] == 3 and got["mean at step 0"]["lo"] < 0.65 < got["mean at step 0"]["hi"]
    change = got["step 0 → 10"]
    assert abs(change["value"] - 0.10) < 1e-9 and change["verdict"].startswith("detected")
    model = got["the model's change 0 → 10 (step 0's SAE)"]
    assert abs(model["value"] - 0.03) < 1e-9 and model["lo"] < 0.03 < model["hi"]
    assert abs(got["the SAE's training 0 → 10 (on step 10's model)"]["value"] - 0.07) < 1e-9
    assert "| h | SAE k=1 | step 0 → 10 | 3 |" in sp.across_table(sp.across_datasets(rows))


def test_sparse_probing_reads_each_prompts_last_token_as_an_unpadded_forward_would(runs):
    import contextlib

    import torch

    from chrono_membench.restore import restore_for_analysis

    probing = load_script("analysis/sparse_probing.py")
    r = restore_for_analysis(runs / "full")
    prompts = ["Calculate 63 - 5 =", "A", "What are the prime factors of 185577?", "Goliath " * 40]
    hook = "blocks.1.hook_resid_post"
    got = probing.last_token_activations(r.model, r.tokenizer, prompts, [hook], max_seq_len=32, batch_size=3,
                                         autocast=contextlib.nullcontext(), device="cpu")[hook]
    for i, p in enumerate(prompts):
        ids = r.tokenizer(p)["input_ids"][-32:]  # left truncation
        _, cache = r.model.run_with_cache(torch.tensor([ids]), names_filter=[hook])
        torch.testing.assert_close(got[i], cache[hook][0, -1], rtol=1e-4, atol=1e-5)


def test_registered_metrics_are_drawn_from_the_registry(runs, tmp_path):
    """analysis/registered_metrics.py draws every registered metric with a panel: here the blind baselines, logged
    into a copy of the tiny run at three evals (tiny has too few windows per class to compute them itself)."""
    import shutil

    from chrono_membench import metric_keys as K

    run = tmp_path / "full"
    shutil.copytree(runs / "full", run)
    with open(run / "metrics.jsonl", "a") as f:
        for step, auc in ((4, 0.52), (6, 0.49), (8, 0.51)):
            f.write(json.dumps({"step": step, K.blind("member"): auc, K.blind("member") + "_lo": auc - 0.1,
                                K.blind("member") + "_hi": auc + 0.1}) + "\n")
    render("registered_metrics", [run], tmp_path / "out")
    (trace,) = figure(tmp_path / "out", "metric_blind_full").data
    assert trace.name == K.blind("member") and list(trace.y) == [0.52, 0.49, 0.51] and list(trace.error_y.array)


def test_every_key_a_figure_plots_is_one_the_run_logged(runs, tmp_path, monkeypatch):
    """Each report figure, rendered in-process from the tiny runs with `Run.series` recording what it asks for: a
    figure asking for a key that no run logs (a renamed or removed metric) would draw an empty trace — a stale
    figure. The keys come from metric_keys' helpers, so this also ties the figures to them."""
    monkeypatch.syspath_prepend(str(ROOT / "analysis"))
    import common

    asked: dict[str, set] = {}
    series = common.Run.series

    def recording(self, key):
        asked.setdefault(script_name, set()).add(key)
        return series(self, key)

    monkeypatch.setattr(common.Run, "series", recording)
    runs_given = [runs / "full", runs / "no_alignment"]
    logged = {k for r in runs_given for k in common.load_run(r).keys()}
    for script_name in ("training_curves", "feature_trajectories", "purity_heatmaps", "memorisation",
                        "registered_metrics", "compare_ablations", "crosscoder"):
        monkeypatch.setattr(sys, "argv", [script_name, *map(str, runs_given), "--out", str(tmp_path / script_name)])
        load_script(f"analysis/{script_name}.py").main()
    assert set(asked) >= {"training_curves", "purity_heatmaps", "memorisation"} and len(asked["training_curves"]) >= 5
    stale = {s: sorted(k for k in keys if k not in logged) for s, keys in asked.items()}
    assert not any(stale.values()), stale


def test_crosscoder_figure(runs, tmp_path):
    """Histograms of r at each checkpoint with the null twin's, r's spread beside the twin's at each eval, the
    emergence histogram; a run without a crosscoder says so in one line."""
    render("crosscoder", [runs / "full"], tmp_path)
    fig = figure(tmp_path, "crosscoder_full")
    traces = names(fig)
    assert [n for n in traces if n.startswith("step ")] == ["step 4", "step 8"]  # its checkpoints
    assert {"null twin (last)", "SD of r", "SD of r, null twin"} <= set(traces)
    (spread,) = [t for t in fig.data if t.name == "SD of r"]
    assert list(spread.x) == [4, 8] and all(v > 0 for v in spread.y)  # each eval after it first trained
    assert list(fig.layout.xaxis.range) == [0, 1]
    proc = render("crosscoder", [runs / "no_alignment"], tmp_path / "none")
    assert "no crosscoder readings" in proc.stdout and not list((tmp_path / "none").glob("*.html"))


def test_export_writes_loadable_saes_a_card_and_says_how_to_upload_offline(runs, tmp_path):
    """analysis/export.py: every checkpoint's SAE loads with sae-lens and knows its model, hook, context size and
    step; the card carries each one's panel values; --upload without the hub fails in one line with the command."""
    from sae_lens import SAE

    out = tmp_path / "export"
    proc = subprocess.run([sys.executable, "analysis/export.py", str(runs / "full"), "--out", str(out), "--repo",
                           "someone/tiny-saes", "--upload"], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and "not uploaded" in proc.stderr and "--upload" in proc.stderr.splitlines()[-1]
    for step in (4, 8):
        sae = SAE.load_from_disk(out / "saes" / f"step_{step}" / "blocks.1.hook_resid_post")
        meta = sae.cfg.metadata
        assert (meta.hook_name, meta.model_name, meta.context_size) == ("blocks.1.hook_resid_post", "tiny", 64)
        assert meta.chrono_membench_step == step
    card = (out / "README.md").read_text()
    assert "| `step_8/blocks.1.hook_resid_post` | 8 |" in card and 'SAE.from_pretrained("someone/tiny-saes"' in card
    assert "–" not in card.split("| `step_8/")[1].splitlines()[0]  # the step's panel values are there
    assert (out / "model" / "config.json").exists() and len(list((out / "crosscoder").iterdir())) == 2


def test_study_page_is_written_from_the_run_alone(runs, tmp_path):
    """The page from the run alone, with its frozen-LM twin's verdicts beside the run's; a twin that is not one is
    refused in one line."""
    import shutil

    from helpers import run_main

    common = ["--preset", "tiny", "--no-progress", f"run.out_dir={tmp_path}", "chrono.canary_repetitions=[1, 3]",
              "chrono.canary_candidates=15"]
    for name, ablation in (("study", "full"), ("frozen", "frozen_lm")):
        made = run_main(*common, f"run.name={name}", "--ablation", ablation)
        assert made.returncode == 0, made.stderr[-2000:]
    render("study_page", [tmp_path / "study", "--frozen", tmp_path / "frozen"], tmp_path / "docs")
    page = (tmp_path / "docs" / "study.md").read_text()
    assert "`python experiments/run.py --preset tiny --no-progress" in page and "over 1 session (evals" in page
    assert "| claim | measured | verdict | frozen-LM twin | its verdict |" in page
    rows = [line.rstrip(" |").split(" | ") for line in page.splitlines()
            if line.startswith("| ") and not line.startswith("| claim")]
    assert any("training order" in r[0] for r in rows) and any("b0 told from unseen" in r[0] for r in rows)
    verdicts = ("detected", "none detected", "undecided")
    assert all(len(r) == 5 and r[2].startswith(verdicts) and r[4].startswith(verdicts) for r in rows), rows
    # the frozen LM equals its step-0 reference: every reference score is exactly 0, so no window is told from unseen
    assert all(r[3].startswith("0.500") for r in rows if "told from unseen" in r[0]), rows
    assert "Frozen-LM twin: `" in page and "are not detected on the twin" in page
    shown = [line for line in page.splitlines() if "([interactive](study/" in line]
    assert len(shown) >= 4 and all((tmp_path / "docs" / line.split("](")[1].split(")")[0]).exists() for line in shown)
    assert "## The closing summary" in page and "MIA AUROC(ref)" in page
    # a twin that is not one: another ablation, or a frozen run of other seeds
    shutil.copytree(tmp_path / "frozen", tmp_path / "other", ignore=shutil.ignore_patterns("checkpoints", "final_model"))
    config = tmp_path / "other" / "config.yaml"
    config.write_text(config.read_text().replace("seed: 0", "seed: 1", 1))
    for twin, why in ((tmp_path / "study", "is not a frozen-LM run"), (tmp_path / "other", "in run.seed")):
        proc = subprocess.run([sys.executable, "analysis/study_page.py", str(tmp_path / "study"), "--frozen",
                               str(twin), "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and why in proc.stderr, proc.stderr
    # a run with no finished session on record (trained without run.py, or still running): one line, exit 2
    proc = subprocess.run([sys.executable, "analysis/study_page.py", str(runs / "full"), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "sessions.jsonl" in proc.stderr
