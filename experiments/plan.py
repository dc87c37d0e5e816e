"""Plan a run before buying GPU time: data per source, tokens the run consumes and epochs, model size and
Chinchilla, entries needed for a time budget, wandb storage per run and per 4-run ablation suite.

    python experiments/plan.py --preset gemma-2b [--hours 120] [--tokens-per-s N] [--ranks R] [--json] [key=value ...]
    python experiments/plan.py --preset demo --power [--auroc 0.05] [--did 0.1 --did-sd 0.3] [--rho 0.1] [--seed-effect 1]
                                                     [--enrichment 2]
    python experiments/plan.py --preset study-cpu --from-run runs/<a demo run>   # its wall time on that machine

Measured inputs: documents, bytes and tokens per source are counted on the configured local data, or on
the bundled sample when the data is on the hub (then scaled to the seed's document counts and labelled
"extrapolated"); tokens with the model's tokenizer, or with a named stand-in where that is not available
offline; tokens/s from `experiments/tune.py`'s result for the preset if there is one, else --tokens-per-s
(default: the design's 2,500). --ranks R plans a torchrun job of R processes: the global batch is R times
the preset's, and throughput is assumed to scale linearly from the per-process tokens/s (an assumption,
said so in the output; measure with the real job's train/tokens_per_s).

--power: what the preset's probe set can detect (two-sided 5 %, 80 % power; chrono/resolution.py), and the inverse:
the windows per bucket, seen windows and paired seeds needed for a given effect — an AUROC's distance from 0.5, a
DiD difference between two buckets (nats; per-window SD --did-sd, 0.3 measured on the demo: its DiD intervals over
16 + 16 windows), a training-order ρ, an arm difference in units of its seed-to-seed SD, and a time-selective
population of latents (5 % of them firing --enrichment times as often in one bucket) found by the evals'
per-latent test under FDR (simulated: chrono/resolution.fdr_power).

--from-run RUN: the preset's wall time on the machine that ran RUN (a finished run of the same model; its
sessions.jsonl gives the wall time, its time/* metrics the parts): RUN's seconds per training token of a plain
step and the extra seconds of a step at the chrono cadence (each from its own logged steps), per probe-window
token of the live and the step-0 model, per greedily decoded token, per canary candidate, per window for the rest of
an eval, per checkpoint, per warm-up token, and its fixed remainder, applied to this preset's steps, evals (the
probe set grows as its buckets start), checkpoints and warm-up. benchmarks/cost_growth.py --plan-check compares it
with a run of the preset.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path


from chrono_membench.chrono import resolution as R
from chrono_membench.config import ABLATIONS, SUITE, ConfigError, ModelConfig, load_config, sae_only
from chrono_membench.data import SOURCES, DataSourceError, SourceRecords
from studies.plan import (
    GB, WANDB_FREE_TIER_GB, chinchilla_tokens, warmup_seconds, count_parameters, entries_for_time_budget, epochs_per_source,
    measure_documents, steps_for_tokens, storage_plan, tokens_consumed, unit_costs, wall_plan_parts,
)
from chrono_membench.run_dir import RunDir

TUNE_DIR = Path("runs") / "tune"
SEED_TOKENS_PER_S = 2500.0


def tokenizer_for(model_cfg: ModelConfig):
    """The model's tokenizer, or a stand-in of the same family when it cannot be had offline."""
    from chrono_membench.model import ModelLoadError, load_tokenizer

    try:
        return load_tokenizer(model_cfg), model_cfg.name
    except ModelLoadError:
        stand_in = "gguf:gemma-3-270m" if "gemma" in model_cfg.name.lower() else "gguf:smollm2-135m"
        return load_tokenizer(ModelConfig(name=stand_in)), f"{stand_in} (stand-in: {model_cfg.name} needs the hub)"


