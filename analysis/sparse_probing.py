"""Sparse probing through training time (Kantamneni et al. 2025, "Are Sparse Autoencoders Useful?", the
`sae-probes` package; Chanin 2026 finds it the most reliable SAEBench metric): at each checkpoint whose model is on
disk, the test AUC of a logistic probe on the top-k latents of each exported SAE, beside the same probe on the
raw activations at the SAE's hook (the baseline, once per model checkpoint), on binary datasets shipped inside
sae-probes.

    python analysis/sparse_probing.py runs/<name> [runs/<seed 2> ...] --out report/ [--datasets a,b] [--ks 1,16]

The protocol is sae-probes's own code, its "normal" setting: the dataset's first --max-examples prompts, its
balanced train/test split (num_train = min(n − 100, 1024), seed 42, get_train_test_indices), its top-k ranking
(class-mean difference of mean-normalised latents, get_sorted_indices) and its probe (find_best_reg: L2 logistic
regression, C over logspace(5, −5, 10) chosen by validation AUC). The harness supplies what sae-probes would get
from a HookedTransformer: each prompt's last-token activation at the hook from the run's own TransformerBridge
(right padding, left truncation to --max-seq-len, no BOS added: as sae-probes tokenises), under the run's
train.autocast, and the SAEs from the run's artifacts (sae-lens format). --max-examples [1,500] is sae-probes's
get_xyvals default and fits a CPU (≈ 475 test prompts, an AUC's standard error ≈ 0.01–0.025, printed per row
by Hanley–McNeil); the paper used 5,000 and all 113 datasets: `--datasets all --max-examples 5000` on a GPU.

Which checkpoints: step 0 is the pretrained model (always rebuilt); a later step needs its checkpoint on disk
(checkpointing.keep_last keeps the newest few): an SAE whose model is gone is listed as skipped, never probed on
another step's activations. Writes sparse_probing.csv, sparse_probing.md and sparse_probing.html (AUC against the
step; several runs: their mean, with the seeds' range as a band) to --out, and a wandb table into the run's
wandb directory (offline) where the run has one. Each run keeps its rows in sparse_probing.jsonl: a later call with
the same --max-examples and --max-seq-len (e.g. the seeds together) reuses them; --recompute does not.
sae-probes comes with `bash scripts/install.sh` (with --no-deps: docs/analysis.md says why).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from chrono_membench.run_dir import RunDir

# the corpus's kinds of text: people (Wikipedia), arithmetic (Orca-Math), books (BookCorpus), news, science
DEFAULT_DATASETS = ["5_hist_fig_ismale", "129_arith_mc_A", "126_art_type_book", "21_headline_istrump", "36_sciq_tf"]
INSTALL = "bash scripts/install.sh"
CACHE = "sparse_probing.jsonl"  # in the run directory: rows already computed, reused under the same settings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (several: seeds of one configuration)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help="comma-separated sae-probes dataset names, or `all` (the 113)")
    p.add_argument("--ks", default="1,16", help="comma-separated numbers of latents per probe")
    p.add_argument("--max-examples", type=int, default=1500)
    p.add_argument("--max-seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-wandb", action="store_true", help="do not write the wandb table")
    p.add_argument("--recompute", action="store_true", help=f"ignore the rows cached in each run's {CACHE}")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    # every input checked before anything heavy
    try:
        args.ks = sorted({int(k) for k in args.ks.split(",")})
    except ValueError:
        p.error(f"--ks must be comma-separated positive integers, got {args.ks!r}")
    if not args.ks or args.ks[0] < 1:
        p.error(f"--ks must be comma-separated positive integers, got {args.ks}")
    if args.max_examples < 200:
        p.error(f"--max-examples must be >= 200 (sae-probes holds 100 out and needs a test set), got {args.max_examples}")
    for run in args.runs:
        if not RunDir(run).config.exists():
            p.error(f"{run} is not a run directory (no config.yaml)")
    known = known_datasets()
    if known is None:
        p.error(f"sparse probing needs the sae-probes package; install it with: {INSTALL}")
    args.datasets = known if args.datasets == "all" else args.datasets.split(",")
    unknown = [d for d in args.datasets if d not in known]
    if unknown:
        p.error(f"--datasets: unknown {', '.join(unknown)}; allowed: `all` or names such as {', '.join(known[:6])}, … "
                f"(sae_probes.utils_data.get_numbered_binary_tags())")
    return args


def known_datasets() -> list[str] | None:
    """sae-probes's binary datasets (its get_numbered_binary_tags, read the same way from its master table), or None
    without the package. Read without importing sae_probes: its __init__ reads all 113 datasets (≈ 13 s), which a
    bad --datasets or a call whose rows are all cached should not pay."""
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("sae_probes")
    if spec is None or not spec.submodule_search_locations:
        return None
    table = Path(spec.submodule_search_locations[0]) / "data" / "probing_datasets_MASTER.csv.zst"
    df = pd.read_csv(table, compression="zstd")
    binary = df[df["Data type"] == "Binary Classification"]["Dataset save name"]
    return [name.split("/")[-1].split(".")[0] for name in binary]


def dataset(tag: str, max_examples: int) -> tuple[list[str], torch.Tensor, tuple]:
    """→ (prompts, labels, (train indices, test indices)): at most max_examples rows, split as sae-probes's normal
    setting splits them (get_xy_traintest_specify). sae-probes takes the first rows; a dataset longer than the cap
    here gives the first max_examples // 2 of each class instead (in its order), since its split draws a balanced
    test set that the first rows of a class-sorted file cannot fill."""
    import numpy as np
    from sae_probes.utils_data import get_train_test_indices, get_yvals, read_numbered_dataset_df

    prompts, y = read_numbered_dataset_df(tag)["prompt"].astype(str).tolist(), get_yvals(tag)
    if len(y) > max_examples:
        keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:max_examples // 2] for c in (0, 1)]))
        prompts, y = [prompts[i] for i in keep], y[keep]
    num_train = min(len(y) - 100, 1024)
    split = get_train_test_indices(y, num_train, len(y) - num_train - 1, pos_ratio=0.5, seed=42)
    return prompts, torch.as_tensor(y), split


@torch.no_grad()
def last_token_activations(model, tokenizer, prompts: list[str], hooks: list[str], max_seq_len: int,
                           batch_size: int, autocast, device) -> dict[str, torch.Tensor]:
    """hook → [prompts, width] float32: each prompt's last token's activation (batches of similar length; a
    per-head hook such as hook_z flattened over its heads, as the SAE sees it)."""
    from chrono_membench.hooks import layer_of

    tokenizer.truncation_side = "left"
    ids = [tokenizer(p, truncation=True, max_length=max_seq_len)["input_ids"] or [tokenizer.eos_token_id]
           for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: dict[str, torch.Tensor] = {}
    stop_at = max(layer_of(h) for h in hooks) + 1
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        lengths = torch.tensor([len(ids[i]) for i in rows])
        tokens = torch.full((len(rows), int(lengths.max())), tokenizer.pad_token_id or 0, dtype=torch.long)
        for r, i in enumerate(rows):
            tokens[r, :len(ids[i])] = torch.tensor(ids[i])  # right padding: a causal model's last real token
        captured: dict[str, torch.Tensor] = {}              # does not see the pads after it

        def keeper(name, captured=captured, last=lengths - 1):  # by name: the bridge's hook may carry an alias
            def keep(act, hook):
                captured[name] = act[torch.arange(len(last)), last.to(act.device)].flatten(1).float().cpu()
            return keep

        with autocast, model.hooks(fwd_hooks=[(h, keeper(h)) for h in hooks]):
            model(tokens.to(device), stop_at_layer=stop_at)
        for h in hooks:
            out.setdefault(h, torch.empty(len(ids), captured[h].shape[1]))[rows] = captured[h]
    return out


def probe(x: torch.Tensor, y: torch.Tensor, split: tuple) -> dict[str, float]:
    """sae-probes's find_best_reg on the split → test and validation AUC."""
    from sae_probes.utils_training import find_best_reg
    from threadpoolctl import threadpool_limits

    train, test = split
    # one BLAS thread: these are small problems, and threaded BLAS beside torch's threads made each lbfgs
    # iteration 20–50x slower on 2 cores (a 1024 x 576 fit: 5.5 s → 0.1 s)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning at C = 1e5, as sae-probes silences it
        m = find_best_reg(x[train].numpy(), y[train].numpy(), x[test].numpy(), y[test].numpy(), seed=42).metrics
    return {"test_auc": m.test_auc, "val_auc": m.val_auc}


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982): the standard error of an AUC from n_pos positives and n_neg negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    return math.sqrt((auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc))
                     / (n_pos * n_neg))


