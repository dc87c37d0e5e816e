"""Step time of plain fine-tuning vs fine-tuning with the SAE bank (1 and 2 hook points), with one SAE and the
crosscoder between the step-0 and the live model (every step: crosscoder.every = 1), and with the
attention-diversity regulariser, measured in one process, interleaved (so drift in machine load hits every
configuration alike), on a preset's model; beside each SAE ratio, its FLOP floor.

    python benchmarks/step_overhead.py [--preset demo] [--repeats 10] [key=value ...]
    python benchmarks/step_overhead.py --preset gemma-2b model.name=random:gemma-2-2b data.origin=sample   # a GPU

Prints each configuration's median step time (and, on CUDA, tokens/s, MFU and peak memory) and its ratio to
plain fine-tuning with a 95 % bootstrap interval over the repeats (each repeat runs the configurations in a fresh
random order). The FLOP floor is 1 + (the SAE steps' FLOPs / the LM step's FLOPs): the encoder forward and its
weight gradient (4·tokens·d_in·d_sae per SAE) and the sparse TopK decoder (6·tokens·k·d_in), against
flops_per_token × tokens for the LM (mfu.py); what a perfectly efficient SAE bank would cost (the crosscoder's:
crosscoder_flops below).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from contextlib import nullcontext
from dataclasses import replace

import torch

from torch.profiler import record_function

from chrono_membench import attention_rows, hooks
from chrono_membench.config import TrainConfig, load_config
from chrono_membench.crosscoder import CrosscoderTrainer
from chrono_membench.data import MixtureStream, collate
from chrono_membench.distributed import resolve_device
from chrono_membench.evaluation import DiversityShare, diversity_term, lm_loss, qk_parameters, sample_queries
from chrono_membench.mfu import flops_per_token, peak_flops
from chrono_membench.model import autocast as model_autocast
from chrono_membench.model import load_model
from chrono_membench.sae import SAEBank
from chrono_membench.optim import build_optimizers


def sae_flops(bank: SAEBank, tokens: int) -> float:
    """FLOPs of one SAE step of the bank on `tokens` tokens: dense encoder, sparse (TopK) or dense decoder."""
    total = 0.0
    for sae in [*bank.saes.values(), *bank.baselines.values()]:
        d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
        active = bank.cfg.k if bank.cfg.architecture in ("topk", "batchtopk") else d_sae
        total += 4 * tokens * d_in * d_sae + 6 * tokens * active * d_in
    return total


def crosscoder_flops(bank: SAEBank, model_cfg, tokens: int, lm_flops: float) -> float:
    """The crosscoder's step: the step-0 model's forward up to the hook's block (a third of the LM's training FLOPs,
    times the share of its layers), and two crosscoders (the run's and its null twin), each 2 models × (encoder +
    decoder) × 2 FLOPs per multiply-add, × 3 for forward and backward."""
    cc = bank.crosscoder
    if cc is None:
        return 0.0
    forward = lm_flops / 3 * (hooks.layer_of(cc.hook) + 1) / model_cfg.n_layers
    return forward + 2 * 3 * 2 * 2 * 2 * cc.model.d_in * cc.model.d_sae * tokens


def ratio_interval(times: list[float], base: list[float], draws: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of median(times) / median(base), resampling the repeats."""
    rng = random.Random(1)
    ratios = sorted(statistics.median(rng.choices(times, k=len(times))) / statistics.median(rng.choices(base, k=len(base)))
                    for _ in range(draws))
    return ratios[int(0.025 * draws)], ratios[int(0.975 * draws) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--breakdown", action="store_true",
                        help="then profile 3 steps of each SAE configuration: where a step's time goes, by part")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    cfg = load_config(args.preset, overrides=args.overrides)
    device = resolve_device(cfg.run.device)
    cuda = device.type == "cuda"
    autocast = model_autocast(device, cfg.train.autocast)
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model, device)
    if cfg.train.compile:
        model.original_model.compile()
    L = model.cfg.n_layers

    def bank(hook_points, sae_cfg=cfg.sae):
        widths = hooks.activation_widths(model, hook_points)
        return SAEBank(sae_cfg, cfg.chrono, cfg.train.max_steps, widths, device)

    def with_crosscoder(hook_points):  # the SAE bank and, riding it, the crosscoder with the step-0 model's forward
        b = bank(hook_points)
        reference = load_model(cfg.model, device)[0].eval().requires_grad_(False)
        width = hooks.activation_widths(model, hook_points[:1])[hook_points[0]]
        b.crosscoder = CrosscoderTrainer(replace(cfg.crosscoder, every=1), hook_points[0], width, reference, device)
        b.autocast = autocast
        return b

    banks = {
        "plain": None,
        "sae x1": bank(hooks.default_hook_points(L)),
        "sae x2": bank([f"blocks.{L // 3}.hook_resid_post", f"blocks.{2 * L // 3}.hook_resid_post"]),
        "sae x2, sae.autocast=bf16": bank([f"blocks.{L // 3}.hook_resid_post", f"blocks.{2 * L // 3}.hook_resid_post"],
                                          replace(cfg.sae, autocast="bf16")),
        "sae x1 + crosscoder": with_crosscoder(hooks.default_hook_points(L)),
    }
    configurations = {name: (bank, False) for name, bank in banks.items()}
    # the regulariser's step, and its step at the chrono cadence (where it measures the share μ steers), timed apart:
    # with a few repeats the cadence lands in none or one of them, so its amortised cost is printed from both
    configurations["diversity"] = (None, True)
    configurations["diversity, chrono step"] = (None, True)
    optimizers = build_optimizers(model.original_model, cfg)
    shares = DiversityShare(qk_parameters(model.original_model))
    stream = MixtureStream(cfg.data, tokenizer)
    t = cfg.train
    batches = [{k: v.to(device) for k, v in collate([stream.next_row() for _ in range(t.micro_batch)]).items()}
               for _ in range(t.grad_accum)]

    def one_step(bank, diversity, with_metrics):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches:
            capture = bank.capture(model, batch["tokens"], batch["source_index"]) if bank is not None else nullcontext()
            queries = sample_queries(cfg, 0, 0)
            with autocast, capture, attention_rows.capture(queries) if diversity else nullcontext() as rows:
                loss = lm_loss(model(batch["tokens"]), batch["tokens"], batch["source_index"])
                if diversity:  # as train.py does at μ > 0: the sampled rows from inside the SDPA kernel, and
                    # at the chrono cadence the share μ steers of the update (one partial backward of ∇D per micro-batch)
                    term = diversity_term(rows, queries, batch["source_index"])
                    if with_metrics:
                        shares.add(term, 1 / t.grad_accum)
                    loss = loss - 0.01 * term
            (loss / t.grad_accum).backward()
        if diversity and with_metrics:
            shares.read(0.01, cfg.chrono.diversity_share)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if bank is not None:
            with record_function("bank.step"):
                bank.step(1, with_metrics=with_metrics)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    peak_memory = {}
    for name, (bank, diversity) in configurations.items():  # warm-up (and, on CUDA, each one's peak memory)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        one_step(bank, diversity, False)
        peak_memory[name] = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")
    times = {name: [] for name in configurations}
    order = random.Random(0)
    for r in range(args.repeats):
        # a fresh order every repeat: no configuration always follows the same one (a step leaves the allocator
        # and caches in a state that the next step pays for or profits from)
        for name in order.sample(list(configurations), len(configurations)):
            bank, diversity = configurations[name]
            # SAE metrics at the preset's cadence (train.chrono_every), as in training
            metrics = {"diversity": False, "diversity, chrono step": True}.get(name, r % t.chrono_every == 0)
            times[name].append(one_step(bank, diversity, with_metrics=metrics))
    tokens = t.micro_batch * t.grad_accum * cfg.data.seq_len
    lm_flops = flops_per_token(model.cfg, cfg.data.seq_len) * tokens
    peak = peak_flops(device, t.peak_tflops)
    base = statistics.median(times["plain"])
    print(f"{cfg.model.name} on {torch.cuda.get_device_name(device) if cuda else 'cpu'}: {tokens} tokens/step, "
          f"{args.repeats} interleaved repeats (medians), d_sae = {cfg.sae.expansion} x d_in, "
          f"{cfg.sae.architecture} k={cfg.sae.k}, compile={t.compile}; LM step {lm_flops / 1e9:,.0f} GFLOP")
    for name, ts in times.items():
        median = statistics.median(ts)
        low, high = ratio_interval(ts, times["plain"])
        line = (f"{name:22s} {median:7.3f} s/step (min {min(ts):.3f}, max {max(ts):.3f})  "
                f"ratio {median / base:.3f} [{low:.3f}, {high:.3f}]")
        if banks.get(name) is not None:
            extra = sae_flops(banks[name], tokens) + crosscoder_flops(banks[name], model.cfg, tokens, lm_flops)
            line += f"  (FLOP floor {1 + extra / lm_flops:.3f})"
        if cuda:
            mfu = f", MFU {lm_flops / median / peak:.1%}" if peak else ""
            line += f"  {tokens / median:,.0f} tokens/s{mfu}, peak memory {peak_memory[name]:.1f} GiB"
        print(line)
    # the regulariser over a chrono period: c − 1 plain steps of it and one chrono step, at the preset's cadence and
    # at the default one (the hub presets' 100), where μ's setting is a hundredth of the steps
    for c in dict.fromkeys((t.chrono_every, TrainConfig.chrono_every)):
        amortised = [((c - 1) * a + b) / c for a, b in zip(times["diversity"], times["diversity, chrono step"])]
        low, high = ratio_interval(amortised, times["plain"])
        print(f"{'diversity, amortised':22s} {statistics.median(amortised):7.3f} s/step (over train.chrono_every = "
              f"{c})  ratio {statistics.median(amortised) / base:.3f} [{low:.3f}, {high:.3f}]  (FLOP floor ≈ 1)")
    if args.breakdown:
        breakdown(one_step, configurations, [n for n in configurations if n != "plain"])