def measure_sources(cfg, tokenizer, max_docs: int) -> tuple[dict, str]:
    origin = cfg.data.origin if cfg.data.origin != "hub" else "sample"
    where = {"sample": "the offline sample", "synthetic": "the synthetic sample", "local": cfg.data.local_dir}[origin]
    out = {}
    for name, weight in cfg.data.mixture.items():
        if weight <= 0:
            continue
        source = SOURCES[name]
        records = SourceRecords(source, origin, cfg.data.local_dir)
        docs = [text for _, text in source.documents(iter(records), cfg.data.sentences_per_passage) if text.strip()]
        total = source.seed_count if cfg.data.origin == "hub" else len(docs)
        out[name] = measure_documents(docs[:max_docs], tokenizer, total)
    label = where + (" scaled to the seed's document counts" if cfg.data.origin == "hub" else "")
    return out, label


def build_plan(cfg, hours: float, tokens_per_s: float | None, max_docs: int, ranks: int = 1) -> dict:
    t = cfg.train
    tokenizer, tokenizer_name = tokenizer_for(cfg.model)
    sources, data_label = measure_sources(cfg, tokenizer, max_docs)
    n_params, d_model, n_layers = count_parameters(cfg.model)
    tune_file = TUNE_DIR / f"{cfg.run.preset}.json"
    tps_source = "--tokens-per-s" if tokens_per_s else "the design's figure"
    if tokens_per_s is None and tune_file.exists():
        tokens_per_s, tps_source = json.loads(tune_file.read_text())["tokens_per_s"], f"measured ({tune_file})"
    tokens_per_s = (tokens_per_s or SEED_TOKENS_PER_S) * ranks
    if ranks > 1:
        tps_source += f" × {ranks} ranks, assuming linear scaling"
    per_step = tokens_consumed(1, t.micro_batch, t.grad_accum, cfg.data.seq_len, ranks)
    consumed = tokens_consumed(t.max_steps, t.micro_batch, t.grad_accum, cfg.data.seq_len, ranks)
    epochs = epochs_per_source(consumed, cfg.data.mixture, {s: m.tokens for s, m in sources.items()})
    seconds = hours * 3600
    n_hooks = max(1, len(cfg.sae.hook_points))
    storage = storage_plan(cfg, d_model, n_layers, n_hooks)
    run_bytes = sum(v["bytes"] for v in storage.values())
    # one seed of experiments/suite.py: the full run with the SAE-only arms as variants, and its other LM runs
    variants = {a: ABLATIONS[a] for a in SUITE[1:] if sae_only(a)}
    with_variants = replace(cfg, sae=replace(cfg.sae, variants=variants))
    suite_bytes = sum(v["bytes"] for v in storage_plan(with_variants, d_model, n_layers, n_hooks).values()) \
        + (len(SUITE) - 1 - len(variants)) * run_bytes
    from chrono_membench.hooks import default_hook_points, layer_of  # torch: imported once the model is counted

    hook_points = list(cfg.sae.hook_points) or default_hook_points(n_layers)
    stop_layer = max(layer_of(h) for h in hook_points) + 1
    warmup_s = warmup_seconds(cfg.sae.warmup_tokens, tokens_per_s, stop_layer, n_layers) if cfg.sae.enabled else 0.0
    return {
        "preset": cfg.run.preset,
        "ranks": ranks,
        "data": {"measured_on": data_label, "tokenizer": tokenizer_name,
                 "sources": {s: {"entries": m.entries, "bytes": m.bytes, "tokens": m.tokens,
                                 "entries_per_gb": m.entries_per_gb, "tokens_per_gb": m.tokens_per_gb,
                                 "measured_entries": m.measured_entries, "extrapolated": m.extrapolated,
                                 "epochs": epochs.get(s), "weight": cfg.data.mixture[s]}
                             for s, m in sources.items()}},
        "run": {"max_steps": t.max_steps, "tokens_per_step": per_step, "tokens_consumed": consumed,
                "hours": consumed / tokens_per_s / 3600},
        "sae_warmup": {"tokens": cfg.sae.warmup_tokens if cfg.sae.enabled else 0, "stop_layer": stop_layer,
                       "hours": warmup_s / 3600, "share_of_run": warmup_s / (consumed / tokens_per_s)},
        "model": {"name": cfg.model.name, "parameters": n_params, "d_model": d_model, "n_layers": n_layers,
                  "chinchilla_tokens": chinchilla_tokens(n_params),
                  "chinchilla_steps": steps_for_tokens(chinchilla_tokens(n_params), per_step),
                  "tokens_vs_chinchilla": consumed / chinchilla_tokens(n_params)},
        "time_budget": {"hours": hours, "tokens_per_s": tokens_per_s, "tokens_per_s_from": tps_source,
                        "tokens": tokens_per_s * seconds,
                        "entries_needed": {s: entries_for_time_budget(m.entries_per_gb, m.tokens_per_gb,
                                                                      tokens_per_s * cfg.data.mixture[s], seconds)
                                           for s, m in sources.items()}},
        "storage": {"items": storage, "per_run_gb": run_bytes / GB, "per_suite_gb": suite_bytes / GB,
                    "free_tier_gb": WANDB_FREE_TIER_GB, "suite_fits_free_tier": suite_bytes / GB <= WANDB_FREE_TIER_GB},
    }