def sae_latents(sae, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([sae.encode(x[i:i + batch].to(sae.device)).float().cpu() for i in range(0, len(x), batch)])


def _key(row: dict) -> tuple:
    return row["step"], row["dataset"], row["hook"], row["sae"], row["k"]


def _cache_lines(run_dir: Path, args) -> tuple[list[dict], dict]:
    """(every cached row of the run, the settings a row must have been computed with to be reused)."""
    path = run_dir / CACHE
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return rows, {"max_examples": args.max_examples, "max_seq_len": args.max_seq_len}


def _cached(run_dir: Path, args) -> dict[tuple, dict]:
    """(step, dataset, hook, sae, k) → row, for the rows computed before with these --max-examples/--max-seq-len."""
    rows, settings = _cache_lines(run_dir, args)
    return {} if args.recompute else {_key(r): {k: v for k, v in r.items() if k not in settings} for r in rows
                                      if all(r.get(k) == v for k, v in settings.items())}


def _save_cache(run_dir: Path, args, rows: list[dict]) -> None:
    """Every row of this run so far (others' settings kept), written whole: tmp file, then rename."""
    old, settings = _cache_lines(run_dir, args)
    mine = {_key(r) for r in rows}
    keep = [r for r in old if not (all(r.get(k) == v for k, v in settings.items()) and _key(r) in mine)]
    path = run_dir / CACHE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep + [{**r, **settings} for r in rows]))
    os.replace(tmp, path)


