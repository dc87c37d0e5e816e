"""Planted-signal validation: does each metric detect an effect whose truth is known?

    python experiments/validate.py                 # the demo model on the real-text sample: 6 runs, over 1 h on 2 CPU cores
    python experiments/validate.py --quick         # the tiny random model, main and frozen runs: about a minute
    python experiments/validate.py --eval-only runs/validate-...   # score finished runs again
    python experiments/validate.py --out runs/validate-...         # finish what is missing there (same plan; a run
                                                                   # stopped part-way resumes from its checkpoint)
    python experiments/validate.py --out runs/validate-s1 --runs main run.seed=1 data.seed=1   # another seed
    python experiments/validate.py --out runs/validate-rec --runs recency recency_frozen       # those two alone

Plants (studies/planted.py has the plan): documents inserted 1×/4×/16× and never; 4× early vs 4× late;
Python source confined to the middle time bucket (control run: spread over the whole run); canaries 1×/4×/16×.
Which documents go in which set, and so at which steps, is drawn with run.seed (the design seed): each seed plants
other documents at the same times, so no document's content is tied to its time across seeds.
Six runs: `main`, `frozen` (main with an LM that never changes, train.lr = 0: every planted check must FAIL there,
or it tests the labelling of the plants rather than what training did), `control` (the Python spread out),
`no_alignment` (main with λ_align = 0; the LM trains identically, only the SAEs differ) and `recency` (the early and
late sets alone, 80 each over 10 steps, Adam's
β1 = 0, 16 rows per step, no SAEs; the forgetting and order checks read it: with momentum the late set's update is
still mostly in flight when the run ends; studies/planted.py) with its own frozen twin, `recency_frozen`. Then one
row per check: measured value, PASS/FAIL (INFO: reported, no criterion applies) and the criterion, which is fixed in
studies/planted.py before any run; a check the plan's size cannot decide is listed as such. Writes validation.json
and validation.md in the output directory. Exit status: 0 every check passes, 1 a check failed (the table says
which), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from chrono_membench import distributed
from studies import planted as V
from chrono_membench.config import ConfigError, load_config
from chrono_membench.logging import final_values, read_metrics
from chrono_membench.model import autocast as model_autocast
from chrono_membench.probes import PROBE_TOKENS, ProbeSet
from chrono_membench.run_dir import RunDir

RUNS = ("main", "frozen", "control", "no_alignment", "recency", "recency_frozen")


def overrides(preset: str, out: Path, quick: bool, extra: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(the overrides every run shares, {run: its overrides})."""
    t = ["train.max_steps=20", "data.seq_len=256"] if quick else ["train.grad_accum=4"]  # room for the plants
    common = [*t, "chrono.canary_repetitions=[1,4,16]", "chrono.canary_until=0.8", "sae.seed_baseline=true",
              "crosscoder.enabled=true", f"run.out_dir={out}", *extra]
    common.append(f"train.eval_every={load_config(preset, overrides=common).train.max_steps}")  # step 0 and the end
    frozen = ["train.lr=0", "train.muon_lr=0"]
    arms = {"main": ["chrono.plant_file=" + str(out / "plants_main.jsonl")],
            # the same plants, SAEs and evals on an LM that never changes: every planted check must fail here
            "frozen": ["chrono.plant_file=" + str(out / "plants_main.jsonl"), *frozen],
            "control": ["chrono.plant_file=" + str(out / "plants_control.jsonl"), "crosscoder.enabled=false"],
            "no_alignment": ["chrono.plant_file=" + str(out / "plants_main.jsonl"), "chrono.alignment_weight=0",
                             "crosscoder.enabled=false"],
            # its own plan (validation.RECENCY) without momentum, so each insertion's update lands at its own step;
            # twice the rows per step (room for its 80 + 80 documents), no SAEs or canaries (its checks read the LM)
            "recency": ["chrono.plant_file=" + str(out / "plants_recency.jsonl"), "train.betas=[0.0,0.95]",
                        "train.grad_accum=8", "sae.enabled=false", "chrono.canary_repetitions=[]",
                        "crosscoder.enabled=false"]}
    arms["recency_frozen"] = [*arms["recency"], *frozen]  # its checks must fail on an LM that never changed
    return common, {name: [*common, *arm, f"run.name={name}"] for name, arm in arms.items()
                    if name in ("main", "frozen") or not quick}


def temporal_windows(sets, probes: ProbeSet):
    """The Python windows and the ordinary probe windows of the time buckets: tokens, bucket, is-Python."""
    code = sets["code"]
    ordinary = [p for _, ps in probes.columns()[:-1] for p in ps]  # the last column is "unseen"
    tokens = torch.cat([V.plant_windows(code), torch.tensor([p.tokens for p in ordinary])])
    bucket = torch.tensor([probes.bucket_of(p.steps[0]) for p in code] + [probes.bucket_of(p.step) for p in ordinary])
    is_code = torch.arange(len(tokens)) < len(code)
    return tokens, bucket, is_code


