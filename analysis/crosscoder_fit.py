"""A crosscoder fitted after the run, to convergence: between the step-0 model and the model at the run's last
checkpoint, on the run's own training rows (read again from its data stream, with its canaries and plants), beside
its null twin on (step-0, step-0) pairs from the same initialisation (chrono_membench/crosscoder.py; docs/design.md
§4.7).

    python analysis/crosscoder_fit.py runs/<name> --out report/ [--epochs 9] [--tokens 65536] [--batch-tokens 1024]
                                                                [--hook H]

The crosscoder trained alongside (crosscoder.enabled) sees each row once, while the LM trains on it — when the two
models still agree. This one sees the rows the run trained on (every one, or an even subsample up to --tokens)
--epochs times, with the final model: model diffing as Minder et al. (2025) do it, after fine-tuning. So it tells
how far the run's change reaches at this size: each latent's r = ‖d_ft‖ / (‖d_base‖ + ‖d_ft‖) against its null
twin's, the class counts under the same rule (past max(crosscoder.class_floor, the null's most extreme latent)),
and the latents leaning furthest from their null twin, with their strongest probe windows. Rows as a one-process
run reads them. Prints a line per epoch and a summary; writes crosscoder_fit_<hook>.safetensors (crosscoder.load
reads it) and crosscoder_fit_latents_<hook>.json under --out.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm import tqdm

from chrono_membench import crosscoder as C
from chrono_membench.batches import Batches
from chrono_membench.chrono.sae_metrics import fraction_of_variance_explained
from chrono_membench.data.plants import Plants
from chrono_membench.data.sources import PAD_SOURCE
from chrono_membench.data.stream import MixtureStream
from chrono_membench.config import ConfigError
from chrono_membench.hook_names import check_hook_forms, check_hook_points
from chrono_membench.hooks import file_name
from chrono_membench.model import autocast as model_autocast
from chrono_membench.probes import Canaries
from chrono_membench.restore import restore_for_analysis

SHOWN = 5  # latents printed each way


def training_rows(cfg, tokenizer, steps: int, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, mask) of the rows steps 1…steps trained on, as the run built them (canaries and plants in place),
    evenly subsampled to at most max_tokens; the mask leaves out padding and position 0 (the attention sink)."""
    canaries = Canaries(cfg, tokenizer, cfg.run.seed) if cfg.chrono.enabled and cfg.chrono.canary_repetitions else None
    batches = Batches(MixtureStream(cfg.data, tokenizer, split="train"), cfg.train.micro_batch, None, canaries,
                      plants=Plants.for_run(cfg, canaries, 1))
    rows = [batches.next(s, m) for s in tqdm(range(1, steps + 1), desc="training rows", unit="step")
            for m in range(cfg.train.grad_accum)]
    tokens = torch.cat([r["tokens"] for r in rows])
    mask = torch.cat([r["source_index"] for r in rows]) != PAD_SOURCE
    mask[:, 0] = False
    keep = torch.arange(0, len(tokens), max(1, math.ceil(mask.sum().item() / max_tokens)))
    return tokens[keep], mask[keep]