def probe_run(run_dir: Path, args, data) -> tuple[list[dict], list[str], int]:
    """Every (checkpoint, hook, SAE, dataset, k) of one run → result rows, the lines saying what was skipped, and
    how many rows were new. Rows computed before under the same settings (the run's sparse_probing.jsonl) are
    reused, not recomputed. `data`: tag → (prompts, labels, split), read on first use."""
    from sae_lens import SAE

    from chrono_membench.checkpoint import load_checkpoint
    from chrono_membench.config import config_from_dict, read_yaml
    from chrono_membench.model import autocast as model_autocast, load_hf_state_dict, load_model
    from chrono_membench.run_dir import RunDir

    rd = RunDir(run_dir)
    cfg = config_from_dict(read_yaml(rd.config))
    saes_at: dict[int, list[tuple[str, Path]]] = {}  # step → [(SAE name, directory)]
    for variant in [""] + sorted(p.name.removeprefix("variant_") for p in rd.artifacts_root.glob("step_*/variant_*")):
        for step, path in rd.artifact_steps("sae", variant=variant):
            saes_at.setdefault(step, []).append((variant or "main", path))
    checkpoints = {int(p.name.removeprefix("step_")): p for p in rd.list_checkpoints()}
    cache, model = _cached(run_dir, args), None
    autocast = model_autocast(args.device, cfg.train.autocast)
    rows, skipped, reused = [], [], 0  # reused: rows taken from the cache
    previous = []  # the last step's main SAE, probed on this step's model too (PREVIOUS): the model's change alone
    for step in sorted(saes_at):
        own = [(name, SAE.load_from_disk(str(path), device=args.device)) for name, path in saes_at[step]]
        saes, previous = own + [(PREVIOUS, sae) for name, sae in previous if name == "main"], own
        hooks = sorted({sae.cfg.metadata.hook_name for _, sae in saes})
        wanted = [(h, "", 0) for h in hooks] + [(sae.cfg.metadata.hook_name, name, k) for name, sae in saes
                                                 for k in args.ks]
        todo = [tag for tag in args.datasets if any((step, tag, *w) not in cache for w in wanted)]
        cached = [cache[(step, tag, *w)] for tag in args.datasets if tag not in todo for w in wanted]
        rows, reused = rows + cached, reused + len(cached)
        if todo and step != 0 and step not in checkpoints:
            skipped.append(f"{run_dir.name} step {step}: its model is not on disk (checkpointing.keep_last); "
                           f"its SAEs are not probed")
            continue
        if todo and model is None:
            from sae_probes.run_sae_evals import get_sorted_indices, mean_act_normalization  # ≈ 13 s: its __init__

            model, tokenizer = load_model(cfg.model, args.device, seed=cfg.run.seed)
            model.eval()
        if todo and step != 0:
            load_hf_state_dict(model, load_checkpoint(checkpoints[step], required=("model",))["model"])
        for tag in tqdm(todo, desc=f"{run_dir.name} step {step}", disable=args.no_progress, dynamic_ncols=True):
            prompts, y, split = data(tag)
            acts = last_token_activations(model, tokenizer, prompts, hooks, args.max_seq_len, args.batch_size,
                                          autocast, args.device)
            n_pos, n_neg = int(y[split[1]].sum()), int((1 - y[split[1]]).sum())
            base = dict(run=run_dir.name, seed=cfg.run.seed, step=step, dataset=tag, n_train=len(split[0]),
                        n_test=len(split[1]))
            for hook in hooks:
                r = probe(acts[hook], y, split)
                rows.append({**base, "hook": hook, "sae": "", "k": 0, **r, "se": auc_se(r["test_auc"], n_pos, n_neg)})
                for name, sae in (s for s in saes if s[1].cfg.metadata.hook_name == hook):
                    z = sae_latents(sae, acts[hook])
                    ranked = get_sorted_indices(z[split[0]], y[split[0]], mean_act_normalization)
                    for k in args.ks:
                        r = probe(z[:, ranked[:k]], y, split)
                        rows.append({**base, "hook": hook, "sae": name, "k": k, **r,
                                     "se": auc_se(r["test_auc"], n_pos, n_neg)})
            _save_cache(run_dir, args, rows)  # a stopped run keeps what it computed
    return rows, skipped, len(rows) - reused


