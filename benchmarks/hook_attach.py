"""What attaching hooks costs per forward: TransformerBridge.hooks given one hook name per hook (what the harness
did until 2026-11-30) against hooks.attached (one name filter), for the training step's two contexts — the attention
patterns of every layer (diversity regulariser and its metrics) and the SAE capture — in one process, interleaved.

    python benchmarks/hook_attach.py [--model gguf:smollm2-135m] [--repeats 20]

TransformerBridge.hooks rebuilds its hook dictionary with every alias once per name it is given; the cost grows
with the number of layers and is paid on every micro-step, on a GPU as on a CPU (it is Python, not arithmetic).
Prints the median enter+exit time of each and the ratio.
"""

from __future__ import annotations

import argparse
import functools

import torch

from chrono_membench import hooks
from chrono_membench.config import ModelConfig
from chrono_membench.model import load_model
from timing import interleaved  # benchmarks/timing.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gguf:smollm2-135m")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    model, _ = load_model(ModelConfig(name=args.model), torch.device("cpu"))
    patterns = hooks.pattern_names(model.cfg.n_layers)
    sae_hook = [f"blocks.{model.cfg.n_layers // 2}.hook_resid_post"]
    noop = lambda t, hook: None  # noqa: E731
    contexts = {
        "patterns, one name each": lambda: model.hooks(fwd_hooks=[(n, noop) for n in patterns]),
        "patterns, attached": lambda: hooks.attached(model, dict.fromkeys(patterns, noop)),
        "SAE hook, one name": lambda: model.hooks(fwd_hooks=[(n, noop) for n in sae_hook]),
        "SAE hook, attached": lambda: hooks.attached(model, dict.fromkeys(sae_hook, noop)),
    }

    def enter_and_exit(context):
        with context():
            pass
    med, _ = interleaved({name: functools.partial(enter_and_exit, c) for name, c in contexts.items()}, args.repeats)
    print(f"{args.model}: {model.cfg.n_layers} layers, enter+exit per forward, median of {args.repeats}")
    for name, t in med.items():
        print(f"  {name:<26} {t * 1e3:8.1f} ms")
    print(f"  patterns: one name each / attached {med['patterns, one name each'] / med['patterns, attached']:.1f}×")


if __name__ == "__main__":
    main()