def breakdown(one_step, configurations: dict, names: list[str], steps: int = 3) -> None:
    """Self-times by part (the record_function labels in sae.py / crosscoder.py: sae.forward, sae.backward, …) and
    the heaviest operators inside the bank's step, for `steps` steps of each configuration (the first with the
    metrics the chrono cadence logs). A part's time includes its operators; "bank.step" is the whole SAE step."""
    from torch.profiler import ProfilerActivity, profile

    for name in names:
        bank, diversity = configurations[name]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(steps):
                one_step(bank, diversity, with_metrics=i == 0)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        parts = sorted((e for e in events if e.key.startswith(("sae.", "crosscoder.", "bank."))),
                       key=lambda e: -e.cpu_time_total)
        print(f"\n{name}: {total / 1e6 / steps:.3f} s of CPU time per step (profiled, {steps} steps)")
        for e in parts:
            print(f"  {e.key:22s} {e.cpu_time_total / 1e6 / steps:7.3f} s/step  {e.cpu_time_total / total:6.1%}")
        ops = sorted((e for e in events if not e.key.startswith(("sae.", "crosscoder.", "bank.", "ProfilerStep"))),
                     key=lambda e: -e.self_cpu_time_total)[:12]
        print("  heaviest operators (self time, whole step):")
        for e in ops:
            print(f"    {e.key:40s} {e.self_cpu_time_total / 1e6 / steps:7.3f} s/step  {e.self_cpu_time_total / total:6.1%}"
                  f"  ({e.count // steps} calls)")


if __name__ == "__main__":
    main()