PREVIOUS = "previous"  # the rows of the previous checkpoint's SAE on this checkpoint's model


def series_name(row: dict) -> str:
    return "raw activations" if row["k"] == 0 else f"SAE{'' if row['sae'] == 'main' else ' ' + row['sae']} k={row['k']}"


def across_datasets(rows: list[dict]) -> list[dict]:
    """Per probe series and step: the mean AUC over datasets (each dataset's mean over runs first) with a 95 % t
    interval across datasets — what a claim about "SAE features through training" generalises over, wider than any
    one dataset's Hanley–McNeil error; and each step-to-step difference paired by dataset, with its interval and
    verdict, split where the previous step's SAE was probed on this step's model: the model's change (that SAE on
    both models) and the SAE's own training (both SAEs on this model)."""
    from chrono_membench.chrono.resolution import from_interval
    from chrono_membench.chrono.stats import mean_interval

    def values(hook, sae, k, step):
        by_ds: dict[str, list[float]] = {}
        for r in rows:
            if (r["hook"], r["sae"], r["k"], r["step"]) == (hook, sae, k, step):
                by_ds.setdefault(r["dataset"], []).append(r["test_auc"])
        return {d: float(np.mean(v)) for d, v in by_ds.items()}

    def paired(a: dict, b: dict, what: str, **where) -> dict | None:
        common = sorted(set(a) & set(b))
        if len(common) < 2:
            return None
        diff = np.array([a[d] - b[d] for d in common])
        lo, hi = mean_interval(diff)
        return {**where, "what": what, "datasets": len(common), "value": float(diff.mean()), "lo": lo, "hi": hi,
                "verdict": from_interval(lo, hi)}

    out = []
    for hook, sae, k in sorted({(r["hook"], r["sae"], r["k"]) for r in rows if r["sae"] != PREVIOUS}):
        steps = sorted({r["step"] for r in rows if (r["hook"], r["sae"], r["k"]) == (hook, sae, k)})
        where = dict(hook=hook, probe=series_name({"k": k, "sae": sae}))
        for step in steps:
            v = values(hook, sae, k, step)
            lo, hi = mean_interval(np.array(list(v.values())))
            out.append({**where, "what": f"mean at step {step}", "datasets": len(v), "value": float(np.mean(list(
                v.values()))), "lo": lo, "hi": hi, "verdict": ""})
        for before, after in zip(steps, steps[1:]):
            now, then = values(hook, sae, k, after), values(hook, sae, k, before)
            out.append(paired(now, then, f"step {before} → {after}", **where))
            if sae == "main" and k:
                carried = values(hook, PREVIOUS, k, after)  # step `before`'s SAE on step `after`'s model
                out.append(paired(carried, then, f"  the model's change {before} → {after} (step {before}'s SAE)",
                                  **where))
                out.append(paired(now, carried, f"  the SAE's training {before} → {after} (on step {after}'s model)",
                                  **where))
    return [r for r in out if r is not None]