def power_plan(cfg, auroc: float, did: float, did_sd: float, rho: float, seed_effect: float,
               enrichment: float = 2.0, fire: float = R.FIRE) -> dict:
    """--power: the MDEs at the preset's probe-set size, and the sizes that detect the given effects."""
    n, buckets, q = cfg.chrono.probe_per_bucket, cfg.chrono.n_buckets, cfg.chrono.fdr_q
    return {
        "at_this_size": {"windows_per_bucket": n, "buckets": buckets, "seen_windows": n * buckets,
                         "auroc_vs_0.5": R.auroc_mde(n, n), "did_between_buckets_nats": R.mean_difference_mde(did_sd, n, n),
                         "order_rho": R.correlation_mde(n * buckets),
                         "paired_arm_difference_in_seed_sds": {s: R.paired_seeds_mde(s) for s in (3, 5, 10)},
                         # a 5 % population of latents firing e× as often in one bucket: the share FDR finds
                         "time_selective_found": {e: R.fdr_power(n, buckets, e, q=q, fire=fire) for e in (2.0, 4.0)},
                         "fire": fire},
        "needed": {"auroc": {"effect": auroc, "windows_per_bucket": R.windows_for_auroc(auroc)},
                   "did": {"effect_nats": did, "per_window_sd": did_sd,
                           "windows_per_bucket": R.windows_for_mean_difference(did, did_sd)},
                   "order_rho": {"effect": rho, "seen_windows": R.windows_for_correlation(rho)},
                   "paired_arm_difference": {"effect_in_seed_sds": seed_effect,
                                             "seeds": R.seeds_for_paired_difference(seed_effect)},
                   "time_selective": {"enrichment": enrichment, "share": 0.05, "found": 0.8,
                                      "windows_per_bucket": R.windows_for_fdr(enrichment, buckets, q=q, fire=fire)}},
    }


def print_power(p: dict) -> None:
    a, need = p["at_this_size"], p["needed"]
    print(f"\npower (two-sided 5 %, 80 % power): what this probe set detects — {a['windows_per_bucket']} windows "
          f"per bucket × {a['buckets']} buckets, {a['seen_windows']} seen windows")
    print(f"  AUROC, a bucket vs unseen: |AUROC − 0.5| ≥ {a['auroc_vs_0.5']:.3f}")
    print(f"  DiD between two buckets (per-window SD {need['did']['per_window_sd']:g} nats): ≥ "
          f"{a['did_between_buckets_nats']:.3f} nats")
    print(f"  training-order ρ: |ρ| ≥ {a['order_rho']:.3f}")
    print("  an arm's paired difference from full: ≥ " + ", ".join(
        f"{v:.2f} seed SDs at {s} seeds" for s, v in a["paired_arm_difference_in_seed_sds"].items()))
    print(f"  time-selective latents (5 % of them firing e× as often in one bucket, latents firing in {a['fire']:.0%} of "
          "windows; Kruskal–Wallis + BH, 40 simulations): "
          + ", ".join(f"{v['found']:.0%} found at e = {e:g} (false share {v['false_share']:.0%})"
                      for e, v in a["time_selective_found"].items()))
    ts = need["time_selective"]
    print(f"to detect: AUROC 0.5 ± {need['auroc']['effect']:g} → {need['auroc']['windows_per_bucket']:,} windows per "
          f"bucket; a DiD difference of {need['did']['effect_nats']:g} nats → {need['did']['windows_per_bucket']:,} "
          f"windows per bucket; ρ = {need['order_rho']['effect']:g} → {need['order_rho']['seen_windows']:,} seen "
          f"windows; an arm difference of {need['paired_arm_difference']['effect_in_seed_sds']:g} seed SD → "
          f"{need['paired_arm_difference']['seeds']} paired seeds; 80 % of a time-selective population at "
          f"e = {ts['enrichment']:g} → ≈ {ts['windows_per_bucket']:,} windows per bucket")


