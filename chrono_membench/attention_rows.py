"""The attention pattern at a few sampled query rows, taken inside the model's own fast attention kernel.

The diversity regulariser (docs/design.md §4.3) looks at `chrono.probe_queries` query positions. Hooking the bridge's
`hook_pattern` for it would move every layer to the bridge's eager reconstruction and keep a [B, H, T, T] pattern
per layer for backward — at Gemma-2-2B × 2,048 tokens, 26 layers × 8 heads × 2,048² entries per row — where SDPA /
flash attention keep none. Instead the HF model's attention implementation is swapped (once, at load) for a thin
registered wrapper (transformers' `AttentionInterface`): it calls the model's own kernel ("sdpa", or "eager" where
the model needs it, e.g. Gemma 2's softcapping) for the output, and, only while `capture(query_index)` is open,
also computes the softmax rows of those queries from the same queries and keys the kernel received — after q/k
norms and rotary, with the layer's own scaling, logit softcapping, GQA sharing and mask (causal, sliding window,
padding). That is [B, H, n_queries, T] per layer, in the graph, so the regulariser's gradient reaches q and k.

The bridge's hooked path (eval-time attention metrics, run_with_cache on hook_pattern) is untouched.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import torch

_capture: dict = {}  # while capture() is open: {"rows": LongTensor [n], "out": list of [B, H, n, K] per layer call}


def _rows_of_pattern(module, query, key, attention_mask, scaling, softcap, rows) -> torch.Tensor:
    """Rows `rows` of softmax(q kᵀ · scaling (+ softcap) + mask), as HF's eager_attention_forward computes the whole
    matrix. query [B, H, Q, D], key [B, H_kv, K, D]; attention_mask None (purely causal, SDPA's is_causal skip),
    bool [B|1, 1, Q, K] (True = attend) or additive float."""
    from transformers.integrations.sdpa_attention import repeat_kv

    key = repeat_kv(key, getattr(module, "num_key_value_groups", 1))
    scores = query[:, :, rows] @ key.transpose(2, 3) * (module.head_dim ** -0.5 if scaling is None else scaling)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    n_keys = key.shape[2]
    if attention_mask is None:  # no cache here: query i sits at position i
        allowed = rows.to(query.device)[:, None] >= torch.arange(n_keys, device=query.device)[None]
        scores = scores.masked_fill(~allowed, float("-inf"))
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask[:, :, rows, :n_keys], float("-inf"))
    else:
        scores = scores + attention_mask[:, :, rows, :n_keys]
    return torch.softmax(scores, dim=-1, dtype=torch.float32)


def _wrap(base: str):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kwargs):
        # "eager": the model's own eager_attention_forward (some add softcapping), as HF would call it
        kernel = (sys.modules[type(module).__module__].eager_attention_forward if base == "eager"
                  else ALL_ATTENTION_FUNCTIONS[base])
        extra = {"softcap": softcap} if softcap is not None else {}
        out = kernel(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **extra, **kwargs)
        if _capture:
            _capture["out"].append(_rows_of_pattern(module, query, key, attention_mask, scaling, softcap,
                                                    _capture["rows"]))
        return out
    return attention


def install(hf_model) -> None:
    """Route the HF model's attention through the wrapper around its current implementation (idempotent)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    base = hf_model.config._attn_implementation or "eager"
    if base.startswith("chrono_"):
        return
    if base not in ("sdpa", "eager"):  # flash / flex kernels: the rows would need their own mask format
        return
    name = f"chrono_{base}"
    AttentionInterface.register(name, _wrap(base))
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    for config in {id(c): c for c in (hf_model.config, *(m.config for m in hf_model.modules()
                                                          if hasattr(m, "config")))}.values():
        if getattr(config, "_attn_implementation", None) == base:
            config._attn_implementation = name


def require(hf_model) -> None:
    """The diversity regulariser (μ > 0) needs the wrapper: a ConfigError naming the kernel where it is not there."""
    from chrono_membench.errors import ConfigError

    kernel = hf_model.config._attn_implementation
    if not (kernel or "").startswith("chrono_"):
        raise ConfigError(f"the diversity regulariser (chrono.diversity_share or chrono.diversity_weight > 0) takes the "
                          f"attention pattern's rows from inside the attention kernel, which works for 'sdpa' and "
                          f"'eager', not {kernel!r}; load the model with one of those, or set "
                          f"chrono.diversity_share=0 chrono.diversity_weight=0")


@contextmanager
def capture(query_index: torch.Tensor):
    """While open, every attention call through the wrapper appends its pattern rows at `query_index`
    ([B, H, len(query_index), K], float32, in the graph) to the yielded list, one entry per layer in order."""
    if _capture:
        raise RuntimeError("attention_rows.capture is already open")
    rows: list[torch.Tensor] = []
    _capture.update(rows=query_index, out=rows)
    try:
        yield rows
    finally:
        _capture.clear()