def source_windows(cfg, tokenizer, exclude: set[str], per_source: int):
    tokens, source = [], []
    for s, name in enumerate(V.SOURCE_NAMES):
        if cfg.data.mixture.get(name, 0) > 0:
            docs = [t for uid, t in V.validation_documents(cfg, tokenizer, name, PROBE_TOKENS) if uid not in exclude]
            tokens += docs[:per_source]
            source += [s] * len(docs[:per_source])
    return torch.tensor(tokens), torch.tensor(source)


def evaluate(out: Path, arms: dict, sizes: V.Sizes) -> list[V.Check]:
    from chrono_membench.probe_eval import generate_fn, logits_fn, probe_activation_sums
    from chrono_membench.restore import restore_for_analysis

    checks, generator = [], torch.Generator().manual_seed(0)
    plan = V.read_plan(out / "plan.json")
    for name in ("main", "frozen", "control", "recency", "recency_frozen"):
        if name not in arms:
            continue
        cfg = load_config(arms[name][0], overrides=arms[name][1])
        device = distributed.resolve_device(cfg.run.device)
        run_dir = Path(cfg.run.out_dir) / cfg.run.name
        r = restore_for_analysis(run_dir, device)
        autocast = model_autocast(device, r.cfg.train.autocast)  # the precision the run recorded
        model, reference, saes, probes, tokenizer = r.model, r.reference, r.saes, r.probes, r.tokenizer
        logits, generate = partial(logits_fn, autocast=autocast), partial(generate_fn, autocast=autocast)
        if name.startswith("recency"):  # the forgetting and order checks, on their own plan trained without momentum
            sets = V.read_plan(out / "plan_recency.json")
            scores = {s: V.window_scores(model, reference, V.plant_windows(sets[s]).to(device), logits, generate,
                                         greedy=False) for s in ("never_a", "never_b", "early", "late")}  # losses only
            found = [replace(c, name=c.name + " (β1 = 0 run)") for c in V.forgetting(scores)
                     + V.training_order(scores, sets)]
            checks += V.frozen_arm(found) if name == "recency_frozen" else found
            continue
        planted_run = name in ("main", "frozen")  # the plants in the middle bucket (control: spread over the run)
        sets = plan if planted_run else V.spread_code(cfg, plan)
        tokens, bucket, is_code = temporal_windows(sets, probes)
        sums, counts, _ = probe_activation_sums(model, saes, tokens.to(device), autocast)
        planted = probes.bucket_of(plan["code"][0].steps[0])
        found, labelling = [], []
        for hook in saes.hook_points:
            labelling.append(V.time_local("main run" if planted_run else "control run (spread)", hook,
                                          sums[hook].cpu(), counts[hook].cpu(), bucket, is_code, planted,
                                          sizes.latents, planted_run, generator))
            labelling += V.time_local_fdr("main run" if planted_run else "control run", hook, sums[hook].cpu(),
                                          counts[hook].cpu(), bucket, planted, planted_run, cfg.chrono.fdr_q,
                                          cfg.chrono.min_windows)
        if not planted_run:
            checks += labelling
            continue
        # content planted in one bucket: a frozen LM passes these too (they read the labelling), so no verdict
        checks += V.informational(labelling, "content in one bucket: a frozen LM passes it" + " too" * (name == "frozen"))
        if saes.crosscoder is not None:  # the time-local check that plants time: what the LM changed, and when
            first = min(s for p in plan["code"] for s in p.steps)
            found.append(V.crosscoder_plant(saes.crosscoder, model, V.plant_windows(plan["code"]).to(device),
                                            tokens[~is_code][: 2 * len(plan["code"])].to(device), first, autocast))
        scores = {s: V.window_scores(model, reference, V.plant_windows(plan[s]).to(device), logits, generate)
                  for s in ("never_a", "never_b", "x1", "x4", "x16", "early", "late")}
        found += V.dose_response(scores)
        timing = V.forgetting(scores) + V.training_order(scores, plan)
        found += V.informational(timing, "β1 = 0.9: a weaker late plant") if "recency" in arms else timing
        found += V.canaries(final_values(run_dir), cfg.chrono.canary_controls, cfg.chrono.canary_candidates)
        if name == "frozen":
            checks += V.frozen_arm(found)
            continue
        checks += found
        planted_uids = {p.uid.split("/", 2)[2] for ps in plan.values() for p in ps}
        # 4 × never per source (32 per half at demo size; 16 until 2026-12-07's ninth session, where web text's news
        # pieces, 11 of the choosing half's 16 windows against 3 of the other's, passed for the source: docs/validation.md)
        tokens, source = source_windows(cfg, tokenizer, planted_uids, 4 * sizes.never)
        sums, counts, _ = probe_activation_sums(model, saes, tokens.to(device), autocast)
        for hook in saes.hook_points:
            checks += V.source_purity(hook, sums[hook].cpu(), counts[hook].cpu(), source, sizes.latents, generator)
        if "no_alignment" in arms:
            full = read_metrics(RunDir(run_dir).metrics)
            base = read_metrics(RunDir(Path(cfg.run.out_dir) / "no_alignment").metrics)
            checks += [V.alignment(hook, full, base) for hook in saes.hook_points]
    return checks