def print_plan(p: dict) -> None:
    d, r, m, tb, st = p["data"], p["run"], p["model"], p["time_budget"], p["storage"]
    print(f"plan for preset {p['preset']}")
    print(f"\ndata, measured on {d['measured_on']}; tokens with {d['tokenizer']}")
    print(f"{'source':<13}{'weight':>7}{'entries':>11}{'MB':>9}{'tokens':>14}{'entries/GB':>12}{'tokens/GB':>14}{'epochs':>9}")
    for s, v in d["sources"].items():
        flag = " (extrapolated)" if v["extrapolated"] else ""
        print(f"{s:<13}{v['weight']:>7.2f}{v['entries']:>11,}{v['bytes'] / 1e6:>9.1f}{v['tokens']:>14,}"
              f"{v['entries_per_gb']:>12,.0f}{v['tokens_per_gb']:>14,.0f}{(v['epochs'] or 0):>9.2f}{flag}")
    ranks = f" over {p['ranks']} ranks" if p["ranks"] > 1 else ""
    print(f"\nrun: {r['max_steps']:,} steps × {r['tokens_per_step']:,} tokens/step{ranks} = {r['tokens_consumed']:,} tokens "
          f"({r['tokens_consumed'] / 1e6:.1f} M): {r['hours']:.1f} h at {tb['tokens_per_s']:,.0f} tokens/s")
    w = p["sae_warmup"]
    if w["tokens"]:
        print(f"SAE warm-up: {w['tokens']:,} tokens through {w['stop_layer']} of {m['n_layers']} blocks, forward only: "
              f"{w['hours']:.2f} h ({w['share_of_run']:.1%} of the run)")
    print(f"model {m['name']}: {m['parameters']:,} parameters (d_model {m['d_model']}, {m['n_layers']} layers); "
          f"Chinchilla 20 × N = {m['chinchilla_tokens']:,} tokens = {m['chinchilla_steps']:,} steps at this batch; "
          f"this run is {m['tokens_vs_chinchilla']:.3f} × Chinchilla")
    print(f"\ntime budget {tb['hours']:g} h at {tb['tokens_per_s']:,.0f} tokens/s ({tb['tokens_per_s_from']}): "
          f"{tb['tokens']:,.0f} tokens; entries needed per source (entries/GB × GB/token × tokens/s × time):")
    for s, n in tb["entries_needed"].items():
        print(f"  {s:<13}{n:>14,.0f}")
    print("\nwandb storage per run")
    for name, v in st["items"].items():
        print(f"  {name:<10}{v['count']:>10,} × {v['bytes_each'] / 1e6:>10.3f} MB = {v['bytes'] / GB:>9.3f} GB")
    verdict = "fits" if st["suite_fits_free_tier"] else "does NOT fit"
    print(f"  per run {st['per_run_gb']:.2f} GB; per seed of the ablation suite {st['per_suite_gb']:.2f} GB: "
          f"{verdict} the {st['free_tier_gb']:.0f} GB free tier")


