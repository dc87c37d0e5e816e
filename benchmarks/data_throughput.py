"""Data throughput: how fast the stream packs rows, and how much of a step waits for them, with and without
the background packer (data.prefetch_rows), measured side by side in one run.

    python benchmarks/data_throughput.py [--preset demo] [--device-tokens-per-s 60000 250000] [--steps 150] [k=v ...]

1. Packed tokens/s of the training stream alone (one thread: tokenise, pack, per-row bookkeeping).
2. For each device speed: steps whose compute is a sleep of tokens_per_step / speed seconds (a GPU step: the
   host waits, releasing the GIL), fed by the real global-batch path (`Batches`: seen log, probe offers,
   canaries) of the preset, each rank packing the global stream as under torchrun. Prints the fraction of step
   time spent in `Batches.next` with prefetch off (synchronous) and on. 60k tokens/s is Llama-3-8B on 8 GPUs
   (the global stream every rank packs). The packing runs in a worker process (data/prefetch.py), so a real
   step's own Python (kernel launches, hooks) does not share a GIL with it; the trainer logs the measured
   `train/data_wait_frac` of real runs.
"""

from __future__ import annotations

import argparse
import time

from chrono_membench.config import load_config
from chrono_membench.batches import Batches
from chrono_membench.data import MixtureStream, prefetched
from chrono_membench.model import load_tokenizer
from chrono_membench.probes import Canaries, ProbeSet


def packing_rate(cfg, tokenizer, seconds: float) -> float:
    stream, rows, start = MixtureStream(cfg.data, tokenizer), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        stream.next_row()
        rows += 1
    return rows * cfg.data.seq_len / (time.perf_counter() - start)


def wait_fraction(cfg, tokenizer, prefetch_rows: int, device_tokens_per_s: float, steps: int, warmup: int) -> float:
    t = cfg.train
    probes = ProbeSet.for_run(cfg, tokenizer, fill_unseen=False)
    canaries = Canaries(cfg, tokenizer, cfg.run.seed) if cfg.chrono.canary_repetitions else None
    stream = prefetched(MixtureStream(cfg.data, tokenizer), prefetch_rows)
    batches = Batches(stream, t.micro_batch, probes, canaries)
    compute = t.micro_batch * cfg.data.seq_len / device_tokens_per_s  # per micro-batch
    waited, total = 0.0, 0.0
    for step in range(1, steps + 1):
        step_start = time.perf_counter()
        for micro in range(t.grad_accum):
            start = time.perf_counter()
            batches.next(step, micro)
            if step > warmup:  # the first steps read each source's file once and fill the queue
                waited += time.perf_counter() - start
            time.sleep(compute)
        if step > warmup:
            total += time.perf_counter() - step_start
    stream.close()
    return waited / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--device-tokens-per-s", type=float, nargs="+", default=[60_000, 250_000])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20, help="steps not counted (one-time file reads)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    cfg = load_config(args.preset, overrides=args.overrides)
    tokenizer = load_tokenizer(cfg.model)
    rate = packing_rate(cfg, tokenizer, seconds=5.0)
    depth = cfg.data.prefetch_rows or 64
    print(f"{args.preset}: seq_len {cfg.data.seq_len}, {cfg.train.micro_batch} x {cfg.train.grad_accum} rows/step; "
          f"packing alone: {rate:,.0f} tokens/s (one thread)")
    print(f"{'device tokens/s':>16s}  {'wait, no prefetch':>18s}  {f'wait, prefetch {depth} rows':>24s}")
    for speed in args.device_tokens_per_s:
        off = wait_fraction(cfg, tokenizer, 0, speed, args.steps, args.warmup)
        on = wait_fraction(cfg, tokenizer, depth, speed, args.steps, args.warmup)
        print(f"{speed:16,.0f}  {off:18.1%}  {on:24.1%}")


if __name__ == "__main__":
    main()