def across_table(summary: list[dict]) -> str:
    lines = ["| hook | probe | what | datasets | AUC or difference [95 %] | verdict |", "|---|---|---|---|---|---|"]
    for r in summary:
        interval = f"[{r['lo']:+.3f}, {r['hi']:+.3f}]" if r["lo"] == r["lo"] else "(one dataset: no interval)"
        lines.append(f"| {r['hook']} | {r['probe']} | {r['what']} | {r['datasets']} | {r['value']:+.3f} {interval} | "
                     f"{r['verdict']} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """Markdown: one line per (hook, dataset, probe), a column per step: the mean over runs ± one run's Hanley–McNeil
    SE (every run and step scores the same test prompts, so averaging runs does not shrink that error), and with
    several runs their [min, max]."""
    steps = sorted({r["step"] for r in rows})
    keys = sorted({(r["hook"], r["dataset"], r["k"], r["sae"]) for r in rows}, key=lambda t: (t[0], t[1], t[2], t[3]))
    out = ["| hook | dataset | probe | " + " | ".join(f"step {s}" for s in steps) + " |",
           "|---|---|---|" + "---|" * len(steps)]
    for hook, ds, k, sae in keys:
        cells = []
        for s in steps:
            got = [r for r in rows if (r["hook"], r["dataset"], r["k"], r["sae"], r["step"]) == (hook, ds, k, sae, s)]
            if not got:
                cells.append("-")
                continue
            aucs = [r["test_auc"] for r in got]
            spread = f" [{min(aucs):.3f}, {max(aucs):.3f}]" if len(got) > 1 else ""
            cells.append(f"{sum(aucs) / len(aucs):.3f} ± {sum(r['se'] for r in got) / len(got):.3f}{spread}")
        out.append(f"| {hook} | {ds} | {series_name({'k': k, 'sae': sae})} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def figure(rows: list[dict], out: Path) -> Path:
    """AUC against the step: one panel per dataset and one for their mean; a line per probe (the runs' mean),
    the runs' range as a band."""
    import plotly.graph_objects as go
    from plotly.colors import DEFAULT_PLOTLY_COLORS
    from plotly.subplots import make_subplots

    from common import save_figure

    datasets = sorted({r["dataset"] for r in rows})
    panels = ["mean over datasets", *datasets]
    cols = min(3, len(panels))
    fig = make_subplots(rows=math.ceil(len(panels) / cols), cols=cols, subplot_titles=panels)
    names = sorted({series_name(r) for r in rows}, key=lambda n: (n != "raw activations", n))
    for c, name in enumerate(names):
        color = DEFAULT_PLOTLY_COLORS[c % len(DEFAULT_PLOTLY_COLORS)]
        for i, panel in enumerate(panels):
            mine = [r for r in rows if series_name(r) == name and (panel == panels[0] or r["dataset"] == panel)]
            per_run: dict[tuple, list[float]] = {}
            for r in mine:  # the mean panel: a run's mean over datasets first
                per_run.setdefault((r["step"], r["run"], r["hook"]), []).append(r["test_auc"])
            steps = sorted({s for s, _, _ in per_run})
            by_step = [[sum(v) / len(v) for (s, _, _), v in per_run.items() if s == step] for step in steps]
            mean = [sum(v) / len(v) for v in by_step]
            where = dict(row=i // cols + 1, col=i % cols + 1)
            dash = "dash" if name == "raw activations" else "solid"
            fig.add_trace(go.Scatter(x=steps, y=mean, name=name, legendgroup=name, showlegend=i == 0,
                                     mode="lines+markers", line=dict(color=color, dash=dash)), **where)
            if any(len(v) > 1 for v in by_step):
                band = [max(v) for v in by_step] + [min(v) for v in by_step][::-1]
                fig.add_trace(go.Scatter(x=steps + steps[::-1], y=band, fill="toself", line=dict(width=0),
                                         fillcolor=color.replace("rgb", "rgba").replace(")", ",0.15)"),
                                         name=f"{name}: range over runs", legendgroup=name, showlegend=False,
                                         hoverinfo="skip"), **where)
    fig.update_yaxes(title_text="test AUC")
    fig.update_xaxes(title_text="training step")
    runs = sorted({r["run"] for r in rows})
    fig.update_layout(title=f"Sparse probing through training ({len(runs)} run{'s' * (len(runs) > 1)}; "
                            "band: range over runs)", height=320 * math.ceil(len(panels) / cols), width=1200)
    return save_figure(fig, out, "sparse_probing")


def wandb_table(run_dir: Path, rows: list[dict]) -> Path | None:
    """The rows as a wandb Table in an offline run of its own, grouped with the run (wandb sync uploads it)."""
    if not (run_dir / "wandb").exists():
        return None
    import wandb

    columns = list(rows[0])
    run = wandb.init(mode="offline", dir=str(run_dir), project="chrono-membench", group=run_dir.name,
                     job_type="sparse_probing", name=f"{run_dir.name}-sparse-probing", reinit="create_new")
    run.log({"sparse_probing": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])})
    run.finish()
    return Path(run.dir).parent


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = functools.cache(functools.partial(dataset, max_examples=args.max_examples))  # a cached run reads none
    rows, skipped = [], []
    for run_dir in args.runs:
        got, missing, new = probe_run(run_dir, args, data)
        rows += got
        skipped += missing
        if new and not args.no_wandb:  # a table per computation, not one more per call that reuses the rows
            where = wandb_table(run_dir, got)
            if where is not None:
                print(f"wandb table: {where}", file=sys.stderr)
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if not rows:
        print("error: no checkpoint of these runs has both an exported SAE and its model on disk", file=sys.stderr)
        return 1
    with open(args.out / "sparse_probing.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    md = table([r for r in rows if r["sae"] != PREVIOUS])
    summary = across_datasets(rows)
    (args.out / "sparse_probing_across.json").write_text(json.dumps(summary, indent=1))
    across = across_table(summary)
    (args.out / "sparse_probing.md").write_text(
        "Sparse probing (sae-probes protocol). Across datasets: the mean AUC over datasets with a 95 % t interval "
        "across them, and each step-to-step difference paired by dataset, split into the model's change and the "
        "SAE's training where the previous SAE was probed on the new model\n\n" + across + "\n\n"
        "Per dataset: test AUC, the mean over runs ± one run's Hanley–McNeil standard error (the same test prompts in "
        "every run and step), [min, max] over runs\n\n" + md + "\n")
    print(across)
    print(md)
    print(figure([r for r in rows if r["sae"] != PREVIOUS], args.out))
    return 0


if __name__ == "__main__":
    from chrono_membench.safety import exit_with

    exit_with(main())
