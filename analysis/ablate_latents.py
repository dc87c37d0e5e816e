"""Causal check of the memorisation latents: zero the top-n latents (by within-bucket AUROC, the run's last
memorisation_latents_<hook>.json) through the SAE splice, and compare the change in loss and greedy extraction on
the memorised probe windows with zeroing n random live latents (several draws).

    python analysis/ablate_latents.py runs/<name> --out report/ [--n 10] [--draws 5] [--hook H]

The splice removes only the ablated latents' share of the reconstruction — x − (decode(a) − decode(a with those
latents at 0)) — so the SAE's reconstruction error stays in and an ablation of nothing changes nothing. It acts on
every window position but 0 (the attention sink, which the SAE never trains on). Memorised windows: the top 10 %
of each time bucket by the reference-difference score at the final checkpoint (as probe_eval labels them); the
rest of the bucket windows are the specificity control. Prints a table, a verdict and writes
ablate_latents_<hook>.json.

The verdict: the top-n ablation's change in loss on the memorised windows against the random-n draws' 95 %
prediction interval (mean ± t₀.₉₇₅,ₖ₋₁ · sd · √(1 + 1/k) over k draws: where one more random set would land):
outside it, "detected"; inside, "none detected", with the interval's half-width as the smallest effect this many
draws could have told from random (more --draws narrow it).
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from chrono_membench.restore import restore_for_analysis
from chrono_membench.chrono.memorisation import extraction_scores
from chrono_membench.hooks import file_name, flatten, unflatten
from chrono_membench.probe_eval import generate_fn, logits_fn, top_decile_within
from chrono_membench.run_dir import RunDir


def splice(saes, hook_name: str, latents: torch.Tensor):
    """A forward hook that removes the given latents' contribution to the SAE reconstruction."""
    def fn(activation, hook):
        flat = flatten(activation).float()
        a = saes.encode(hook_name, flat)
        kept = a.clone()
        kept[:, latents] = 0
        out = unflatten(flat - (saes.decode(hook_name, a) - saes.decode(hook_name, kept)), activation)
        out[:, 0] = activation[:, 0]  # position 0 untouched
        return out
    return fn


def verdict(top: float, random: list[float]) -> tuple[str, float]:
    """(what the top-n ablation's change says against the random-n draws, the prediction interval's half-width)."""
    k = len(random)
    if k < 2:
        return "undecided: one random draw gives no spread (use --draws ≥ 2)", float("nan")
    mean, sd = float(np.mean(random)), float(np.std(random, ddof=1))
    if sd == 0:  # every random set changed nothing alike (latents that never fire on these windows): no yardstick
        return (f"undecided: every random draw changed it by exactly {mean:+.4f} (they do not fire on these windows), "
                "so there is no spread to judge the top-n against"), float("nan")
    half = float(stats.t.ppf(0.975, k - 1) * sd * np.sqrt(1 + 1 / k))
    if abs(top - mean) > half:
        return f"detected: {top:+.4f} lies outside the random draws' 95 % prediction interval {mean:+.4f} ± {half:.4f}", half
    return (f"none detected: {top:+.4f} lies within {mean:+.4f} ± {half:.4f}; an effect smaller than {half:.4f} "
            f"could not be told from random with {k} draws"), half


@torch.no_grad()
def scores(model, windows: torch.Tensor, fwd_hooks) -> dict[str, np.ndarray]:
    with model.hooks(fwd_hooks=fwd_hooks) if fwd_hooks else nullcontext():
        got = extraction_scores(logits_fn(model, nullcontext()), windows, generate_fn=generate_fn(model, nullcontext()))
    return {k: v.double().cpu().numpy() for k, v in got.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hook", help="default: the run's first SAE hook")
    parser.add_argument("--n", type=int, default=10, help="latents ablated")
    parser.add_argument("--draws", type=int, default=5, help="random sets of n live latents")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.draws < 1 or args.n < 1:
        raise SystemExit(f"error: --n and --draws must be positive, got {args.n} and {args.draws}")
    print(f"restoring {args.run} (model, SAEs, probe set) from its last checkpoint …", flush=True)
    try:
        r = restore_for_analysis(args.run)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}; ablate_latents reads a run's last checkpoint (checkpointing.*)") from None
    if r.saes is None:
        raise SystemExit(f"error: {args.run} trained no SAE")
    hook = args.hook or r.saes.hook_points[0]
    tables = [path for _, path in RunDir(args.run).artifact_steps("memorisation_latents", hook)]
    if not tables:
        raise SystemExit(f"error: {args.run} has no memorisation_latents_{file_name(hook)}.json (needs "
                         "chrono.reference_loss and an SAE; written at each eval)")
    ranked = json.loads(tables[-1].read_text())["latents"]
    columns = [(name, p) for name, ps in r.probes.columns()[:-1] for p in ps]  # the time buckets, not unseen
    windows = torch.tensor([p.tokens for _, p in columns])
    bucket = np.array([name for name, _ in columns])
    bar = tqdm(total=2 + args.draws, desc="ablations (forward + greedy decoding each)", unit="set")
    base = scores(r.model, windows, None)
    bar.update(1)
    ref = -(base["loss"] - np.array([p.ref_loss for _, p in columns]))
    memorised = top_decile_within(ref, bucket)
    alive = torch.nonzero(r.saes.alive(hook)).flatten()
    rng = np.random.default_rng(args.seed)
    sets = {"top": torch.tensor([i for i, _ in ranked[:args.n]])}
    for d in range(args.draws):
        sets[f"random{d}"] = alive[torch.as_tensor(rng.choice(len(alive), args.n, replace=False))]
    results = {}
    for name, latents in sets.items():
        got = scores(r.model, windows, [(hook, splice(r.saes, hook, latents))])
        results[name] = {f"{part}_{k}": float((got[k] - base[k])[rows].mean())
                         for part, rows in (("memorised", memorised), ("other", ~memorised))
                         for k in ("loss", "exact_match", "token_match")}
        bar.update(1)
    bar.close()
    random = {k: [results[f"random{d}"][k] for d in range(args.draws)] for k in results["top"]}
    summary = {"run": str(args.run), "hook": hook, "step": r.step, "n": args.n, "memorised_windows": int(memorised.sum()),
               "windows": len(windows), "table": tables[-1].name, "top_latents": sets["top"].tolist(),
               "top": results["top"], "random_mean": {k: float(np.mean(v)) for k, v in random.items()},
               "random_sd": {k: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for k, v in random.items()}}
    said, half = verdict(results["top"]["memorised_loss"], random["memorised_loss"])
    summary["verdict"], summary["resolution"] = said, half
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ablate_latents_{file_name(hook)}.json").write_text(json.dumps(summary, indent=1))
    print(f"{args.run} · {hook} · step {r.step}: {int(memorised.sum())} memorised of {len(windows)} bucket windows")
    random_label = f"random-n (mean ± sd, {args.draws})"
    print(f"{'change after ablating n=' + str(args.n):<34} {'top-n':>10} {random_label:>28}")
    for k in results["top"]:
        print(f"{k:<34} {results['top'][k]:>+10.4f} {summary['random_mean'][k]:>+16.4f} ± {summary['random_sd'][k]:.4f}")
    print(f"verdict (loss on the memorised windows): {said}")


if __name__ == "__main__":
    main()
