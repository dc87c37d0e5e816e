"""One TopK SAE training step (encode, decode, MSE, backward) three ways, timed side by side in one process:
sae-lens's dense decode, sae-lens's sparse path (`use_sparse_activations=True`: a COO tensor and torch.sparse.mm),
and the harness's gather (`chrono_membench.sae.sparse_decode`, F.embedding_bag over the active rows).

    python benchmarks/sae_decode.py [--tokens 1024] [--d-in 576] [--expansion 8] [--k 32] [--repeats 20]

Prints the median time of each and its ratio to the dense one, and checks the three reconstructions agree; a way
whose backward fails on this torch build is reported as such.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

from chrono_membench.sae import sparse_decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--d-in", type=int, default=576)  # SmolLM2-135M's d_model (the demo)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    saes = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        cfg = TopKTrainingSAEConfig(d_in=args.d_in, d_sae=args.expansion * args.d_in, k=args.k,
                                    use_sparse_activations=sparse)
        saes[sparse] = TopKTrainingSAE(cfg)
    x = torch.randn(args.tokens, args.d_in)

    def dense():
        sae = saes[False]
        return sae.decode(sae.encode_with_hidden_pre(x)[0])

    def sae_lens_sparse():
        sae = saes[True]
        return sae.decode(sae.encode_with_hidden_pre(x)[0])

    def gather():
        sae = saes[False]
        acts = sae.encode_with_hidden_pre(x)[0]
        rows, cols = acts.nonzero(as_tuple=True)
        return sparse_decode(sae, rows, cols, len(x), acts[rows, cols])

    ways = {"sae-lens dense": dense, "sae-lens sparse (COO)": sae_lens_sparse, "gather (harness)": gather}
    outs = {name: f().detach() for name, f in ways.items()}
    for out in outs.values():
        torch.testing.assert_close(out, outs["sae-lens dense"], rtol=1e-4, atol=1e-4)

    def step(f) -> float:
        start = time.perf_counter()
        out = f()
        (out - x).pow(2).sum(-1).mean().backward()
        for sae in saes.values():
            sae.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    failed = {}
    for name, f in list(ways.items()):  # can it train at all (forward and backward) on this build?
        try:
            step(f)
        except (NotImplementedError, RuntimeError) as e:
            failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
            del ways[name]
    times = {name: [] for name in ways}
    order = random.Random(0)
    for _ in range(args.repeats):
        for name in order.sample(list(ways), len(ways)):
            times[name].append(step(ways[name]))
    base = statistics.median(times["sae-lens dense"])
    print(f"{args.tokens} tokens, d_in {args.d_in}, d_sae {args.expansion * args.d_in}, k {args.k}, "
          f"{torch.get_num_threads()} threads; {args.repeats} repeats, medians")
    for name, ts in times.items():
        print(f"{name:22s} {statistics.median(ts) * 1e3:8.1f} ms  ratio {statistics.median(ts) / base:.3f}")
    for name, why in failed.items():
        print(f"{name:22s} cannot train here: its backward fails ({why})")


if __name__ == "__main__":
    main()