def write_plans(cfg, out: Path, sizes: V.Sizes, recency: bool) -> None:
    """The plants files the arms train on and the plans the checks read. Which documents land in which set, and
    so at which steps, is drawn with run.seed (the design seed), independent of data.seed."""
    from chrono_membench.model import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    plans = {"plan.json": V.build_plan(cfg, tokenizer, sizes, seed=cfg.run.seed)}
    if recency:
        plans["plan_recency.json"] = V.build_plan(cfg, tokenizer, V.RECENCY, seed=cfg.run.seed)
    for name, plan in plans.items():  # a directory's runs were trained on its plan: finishing them must not change it
        if (out / name).exists() and V.read_plan(out / name) != plan:
            raise ConfigError(f"--out: {out / name} holds another plan (drawn with another run.seed or an earlier "
                              "version of studies/planted.py) than its runs would now get; use a new --out")
    V.write_plants(out / "plants_main.jsonl", plans["plan.json"])
    V.write_plants(out / "plants_control.jsonl", V.spread_code(cfg, plans["plan.json"]))
    V.write_plan(out / "plan.json", plans["plan.json"])
    if recency:
        V.write_plants(out / "plants_recency.jsonl", plans["plan_recency.json"])
        V.write_plan(out / "plan_recency.json", plans["plan_recency.json"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny random model, main and frozen runs (a CI check)")
    parser.add_argument("--out", type=Path, help="output directory (default runs/validate-<time>)")
    parser.add_argument("--eval-only", type=Path, help="score the runs already in this directory again")
    parser.add_argument("--runs", nargs="+", help=f"train and score only these (default: all): {', '.join(RUNS)}")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key=value for every run")
    args = parser.parse_intermixed_args(argv)
    if args.runs:  # `--runs main run.seed=1`: the key=value words after the names are overrides
        args.overrides += [r for r in args.runs if "=" in r]
        args.runs = [r for r in args.runs if "=" not in r]
        if not set(args.runs) <= set(RUNS):
            parser.error(f"argument --runs: {', '.join(sorted(set(args.runs) - set(RUNS)))} is not a run; allowed: "
                         f"{', '.join(RUNS)}")
    out = (args.eval_only or args.out or Path("runs") / f"validate-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    preset, sizes = ("tiny", V.QUICK) if args.quick else ("demo", V.Sizes())
    try:
        common, arms = overrides(preset, out, args.quick, args.overrides)
        arms = {name: o for name, o in arms.items() if name in (args.runs or RUNS)}
        if not arms:
            raise ConfigError(f"--runs: none of {', '.join(args.runs)} runs with --quick (main and frozen do)")
        if args.eval_only is None:
            if "main" not in arms and not set(arms) <= {"recency", "recency_frozen"}:
                raise ConfigError("--runs: the main run is needed (every check but the control's and the recency "
                                  "arms' reads it)")
            write_plans(load_config(preset, overrides=common), out, sizes, recency={"recency", "recency_frozen"} & set(arms))
        cfgs = {name: load_config(preset, overrides=o) for name, o in arms.items()}  # all checked before training
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.eval_only is None:
        from chrono_membench.train import train

        for name, cfg in cfgs.items():
            if RunDir(out / name).final_model.exists():  # finished before (e.g. a later run failed): keep it
                print(f"\n=== {name}: finished already, not trained again ===")
                continue
            started = RunDir(out / name).config.exists()  # stopped part-way (a session's end, a kill): resume it
            print(f"\n=== {name}{' (resumed from its last checkpoint)' * started} ===")
            train(cfg, out / name, resume=started, progress=not args.no_progress)
    checks = evaluate(out, {name: (preset, o) for name, o in arms.items()}, sizes)
    text = V.table(checks)
    verdicts = [c.passed for c in checks if c.passed is not None]
    what = "quick: tiny model, main and frozen runs" if args.quick else "demo"
    print(f"\n{text}\n\n{sum(verdicts)} of {len(verdicts)} checks pass ({what})")
    (out / "validation.json").write_text(json.dumps([vars(c) for c in checks], indent=1))
    (out / "validation.md").write_text("| check | result | measured | criterion |\n|---|---|---|---|\n" + "".join(
        f"| {c.name} | {V.verdict(c)} | {c.measured} | {c.criterion} |\n" for c in checks))
    print(f"written: {out / 'validation.json'}, {out / 'validation.md'}")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    from chrono_membench.safety import exit_with

    exit_with(main())
