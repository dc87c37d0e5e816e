"""What the attention-diversity regulariser costs per micro-batch, and where: plain forward + backward, with the
pattern-row capture open (attention_rows: the rows' own softmax), with a trivial loss on the rows (their backward),
and with the regulariser (docs/design.md §4.3). Interleaved, medians after one warm-up; under the run's autocast
(train.autocast: bf16 on a CPU with AMX, as the demo trains). --profile: the ops that take the regulariser's extra
time (torch.profiler self-times, diversity minus plain).

    python benchmarks/diversity_cost.py [--preset demo] [--repeats 6] [--profile] [key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from chrono_membench import attention_rows
from chrono_membench.config import load_config
from chrono_membench.evaluation import diversity_term, lm_loss, sample_queries
from chrono_membench.model import autocast, load_model

MODES = ("plain", "capture", "rows.sum", "diversity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--profile", action="store_true", help="also the ops behind the regulariser's extra time")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    cfg = load_config(args.preset, overrides=args.overrides)
    model, _ = load_model(cfg.model)
    model.train()
    shape = (cfg.train.micro_batch, cfg.data.seq_len)
    tokens = torch.randint(1000, 30000, shape, generator=torch.Generator().manual_seed(0))
    sources, queries = torch.zeros_like(tokens), sample_queries(cfg, 0, 0)
    cast = autocast("cpu", cfg.train.autocast)

    def one(mode: str) -> float:
        start = time.perf_counter()
        if mode == "plain":
            with cast:
                logits = model(tokens)
            loss = lm_loss(logits, tokens, sources)
        else:
            with cast, attention_rows.capture(queries) as rows:
                logits = model(tokens)
            loss = lm_loss(logits, tokens, sources)
            if mode == "rows.sum":
                loss = loss - 0.01 * torch.stack([r.sum() for r in rows]).sum()
            elif mode == "diversity":
                loss = loss - (cfg.chrono.diversity_weight or 0.01) * diversity_term(rows, queries, sources)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    times = {mode: [] for mode in MODES}
    for repeat in range(args.repeats + 1):
        for mode in MODES:
            elapsed = one(mode)
            if repeat:  # the first round warms up
                times[mode].append(elapsed)
    base = statistics.median(times["plain"])
    print(f"{cfg.model.name}: micro-batch {cfg.train.micro_batch} x {cfg.data.seq_len}, {cfg.chrono.probe_queries} query "
          f"rows, {args.repeats} interleaved repeats (medians of forward + backward)")
    for mode, ts in times.items():
        print(f"{mode:10s} {statistics.median(ts):7.3f} s  ratio {statistics.median(ts) / base:.3f}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        self_ms = {}
        for mode in ("plain", "diversity"):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    one(mode)
            self_ms[mode] = {e.key: e.self_cpu_time_total / 3e3 for e in prof.key_averages()}
        extra = {op: t - self_ms["plain"].get(op, 0.0) for op, t in self_ms["diversity"].items()}
        print(f"the regulariser's extra self-time by op (ms per forward + backward; total "
              f"{sum(extra.values()):+.0f} ms):")
        for op, t in sorted(extra.items(), key=lambda kv: -abs(kv[1]))[:15]:
            print(f"  {op:45s} {t:+8.1f}")


if __name__ == "__main__":
    main()
