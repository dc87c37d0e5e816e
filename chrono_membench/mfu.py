"""Model FLOPs utilisation: achieved training FLOP/s over the accelerator's peak (PaLM appendix B; nanoGPT).

Per trained token: 6·N for the matmuls of forward + backward (N = non-embedding parameters) plus the
attention term 12·L·T·d_model (QKᵀ and A·V, forward + backward, causal masking not discounted).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks, TFLOP/s (vendor datasheets, without sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "A10G": 125.0, "L40S": 362.0,
                    "L4": 121.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0}


def flops_per_token(model_cfg, seq_len: int) -> float:
    """Training FLOPs per token of a TransformerLens config (d_model, n_layers, d_mlp, d_vocab, n_heads...)."""
    d, L = model_cfg.d_model, model_cfg.n_layers
    n_heads, d_head = model_cfg.n_heads, model_cfg.d_head
    n_kv = getattr(model_cfg, "n_key_value_heads", None) or n_heads
    mlp_matrices = 3 if getattr(model_cfg, "gated_mlp", False) or getattr(model_cfg, "act_fn", "") == "silu" else 2
    attn_params = d * d_head * (n_heads + 2 * n_kv) + n_heads * d_head * d
    mlp_params = mlp_matrices * d * model_cfg.d_mlp
    n = L * (attn_params + mlp_params) + d * model_cfg.d_vocab  # the unembedding matmul counts; the lookup does not
    return 6.0 * n + 12.0 * L * seq_len * n_heads * d_head


def peak_flops(device: torch.device, peak_tflops: float = 0.0) -> float:
    """Peak bf16 FLOP/s of one device: the configured value, else the GPU's datasheet figure, else 0 (no MFU)."""
    if peak_tflops > 0:
        return peak_tflops * 1e12
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # "GH200" before "H200"
        if key in name:
            return PEAK_BF16_TFLOPS[key] * 1e12
    return 0.0


def machine() -> str:
    """This machine in words, for a run's record of where it ran: the CPU's model name and cores, and the GPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    gpu = f"; {torch.cuda.device_count()}× {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}"
