"""Step time of plain fine-tuning vs fine-tuning with the SAE bank (1 and 2 hook points) and with the
attention-diversity regulariser, measured in one process, interleaved (so drift in machine load hits every
configuration alike), on the demo model.

    python benchmarks/step_overhead.py [--preset demo] [--repeats 6] [key=value ...]

Prints the mean step time of each configuration and its ratio to plain fine-tuning.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch


from chrono_membench import hooks
from chrono_membench.config import load_config
from chrono_membench.data import MixtureStream, collate
from chrono_membench.evaluation import capture_patterns, diversity_term, lm_loss
from chrono_membench.model import load_model
from chrono_membench.sae import SAEBank
from chrono_membench.train import build_optimizers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    cfg = load_config(args.preset, overrides=args.overrides)
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model)
    L = model.cfg.n_layers
    def bank(hook_points):
        widths = hooks.activation_widths(model, hook_points)
        return SAEBank(cfg.sae, cfg.chrono, cfg.train.max_steps, widths, torch.device("cpu"))

    banks = {
        "plain": None,
        "sae x1": bank(hooks.default_hook_points(L)),
        "sae x2": bank([f"blocks.{L // 3}.hook_resid_post", f"blocks.{2 * L // 3}.hook_resid_post"]),
    }
    configurations = {name: (bank, False) for name, bank in banks.items()}
    configurations["diversity"] = (None, True)
    optimizers = build_optimizers(model.original_model, cfg)
    stream = MixtureStream(cfg.data, tokenizer)
    t = cfg.train
    batches = [collate([stream.next_row() for _ in range(t.micro_batch)]) for _ in range(t.grad_accum)]

    def one_step(bank, diversity, with_metrics):
        start = time.perf_counter()
        for batch in batches:
            with bank.capture(model, batch["tokens"], batch["source_index"]) if bank is not None else nullcontext(), \
                    capture_patterns(model) if diversity else nullcontext() as patterns:
                loss = lm_loss(model(batch["tokens"]), batch["tokens"], batch["source_index"])
            if diversity:
                loss = loss - 0.01 * diversity_term(patterns, cfg.chrono.probe_queries, torch.Generator().manual_seed(0))
            (loss / t.grad_accum).backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if bank is not None:
            bank.step(1, with_metrics=with_metrics)
        return time.perf_counter() - start

    for bank, diversity in configurations.values():  # warm-up
        one_step(bank, diversity, False)
    times = {name: [] for name in configurations}
    for r in range(args.repeats):
        for name, (bank, diversity) in configurations.items():
            # SAE metrics at the preset's cadence (train.chrono_every), as in training
            times[name].append(one_step(bank, diversity, with_metrics=r % t.chrono_every == 0))
    tokens = t.micro_batch * t.grad_accum * cfg.data.seq_len
    base = statistics.mean(times["plain"])
    print(f"{cfg.model.name}: {tokens} tokens/step, {args.repeats} interleaved repeats, d_sae = "
          f"{cfg.sae.expansion} x {model.cfg.d_model}, {cfg.sae.architecture}")
    for name, ts in times.items():
        mean = statistics.mean(ts)
        print(f"{name:9s} {mean:7.3f} s/step (sd {statistics.stdev(ts):.3f})  ratio {mean / base:.3f}")


if __name__ == "__main__":
    main()
