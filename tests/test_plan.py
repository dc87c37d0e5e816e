"""Planning formulas on hand-made inputs, and the plan/tune commands end to end on small presets."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import load_script

from chrono_membench.config import load_config
from studies.plan import (
    chinchilla_tokens, count_parameters, entries_for_time_budget, epochs_per_source, find_max_micro_batch,
    measure_documents, steps_for_tokens, storage_plan, tokens_consumed,
)

ROOT = Path(__file__).resolve().parents[1]


def test_tokens_and_chinchilla_as_in_the_design():
    assert tokens_consumed(5000, 2, 16, 2048) == 327_680_000
    assert chinchilla_tokens(2_000_000_000) == 40_000_000_000
    assert steps_for_tokens(40_000_000_000, 65_536) == 610_352
    assert epochs_per_source(1000, {"a": 0.5, "b": 0.5, "c": 0.0}, {"a": 250, "b": 1000}) == {"a": 2.0, "b": 0.5}


def test_the_time_budget_worked_example_of_the_design():
    # 400,000 entries/GB, 200 M tokens/GB, 2,500 tokens/s, 5 days → 2.16 M entries
    assert entries_for_time_budget(400_000, 200e6, 2500, 5 * 86400) == pytest.approx(2.16e6)


def test_measure_documents_extrapolates_and_says_so(tokenizer):
    docs = ["one two three", "four five"]
    exact = measure_documents(docs, tokenizer)
    assert (exact.entries, exact.bytes, exact.extrapolated) == (2, 22, False)
    assert exact.tokens == sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 1 for d in docs)
    scaled = measure_documents(docs, tokenizer, total_entries=20)
    assert scaled.extrapolated and scaled.bytes == 220 and scaled.tokens == 10 * exact.tokens
    assert scaled.entries_per_gb == pytest.approx(20 / 220e-9)


def test_storage_plan_from_shapes():
    cfg = load_config("gemma-2b")
    items = storage_plan(cfg, d_model=2304, n_layers=26, n_hooks=1)
    d_sae = 8 * 2304
    # every 500 steps of 5,000, and step 0 (the SAE warm-up's export)
    assert items["features"]["count"] == 11 and items["features"]["bytes_each"] == (d_sae * 2304 + 2 * d_sae) * 2
    cold = storage_plan(load_config("gemma-2b", overrides=["sae.warmup_tokens=0"]), 2304, 26, 1)
    assert cold["features"]["count"] == cold["sae_state"]["count"] == 10
    assert items["sae_state"]["bytes_each"] == (2 * d_sae * 2304 + d_sae + 2304) * 4
    assert items["purity"]["count"] == 21  # evals at 0, 250, …, 5000
    # the crosscoder and its null twin at each checkpoint: W_enc and W_dec [2, d, F], b_enc [F], b_dec [2, d], fp32
    assert items["crosscoder"]["count"] == 11
    assert items["crosscoder"]["bytes_each"] == 2 * (4 * d_sae * 2304 + d_sae + 2 * 2304) * 4
    no_sae = load_config("gemma-2b", overrides=["sae.enabled=false", "crosscoder.enabled=false"])
    assert set(storage_plan(no_sae, 2304, 26, 1)) == {"scalars"}


def test_parameter_count_from_architecture():
    n, d, layers = count_parameters(load_config("gemma-2b").model)
    assert (d, layers) == (2304, 26) and 2.6e9 < n < 2.62e9  # Gemma-2 2B: 2.61 B
    n, d, layers = count_parameters(load_config("llama-3-8b").model)
    assert (d, layers) == (4096, 32) and 8.0e9 < n < 8.1e9  # Llama-3 8B: 8.03 B


def test_find_max_micro_batch_grows_then_bisects():
    calls = []
    fits = lambda m: calls.append(m) or m <= 11  # noqa: E731
    assert find_max_micro_batch(fits, 1, 1024) == 11
    assert calls == [1, 2, 4, 8, 16, 12, 10, 11]
    assert find_max_micro_batch(lambda m: m <= 100, 1, 64) == 64
    assert find_max_micro_batch(lambda m: False) == 0


def test_plan_command_prints_seed_numbers():
    proc = subprocess.run([sys.executable, "experiments/plan.py", "--preset", "gemma-2b", "--json", "--max-docs", "20"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)
    assert plan["run"]["tokens_consumed"] == 327_680_000
    assert plan["model"]["chinchilla_tokens"] == 20 * plan["model"]["parameters"]
    assert all(s["extrapolated"] for s in plan["data"]["sources"].values())
    # a suite seed: full (+ no_dropout, no_alignment and no_warmup as SAE variants: their SAE files once more),
    # no_diversity, frozen_lm
    sae_files = sum(v["bytes"] for k, v in plan["storage"]["items"].items() if k in ("features", "sae_state")) / 1e9
    assert plan["storage"]["per_suite_gb"] == pytest.approx(3 * plan["storage"]["per_run_gb"] + 3 * sae_files, rel=0.01)
    assert plan["storage"]["items"]["sae_state"]["count"] == 10 + 1  # every 500 steps, and the warm SAE at step 0
    # the SAE warm-up: 2^25 tokens through blocks 0..13 of 26 (the hook: blocks.13), forwards at 1/3 of a step's cost
    warm = plan["sae_warmup"]
    assert warm["tokens"] == 2**25 and warm["stop_layer"] == 14
    assert warm["hours"] == pytest.approx(2**25 * 14 / 26 / (3 * 2500) / 3600)
    assert warm["share_of_run"] == pytest.approx(warm["hours"] / plan["run"]["hours"])
    # a torchrun job of 4 (`--ranks 4 --tokens-per-s 1000`, in this process): 4 × the global batch, throughput linear
    on_four = load_script("experiments/plan.py").build_plan(load_config("gemma-2b"), 120.0, 1000, 20, ranks=4)
    assert on_four["run"]["tokens_consumed"] == 4 * 327_680_000
    assert on_four["time_budget"]["tokens_per_s"] == 4000 and "linear" in on_four["time_budget"]["tokens_per_s_from"]


def test_tune_writes_what_plan_reads(tmp_path):
    env_cwd = tmp_path  # runs/tune/ is relative to the working directory
    proc = subprocess.run([sys.executable, str(ROOT / "experiments/tune.py"), "--preset", "tiny", "--max-micro-batch", "1",
                           "--steps", "1", "--max-memory-gb", "100"], cwd=env_cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "runs" / "tune" / "tiny.json").read_text())
    assert result["micro_batch"] == 1 and result["tokens_per_s"] > 0  # the search itself: test_find_max_micro_batch
    assert result["tokens_per_s"] <= result["tokens_per_s_without_eval"]
    proc = subprocess.run([sys.executable, str(ROOT / "experiments/plan.py"), "--preset", "tiny", "--json",
                           "--max-docs", "5"], cwd=env_cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["time_budget"]["tokens_per_s"] == result["tokens_per_s"]


def test_plan_power_says_what_the_probe_set_detects_and_what_a_target_needs(capsys):
    from chrono_membench.chrono import resolution as R

    plan_script = load_script("experiments/plan.py")
    assert plan_script.main(["--preset", "demo", "--power", "--json", "--did", "0.2"]) == 0
    power = json.loads(capsys.readouterr().out)
    at = power["at_this_size"]  # the demo: 16 windows per bucket, 3 buckets
    assert (at["windows_per_bucket"], at["seen_windows"]) == (16, 48)
    assert at["auroc_vs_0.5"] == pytest.approx(R.auroc_mde(16, 16))
    assert at["order_rho"] == pytest.approx(R.correlation_mde(48))
    need = power["needed"]
    assert need["did"]["windows_per_bucket"] == R.windows_for_mean_difference(0.2, 0.3)
    assert need["paired_arm_difference"]["seeds"] == 10  # a 1-SD arm difference
    # at its latents' own firing rate (21 % of windows) the demo's 16 windows per bucket see most of a 4× population
    # and none of a 2× one; the size that sees 80 % of the 2× one is larger
    assert at["fire"] == R.FIRE and at["time_selective_found"]["2.0"]["found"] < 0.2
    assert 0.5 < at["time_selective_found"]["4.0"]["found"] < 0.9 and need["time_selective"]["windows_per_bucket"] > 64
    assert plan_script.main(["--preset", "demo", "--power", "--did-sd", "0"]) == 2
    assert "--did-sd must be > 0" in capsys.readouterr().err


def test_fdr_power_grows_with_windows_and_holds_the_false_share():
    from chrono_membench.chrono import resolution as R

    small, large = R.fdr_power(16, 3, 2.0), R.fdr_power(256, 3, 2.0)
    assert small["found"] < 0.2 < 0.8 < large["found"]
    assert large["false_share"] <= 0.1  # BH at q = 0.05: the expected false share ≤ q (40 simulations)
    assert R.fdr_power(128, 3, 1.0)["found"] == 0.0  # nothing enriched: nothing true to find
    # power depends on how often latents fire: the same population at 10 % firing is found far less often
    assert R.fdr_power(16, 3, 4.0, fire=0.1)["found"] < 0.2 < R.fdr_power(16, 3, 4.0, fire=0.21)["found"]


def test_the_study_preset_is_sized_to_its_targets():
    """experiments/configs/study.yaml: the probe set at which each time-claim sees the effect its comment names."""
    from chrono_membench.chrono import resolution as R
    from chrono_membench.config import load_config

    c = load_config("study").chrono
    n, seen = c.probe_per_bucket, c.probe_per_bucket * c.n_buckets
    assert R.auroc_mde(n, n) <= 0.05 and R.mean_difference_mde(0.3, n, n) <= 0.1 and R.correlation_mde(seen) <= 0.1
    assert n >= R.windows_for_auroc(0.05)


def test_the_cpu_study_preset_is_sized_to_its_targets():
    """experiments/configs/study-cpu.yaml: ≥ 6 evals, every bucket but the last measured at ≥ 3 evals from its end on,
    and the resolutions its comment names."""
    from chrono_membench.chrono import resolution as R
    from studies.plan import eval_steps

    cfg = load_config("study-cpu")
    c, t = cfg.chrono, cfg.train
    n, seen = c.probe_per_bucket, c.probe_per_bucket * c.n_buckets
    assert R.correlation_mde(seen) <= 0.1 + 1e-3 and R.mean_difference_mde(0.3, n, n) <= 0.075
    assert R.auroc_mde(n, n) <= 0.072 and R.fdr_power(n, c.n_buckets, 2.0, q=c.fdr_q, fire=0.21)["found"] >= 0.8
    evals = eval_steps(t.max_steps, t.eval_every)
    ends = [(b + 1) * t.max_steps // c.n_buckets for b in range(c.n_buckets - 1)]
    assert len(evals) >= 6 and all(sum(s >= end for s in evals) >= 3 for end in ends)


def test_a_runs_step_seconds_weight_its_chrono_steps_by_how_many_there_are_not_by_how_many_were_logged():
    """A run logging every 5th step of 300 with the chrono cadence every 25 logs a chrono step in 1 of 5 lines, where
    1 in 25 steps is one: the mean of the logged lines would charge every step 0.6 s too much here."""
    from studies.plan import chrono_steps, step_split, steps_total

    assert chrono_steps(300, 25) == {1, *range(25, 301, 25)} and chrono_steps(30, 20) == {1, 20, 30}
    cfg = {"train": {"max_steps": 300, "chrono_every": 25, "micro_batch": 2, "grad_accum": 2},
           "data": {"seq_len": 256}}
    seconds = {s: 7.0 if s in chrono_steps(300, 25) else 4.0 for s in range(5, 301, 5)}  # train.log_every 5
    records = [{"step": s, "train/tokens_per_s": 1024 / v} for s, v in seconds.items()]
    assert step_split(cfg, records) == pytest.approx((4.0, 7.0))
    assert steps_total(cfg, *step_split(cfg, records)) == pytest.approx(287 * 4.0 + 13 * 7.0)  # not 300 × 4.6


def test_wall_plan_arithmetic_and_its_parts_add_up_to_the_run_they_were_measured_on(tmp_path):
    """The eval and checkpoint steps, the probe set as its buckets start; unit costs taken from a real tiny run give
    back that run's evals and steps exactly, and its wall time; a longer run costs more; plan.py --from-run prints it
    and refuses another model in one line."""
    from helpers import run_main

    from chrono_membench.config import read_yaml
    from chrono_membench.logging import read_metrics
    from chrono_membench.run_dir import RunDir
    from studies.plan import checkpoint_steps, eval_steps, probe_windows, unit_costs, wall_plan_parts

    assert eval_steps(300, 50) == [0, 50, 100, 150, 200, 250, 300] and eval_steps(30, 20) == [0, 20, 30]
    assert checkpoint_steps(30, 15) == [0, 15, 30] and checkpoint_steps(30, 20, warmed=False) == [20, 30]
    assert [probe_windows(s, 262, 3, 300) for s in (0, 50, 100, 101, 200, 300)] == [262, 524, 524, 786, 786, 1048]
    made = run_main("--preset", "tiny", "--no-progress", f"run.out_dir={tmp_path}", "run.name=r",
                    "chrono.canary_repetitions=[1, 3]", "chrono.canary_candidates=15")
    assert made.returncode == 0, made.stderr[-2000:]
    run = RunDir(tmp_path / "r")
    records, cfg = read_metrics(run.metrics), read_yaml(run.config)
    parts = wall_plan_parts(cfg, unit_costs(run.root))
    assert parts["evals"] == pytest.approx(sum(r["time/eval_s"] for r in records if "time/eval_s" in r), rel=1e-9)
    assert parts["steps"] == pytest.approx(sum(256 / r["train/tokens_per_s"] for r in records
                                               if "train/tokens_per_s" in r), rel=1e-9)  # log_every 1: every step
    assert sum(parts.values()) == pytest.approx(run.read_sessions()[0]["wall_s"], rel=1e-6) and parts["fixed"] > 0
    longer = {**cfg, "train": {**cfg["train"], "max_steps": 16}}
    assert all(wall_plan_parts(longer, unit_costs(run.root))[k] > parts[k] for k in ("steps", "evals"))
    plan = load_script("experiments/plan.py")
    proc = subprocess.run([sys.executable, "experiments/plan.py", "--preset", "tiny", "--from-run", str(run.root)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "min — training steps" in proc.stdout and "evals" in proc.stdout, proc.stderr
    assert plan.main(["--preset", "demo", "--from-run", str(run.root)]) == 2
