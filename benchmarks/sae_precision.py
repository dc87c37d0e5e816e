"""sae.autocast: an SAE trained in fp32 and its twin trained under bf16 autocast, side by side on the same
activations — what the switch does to the numbers the harness reports (FVE, drift), and how far apart it takes the
two SAEs.

    python benchmarks/sae_precision.py [--preset demo] [--steps 200] [--every 25] [key=value ...]

The preset's SAE bank with one variant, `bf16` (sae.autocast = bf16, everything else the bank's: the same seed, so
the same initialisation), trains on the activations the bank captures from the preset's model on its real-text
stream — the step-0 model, frozen (the question is the SAE's arithmetic, not the LM's change), forwards stopped
after the hooked block — in the bank's own minibatches, one SAE step per LM step's tokens. Every --every steps it
prints, for each precision: FVE on held-out tokens (the stream's first rows, never trained on), the drift since
the previous print (mmcs, on_checkpoint's), and between the two SAEs the mean cosine of the same latent's decoder
rows. Speed: benchmarks/step_overhead.py times `sae x2, sae.autocast=bf16` beside `sae x2`.
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from chrono_membench import hooks
from chrono_membench import metric_keys as K
from chrono_membench.chrono.sae_metrics import fraction_of_variance_explained
from chrono_membench.config import load_config
from chrono_membench.data import MixtureStream, collate
from chrono_membench.distributed import resolve_device
from chrono_membench.model import autocast as model_autocast
from chrono_membench.model import load_model
from chrono_membench.sae import SAEBank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", type=int, default=200, help="SAE steps (each one LM step's tokens)")
    parser.add_argument("--every", type=int, default=25, help="steps between readings")
    parser.add_argument("--held-out", type=int, default=16, help="rows of held-out tokens for FVE")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    cfg = load_config(args.preset, overrides=[*args.overrides, "sae.autocast=fp32",
                                              "sae.variants={bf16: {sae.autocast: bf16}}", "crosscoder.enabled=false"])
    device = resolve_device(cfg.run.device)
    autocast = model_autocast(device, cfg.train.autocast)
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model, device)
    model.eval()
    bank = SAEBank.for_model(cfg, model, tokenizer, device)
    twin = bank.variants["bf16"]
    stop_at = max(hooks.layer_of(h) for h in bank.hook_points) + 1
    stream, t = MixtureStream(cfg.data, tokenizer), cfg.train

    def forward(rows: int) -> None:  # one micro-batch's activations into the bank's capture
        batch = {k: v.to(device) for k, v in collate([stream.next_row() for _ in range(rows)]).items()}
        with torch.no_grad(), autocast, bank.capture(model, batch["tokens"], batch["source_index"]):
            model(batch["tokens"], stop_at_layer=stop_at)

    forward(args.held_out)
    held = {h: x / bank.scale(h) for h, x in bank._take_inputs(False, {}).items()}  # raw units; never trained on
    print(f"{cfg.model.name}, {', '.join(bank.hook_points)}; {len(next(iter(held.values())))} held-out tokens; "
          f"{args.steps} SAE steps of {t.micro_batch * t.grad_accum * cfg.data.seq_len} tokens")
    print(f"{'step':>5s} {'hook':>26s} {'FVE fp32':>9s} {'FVE bf16':>9s} {'mmcs fp32':>10s} {'mmcs bf16':>10s} "
          f"{'cos(fp32, bf16)':>15s}")
    for step in tqdm(range(1, args.steps + 1), desc="sae steps", leave=False, dynamic_ncols=True):
        for _ in range(t.grad_accum):
            forward(t.micro_batch)
        bank.step(step, with_metrics=False)
        if step % args.every and step != args.steps:
            continue
        drift = bank.on_checkpoint()
        for hook, x in held.items():
            with torch.no_grad():
                fve = [fraction_of_variance_explained(x, b.reconstruct(hook, x)) for b in (bank, twin)]
                rows = [torch.nn.functional.normalize(b.saes[hook].W_dec.detach(), dim=-1) for b in (bank, twin)]
                cos = (rows[0] * rows[1]).sum(-1).mean().item()
            mmcs = [drift.get(prefix + K.chrono(hook, "mmcs"), float("nan")) for prefix in ("", K.variant("bf16", ""))]
            tqdm.write(f"{step:5d} {hook:>26s} {fve[0]:9.4f} {fve[1]:9.4f} {mmcs[0]:10.4f} {mmcs[1]:10.4f} {cos:15.4f}")


if __name__ == "__main__":
    main()