def wall_plan(cfg, run: Path) -> dict:
    """--from-run: this preset's wall time at the unit costs of a finished run of the same model (studies/plan.py)."""
    run_dir = RunDir(run)
    if not run_dir.config.exists() or not run_dir.metrics.exists():
        raise ConfigError(f"--from-run: {run} is not a finished run directory (no config.yaml or metrics.jsonl)")
    costs = unit_costs(run)
    if costs.model != cfg.model.name:
        raise ConfigError(f"--from-run: {run} trained {costs.model}, preset {cfg.run.preset} trains {cfg.model.name}; "
                          f"unit costs do not carry across models")
    parts = wall_plan_parts(cfg.to_dict(), costs)
    sessions = run_dir.read_sessions()
    return {"preset": cfg.run.preset, "from_run": str(run), "machine": sessions[-1]["machine"] if sessions else None,
            "seconds": parts, "total_s": sum(parts.values()), "unit_costs": asdict(costs)}


def print_wall(w: dict) -> None:
    s, total = w["seconds"], w["total_s"]
    where = f" ({w['machine']})" if w["machine"] else " (no sessions.jsonl: the fixed part is not known, taken as 0)"
    print(f"wall time of preset {w['preset']} at the unit costs of {w['from_run']}{where}: {total / 60:.1f} min — "
          f"training steps {s['steps'] / 60:.1f} min, evals {s['evals'] / 60:.1f} min ({s['evals'] / total:.0%}), "
          f"checkpoints {s['checkpoints'] / 60:.1f} min, SAE warm-up {s['sae_warmup'] / 60:.1f} min, the rest "
          f"{s['fixed'] / 60:.1f} min")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--hours", type=float, default=120.0, help="time budget (default 5 days)")
    parser.add_argument("--tokens-per-s", type=float, default=None)
    parser.add_argument("--max-docs", type=int, default=500, help="documents per source to tokenise")
    parser.add_argument("--ranks", type=int, default=1, help="torchrun processes (GPUs) of the planned job")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--power", action="store_true", help="what the probe set can detect, and what a target needs")
    parser.add_argument("--auroc", type=float, default=0.05, help="--power: an AUROC's distance from 0.5 to detect")
    parser.add_argument("--did", type=float, default=0.1, help="--power: a DiD difference between buckets (nats)")
    parser.add_argument("--did-sd", type=float, default=0.3, help="--power: the reference score's per-window SD")
    parser.add_argument("--rho", type=float, default=0.1, help="--power: a training-order correlation to detect")
    parser.add_argument("--seed-effect", type=float, default=1.0, help="--power: an arm difference, in seed SDs")
    parser.add_argument("--enrichment", type=float, default=2.0,
                        help="--power: how many times as often time-selective latents fire in their bucket")
    parser.add_argument("--fire", type=float, default=R.FIRE,
                        help="--power: the share of probe windows a latent fires in (a run's chrono/<hook>/"
                             "selective_time_fire; the demo's: 0.21)")
    parser.add_argument("--from-run", type=Path, default=None, metavar="RUN",
                        help="the preset's wall time at the unit costs of RUN, a finished run of the same model on the "
                             "machine that will run it (a demo run, say): steps, evals, checkpoints, warm-up, the rest")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    try:
        if args.ranks < 1:
            raise ConfigError(f"--ranks must be a positive integer, got {args.ranks}")
        cfg = load_config(args.preset, overrides=args.overrides)
        for name in ("auroc", "did", "did_sd", "rho", "seed_effect", "enrichment"):
            if getattr(args, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
        if not 0 < args.fire < 1:
            raise ConfigError(f"--fire must be a share in (0, 1), got {args.fire}")
        if args.power:  # no data to measure: the probe set's size and the targets are all it needs
            plan = power_plan(cfg, args.auroc, args.did, args.did_sd, args.rho, args.seed_effect, args.enrichment,
                              args.fire)
            print(json.dumps(plan, indent=1)) if args.json else print_power(plan)
            return 0
        if args.from_run is not None:
            plan = wall_plan(cfg, args.from_run)
            print(json.dumps(plan, indent=1)) if args.json else print_wall(plan)
            return 0
        plan = build_plan(cfg, args.hours, args.tokens_per_s, args.max_docs, args.ranks)
    except (ConfigError, DataSourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan, indent=1))
    else:
        print_plan(plan)
    return 0


if __name__ == "__main__":
    from chrono_membench.safety import exit_with

    exit_with(main())
