"""Forward+backward time of the same weights as a plain transformers model and as the TransformerBridge the
harness trains, in one process, interleaved (machine-load drift hits all alike). A third candidate is the
bridge as TransformerLens ships it, attention always re-implemented step by step (what the harness ran
before `use_native_attention_when_unhooked`), so before/after are measured side by side.

    python benchmarks/hook_overhead.py [--model gguf:smollm2-135m] [--batch 2] [--seq 256] [--repeats 20]
    python benchmarks/hook_overhead.py --profile      # plus the top operators of each, by self CPU time

Prints the median time of each and its ratio to plain HF, and the largest logits difference to plain HF.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


from chrono_membench.config import ModelConfig
from chrono_membench.model import boot_bridge, build_hf_model, load_tokenizer


def fwd_bwd(module, tokens) -> float:
    start = time.perf_counter()
    out = module(tokens)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    logits.float().logsumexp(-1).mean().backward()
    module.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def profile(name, module, tokens, rows: int = 12) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            fwd_bwd(module, tokens)
    print(f"\n--- {name}: top operators by self CPU time (3 fwd+bwd)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gguf:smollm2-135m")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    model_cfg = ModelConfig(name=args.model)
    tokenizer = load_tokenizer(model_cfg)
    plain = build_hf_model(model_cfg, tokenizer)
    bridge = boot_bridge(build_hf_model(model_cfg, tokenizer), tokenizer)  # booting rewires its model in place
    reconstructing = boot_bridge(build_hf_model(model_cfg, tokenizer), tokenizer)
    for block in reconstructing.blocks:
        object.__delattr__(block.attn, "forward")  # back to the class's forward: TransformerLens's own path
    candidates = {"plain HF": plain, "bridge": bridge, "bridge, TL attention": reconstructing}
    for module in candidates.values():
        module.train()
    tokens = torch.randint(1000, 30000, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    print(f"{args.model}, {args.batch}x{args.seq} tokens, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.no_grad():
        reference = plain(tokens).logits
        diffs = {name: (reference - m(tokens)).abs().max().item() for name, m in candidates.items() if m is not plain}
    for module in candidates.values():  # warm-up
        fwd_bwd(module, tokens)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, module in candidates.items():
            times[name].append(fwd_bwd(module, tokens))
    base = statistics.median(times["plain HF"])
    for name, ts in times.items():
        med = statistics.median(ts)
        diff = f"  max |logits - plain| {diffs[name]:.1e}" if name in diffs else ""
        print(f"{name:>20}: median {med * 1000:7.1f} ms  (min {min(ts) * 1000:.1f})  ratio {med / base:.3f}{diff}")
    if args.profile:
        for name, module in candidates.items():
            profile(name, module, tokens)


if __name__ == "__main__":
    main()
