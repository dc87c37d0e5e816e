"""The entry points: experiments/run.py's exit codes and --resume latest; the ablation suite."""

import os
import re
import shutil
import subprocess
import sys

import yaml
from helpers import HOOK, ROOT, cli, run_main

from chrono_membench.logging import read_metrics
from chrono_membench.run_dir import RunDir


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    for args in (["--ablation", "nope"], ["--preset", "tiny", "train.max_steps=-1"],
                 ["--resume", str(tmp_path / "missing")],  # an offline hub dataset: the "dead" run below
                 ["--preset", "tiny", "sae.hook_points=[blocks.1.hook_nope]"],
                 ["--preset", "tiny", "sae.hook_points=[blocks.9.hook_mlp_out]"]):
        proc = cli(*args, f"run.out_dir={tmp_path}", env={"HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "allowed: blocks.<layer>.hook_resid_pre" in proc.stderr and "layers 0..1" in proc.stderr


def test_malformed_preset_missing_package_offline_hub_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {max_steps: [\n")
    proc = cli("--config", str(bad))
    assert proc.returncode == 2 and "is not valid YAML" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("--preset", "tiny", "model.name=gguf:/nonexistent/model.gguf", f"run.out_dir={tmp_path}")
    assert proc.returncode == 2 and "nor an existing .gguf file" in proc.stderr and "Traceback" not in proc.stderr
    # (an offline hub dataset: test_a_run_that_fails_before_training_leaves_nothing_and_resume_latest_skips_it)


def test_a_run_that_fails_before_training_leaves_nothing_and_resume_latest_skips_it(tmp_path):
    good = run_main("--preset", "tiny", "--no-progress", "train.max_steps=2", f"run.out_dir={tmp_path}", "run.name=good")
    assert good.returncode == 0, good.stderr[-2000:]
    # the closing summary tells the chrono story and the next command; no deprecation noise from generate
    for line in ("SAE blocks.1.hook_resid_post: FVE", "purity − permutation null", "b0: loss", "unseen − seen loss gap",
                 "MIA AUROC(ref)", "training order", "(Spearman ρ, reference score",
                 "next         python analysis/report.py"):
        assert line in good.stdout, line
    assert "past_key_values" not in good.stderr
    # the evals' share of the wall time, from time/eval_s: what an eval cadence costs, on the first line
    evals = sum(r["time/eval_s"] for r in read_metrics(tmp_path / "good" / "metrics.jsonl") if "time/eval_s" in r)
    assert re.search(rf"s \(evals {evals:.0f} s, \d+%\), ", good.stdout), good.stdout[:400]
    claims = [l for l in good.stdout.splitlines() if "MIA AUROC(ref)" in l or "DiD within" in l or "training order" in l]
    assert claims and all(any(v in l for v in ("detected", "undecided at this size")) for l in claims), claims
    dead = cli("--preset", "tiny", "data.origin=hub", f"run.out_dir={tmp_path}", "run.name=dead",
               env={"HF_HUB_OFFLINE": "1"})
    assert dead.returncode == 2 and not (tmp_path / "dead").exists()  # the hub dataset cannot load offline:
    assert "Traceback" not in dead.stderr and dead.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "data/prepare.py" in dead.stderr  # one line, saying what to run instead
    (tmp_path / "empty").mkdir()  # a directory with a config but no checkpoint (e.g. killed while loading)
    (tmp_path / "empty" / "config.yaml").write_text((tmp_path / "good" / "config.yaml").read_text())
    resumed = run_main("--resume", "latest", "--no-progress", f"run.out_dir={tmp_path}")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout and str(RunDir(tmp_path / "good").root) in \
        resumed.stdout
    # each session that ended normally is on record: what it cost, where it ran, how it was started
    first, second = RunDir(tmp_path / "good").read_sessions()
    assert first["steps"] == 2 and not first["resumed"]
    assert second["resumed"] and second["argv"][:2] == ["--resume", "latest"]
    assert first["wall_s"] > first["eval_s"] > 0 and " cores" in first["machine"]


def test_suite_runs_ablations_over_seeds_as_one_group_and_prints_intervals(tmp_path):
    proc = subprocess.run([sys.executable, "experiments/suite.py", "--preset", "tiny", "--ablations", "full",
                           "no_dropout", "--seeds", "2", "--no-progress", "train.max_steps=2", f"run.out_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("metric"))
    assert "mean [95 % CI]" in header and "− full" in header and "verdict" in header
    loss_rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("val/loss ")]
    assert [(r[1], r[2]) for r in loss_rows] == [("full", "2"), ("no_dropout", "2")]
    assert "seed noise" in proc.stdout or "differs" in proc.stdout
    # seed i of both arms shares data order and SAE init: compared pairwise; the SAE-only ablation leaves the LM as is
    assert " ".join(loss_rows[1][-5:]) == "paired identical in every seed"
    # the SAE-only arm is an SAE variant inside each seed's full run: one LM run per seed
    configs = [yaml.safe_load((p / "config.yaml").read_text()) for p in tmp_path.iterdir()]
    assert sorted((c["run"]["ablation"], c["run"]["seed"], c["data"]["seed"]) for c in configs) == [
        ("full", 0, 0), ("full", 1, 1)]
    assert all(c["sae"]["variants"] == {"no_dropout": {"chrono.dropout_p_max": 0.0}} for c in configs)
    assert [r[1:3] for r in (line.split() for line in proc.stdout.splitlines())
            if r and r[0] == f"sae/{HOOK}/fve"] == [["full", "2"], ["no_dropout", "2"]]
    groups = {c["logging"]["group"] or c["run"]["preset"] for c in configs}
    assert len(groups) == 1 and len(list(tmp_path.iterdir())) == 2
    # continued by its group name: finished runs are kept, one without its final model resumes from its checkpoint
    group = configs[0]["logging"]["group"]
    unfinished = RunDir(tmp_path / f"{group}-full-s1")
    shutil.rmtree(unfinished.final_model)
    lines = unfinished.metrics.read_text()
    again = subprocess.run([sys.executable, "experiments/suite.py", "--preset", "tiny", "--ablations", "full",
                            "no_dropout", "--seeds", "2", "--no-progress", "--group", group,
                            "train.max_steps=2", f"run.out_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                           env=os.environ)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("finished already") == 1 and "full · seed 1 (run.seed=1, data.seed=1) resumed" \
        in again.stdout
    assert unfinished.final_model.exists() and unfinished.metrics.read_text() == lines
    assert [line.split() for line in again.stdout.splitlines() if line.startswith("val/loss ")] == loss_rows
    bad = subprocess.run([sys.executable, "experiments/suite.py", "--preset", "tiny", "--ablations", "nope"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown ablation" in bad.stderr


def test_sweep_of_an_sae_setting_is_one_lm_run_with_the_points_and_the_users_variants(tmp_path):
    proc = subprocess.run([sys.executable, "experiments/sweep.py", "--preset", "tiny", "--no-progress",
                           "train.max_steps=2", f"run.out_dir={tmp_path}", "chrono.alignment_weight=0,1",
                           "sae.variants={k4: {sae.k: 4}}"], cwd=ROOT, capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1  # the second point is an SAE variant of the first point's LM run
    config = yaml.safe_load((runs[0] / "config.yaml").read_text())
    assert set(config["sae"]["variants"]) == {"alignment_weight=1", "k4"}  # the user's variant kept beside it
    assert config["chrono"]["alignment_weight"] == 0
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("val/loss ")]
    assert [r[1] for r in rows] == ["alignment_weight=0", "alignment_weight=1"]


def test_without_network_a_hub_model_or_dataset_fails_at_once_in_one_line(tmp_path, monkeypatch):
    """No HF_HUB_OFFLINE, and a hub that refuses connections (HF_ENDPOINT at a closed port: what a machine without
    network meets, made the same everywhere): one try, one line saying what to do, exit 2 — not the hub client's
    minute of retries."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    model = run_main("--preset", "tiny", "--no-progress", "model.name=hf:gpt2", f"run.out_dir={tmp_path}")
    assert model.returncode == 2 and model.stderr.strip().splitlines()[-1].startswith(
        "error: model.name='hf:gpt2' needs the Hugging Face hub, which is unreachable (127.0.0.1:9: "), model.stderr
    assert "HF_HUB_OFFLINE=1" in model.stderr and "Traceback" not in model.stderr
    data = run_main("--preset", "tiny", "--no-progress", "data.origin=hub", f"run.out_dir={tmp_path}")
    assert data.returncode == 2 and "data.origin=hub but the hub is unreachable (127.0.0.1:9" in data.stderr
    assert "data/prepare.py" in data.stderr and "Traceback" not in data.stderr