def print_leaning(trainer, r, autocast) -> None:
    """The latents leaning furthest from their null twin (r − r_null), each way, with the probe window (at most
    crosscoder.EVAL_WINDOWS per column) that fires each most."""
    probes = [(b, p) for b, (_, ps) in enumerate(r.probes.columns()) for p in ps[:C.EVAL_WINDOWS]]
    if not probes:
        return
    rr, rn = trainer.relative_norms()
    x, window = C.paired_activations(trainer, r.model, torch.tensor([p.tokens for _, p in probes]), autocast)
    lean = (rr - rn).argsort()
    shown = [*lean[-SHOWN:].flip(0).tolist(), *lean[:SHOWN].tolist()]
    with torch.no_grad():
        top = C.top_windows(trainer.model.encode(x)[:, shown], window, probes, [name for name, _ in r.probes.columns()],
                            k=1)
    print("  leaning furthest (r − r_null), with the probe window that fires it most:")
    for j, entries in zip(shown, top):
        where = (f"{entries[0]['column']} {entries[0]['uid']}: {r.tokenizer.decode(entries[0]['tokens'])!r}"
                 if entries else "fires on no probe window")
        print(f"    latent {j}: r {rr[j]:.3f} (null {rn[j]:.3f}, {rr[j] - rn[j]:+.3f})  {where}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hook", help="default: crosscoder.hook, else the run's first SAE hook")
    parser.add_argument("--epochs", type=int, default=9, help="passes over the rows")
    parser.add_argument("--tokens", type=int, default=65_536, help="at most this many training tokens (a subsample)")
    parser.add_argument("--batch-tokens", type=int, default=1024,
                        help="tokens per crosscoder step (the alongside one uses sae.batch_tokens, 4,096 by default: a "
                             "pass then holds 4× fewer steps)")
    parser.add_argument("--seed", type=int, default=0, help="the crosscoder's (and its null twin's) initialisation")
    args = parser.parse_args(argv)
    if min(args.epochs, args.tokens, args.batch_tokens) < 1:
        raise SystemExit(f"error: --epochs, --tokens and --batch-tokens must be positive, got {args.epochs}, "
                         f"{args.tokens} and {args.batch_tokens}")
    try:
        check_hook_forms([args.hook] if args.hook else [], "--hook")
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"restoring {args.run} (model, step-0 model, probe set) from its last checkpoint …", flush=True)
    try:
        r = restore_for_analysis(args.run)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}; crosscoder_fit reads a run's last checkpoint (checkpointing.*)") from None
    cfg = r.cfg
    hook = args.hook or cfg.crosscoder.hook or (r.saes.hook_points[0] if r.saes is not None else "")
    try:
        check_hook_points([hook] if hook else [], r.model.cfg.n_layers, "--hook")
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    if not hook:
        raise SystemExit(f"error: {args.run} names no crosscoder or SAE hook; pass --hook")
    autocast = model_autocast(torch.device("cpu"), cfg.train.autocast)
    tokens, mask = training_rows(cfg, r.tokenizer, r.step, args.tokens)
    batches = list(zip(tokens.split(cfg.train.micro_batch), mask.split(cfg.train.micro_batch)))
    base, live = (C.hook_activations(m, hook, tqdm(batches, desc=f"activations ({who})", unit="batch"), autocast)
                  for who, m in (("step 0", r.reference), (f"step {r.step}", r.model)))
    kept = C.inliers(base, live)  # what the crosscoder trains on (attention sinks left out)
    moved = ((kept[1] - kept[0]).norm(dim=-1).pow(2) / kept[0].norm(dim=-1).pow(2).clamp_min(1e-12)).median().item()
    print(f"{len(kept[0]):,} tokens of {len(tokens)} rows (attention sinks left out); the LM moved them at {hook} by "
          f"a median {moved:.1%} (‖x_ft − x_0‖² / ‖x_0‖²)", flush=True)
    trainer = C.CrosscoderTrainer(cfg.crosscoder, hook, base.shape[1], r.reference, torch.device("cpu"), args.seed)
    bar = tqdm(range(args.epochs), desc="crosscoder epochs", unit="epoch")
    for _ in bar:
        trainer.train_on(base, live, args.batch_tokens)
        rr, rn = trainer.relative_norms()
        bar.set_postfix(r_max=f"{rr.max():.3f}", null_max=f"{rn.max():.3f}")
    trainer.record(r.step)
    rr, rn = trainer.relative_norms()
    hi = C.threshold(rn, cfg.crosscoder.class_floor)
    cls = C.classes(rr, hi)
    with torch.no_grad():  # at inference (the threshold), on an even subsample of the rows' tokens
        x = torch.stack(kept, 1)[:: max(1, len(kept[0]) // 8192)] * trainer.scale
        x_hat = trainer.model.decode(trainer.model.encode(x))
        fve = [fraction_of_variance_explained(x[:, m], x_hat[:, m]) for m in (0, 1)]
    print(f"\nafter {args.epochs} epochs: FVE {fve[0]:.3f} (step 0) / {fve[1]:.3f} (step {r.step})")
    print(f"  r: SD {rr.std():.4f} (null {rn.std():.4f}), range [{rr.min():.3f}, {rr.max():.3f}] "
          f"(null [{rn.min():.3f}, {rn.max():.3f}]); threshold {hi:.3f}")
    print(f"  fine-tuned-only {len(cls['ft_only'])}, base-only {len(cls['base_only'])}, shared {len(cls['shared'])} "
          f"of {len(rr)} latents")
    print_leaning(trainer, r, autocast)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = file_name(hook)
    C.save(trainer, args.out / f"crosscoder_fit_{stem}.safetensors", args.out / f"crosscoder_fit_latents_{stem}.json",
           {"model_name": cfg.model.name, "step": r.step, "epochs": args.epochs, "tokens": len(kept[0]),
            "batch_tokens": args.batch_tokens, "median_moved": moved}, r.step)
    print(f"written: {args.out}/crosscoder_fit_{stem}.safetensors, crosscoder_fit_latents_{stem}.json")


if __name__ == "__main__":
    main()
