"""Hook points: the names SAEs train on, their activation widths, flattening to [tokens, width], token masks.

TransformerLens hook names are the public vocabulary. The kinds an SAE can sit on (all fire through the
TransformerBridge, also when HF's own attention kernel runs: `attn.hook_z` is the input of the output
projection, reshaped per head):

    blocks.L.hook_resid_pre    residual stream entering block L
    blocks.L.hook_resid_mid    residual stream between attention and MLP
    blocks.L.hook_resid_post   residual stream leaving block L
    blocks.L.hook_mlp_out      the MLP's output
    blocks.L.hook_attn_out     the attention's output
    blocks.L.attn.hook_z       per-head attention outputs before W_O, [.., n_heads, d_head] flattened to
                               n_heads·d_head (Kissane et al. 2024)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import contextmanager

import torch

from chrono_membench.data.sources import PAD_SOURCE
from chrono_membench.errors import ConfigError
from chrono_membench.hook_names import (  # noqa: F401  (the names, re-exported: hooks is where callers look)
    ALLOWED_FORMS, HOOK_KINDS, check_hook_forms, check_hook_points, default_hook_points, layer_of,
)

def pattern_names(n_layers: int) -> list[str]:
    """The attention-pattern hook of every layer (attention metrics and the diversity regulariser)."""
    return [f"blocks.{l}.attn.hook_pattern" for l in range(n_layers)]


def file_name(hook: str) -> str:
    """A hook point as a file-name part: blocks.6.attn.hook_z → blocks_6_attn_hook_z (the one conversion)."""
    return hook.replace(".", "_")


def flatten(activation: torch.Tensor) -> torch.Tensor:
    """[batch, pos, width] or [batch, pos, heads, d_head] → [batch·pos, width]."""
    return activation.flatten(2).flatten(0, 1) if activation.ndim == 4 else activation.flatten(0, 1)


def unflatten(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of flatten, back to the shape (and dtype) of the hook's activation `like`."""
    return x.reshape(like.shape).to(like.dtype)


_HOOK_DICTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextmanager
def attached(model, fwd_hooks: dict[str, Callable]):
    """model.hooks(fwd_hooks=...) for {hook name: fn(tensor, hook)}, each fn called under the name it was given.
    Why not model.hooks itself: TransformerBridge.hooks rebuilds its hook dict (with every alias) once per hook
    *name* it is given, and once per name *filter*; for SmolLM2's 30 pattern hooks that cost 0.6 s on every entry
    (≈ 8 % of a demo step on this CPU, more of a GPU step), against 0.06 s for one filter."""
    if model not in _HOOK_DICTS:  # the bridge's hook points do not change after it is built
        _HOOK_DICTS[model] = model.hook_dict
    points = _HOOK_DICTS[model]
    by_point = {id(points[name]): name for name in fwd_hooks if name in points}
    missing = [name for name in fwd_hooks if name not in points]
    if missing:
        raise KeyError(f"no hook point named {missing} in this model")

    def dispatch(tensor, hook):  # the bridge reports its canonical name (e.g. blocks.L.hook_out): key by identity
        return fwd_hooks[by_point[id(hook)]](tensor, hook=hook)

    with model.hooks(fwd_hooks=[(lambda name: name in fwd_hooks, dispatch)]):
        yield


@torch.no_grad()
def activation_widths(model, hook_points: list[str]) -> dict[str, int]:
    """Each hook's width, measured with one two-token forward (as sparsify's resolve_widths does): no
    assumption that it is d_model (hook_z is n_heads·d_head; MLP widths may differ)."""
    widths: dict[str, int] = {}
    saver = lambda name: lambda t, hook: widths.__setitem__(name, flatten(t).shape[-1])  # noqa: E731
    device = next(model.parameters()).device
    with attached(model, {h: saver(h) for h in hook_points}):
        model(torch.zeros(1, 2, dtype=torch.long, device=device))
    missing = [h for h in hook_points if h not in widths]
    if missing:
        raise ConfigError(f"sae.hook_points: {missing} did not fire in a forward through this model")
    return widths


def token_mask(tokens: torch.Tensor, source_index: torch.Tensor, bos_token_id: int | None = None) -> torch.Tensor:
    """[batch, pos] bool: the tokens an SAE may train and be measured on: real (non-padding) tokens, except
    position 0 of every row and BOS tokens (attention sinks: their activation norms are orders of magnitude
    above the rest and would dominate every SAE number). Outlier norms elsewhere are the SAE bank's to mask."""
    mask = source_index != PAD_SOURCE
    mask[:, 0] = False
    if bos_token_id is not None:
        mask &= tokens != bos_token_id
    return mask


class CaptureBuffer:
    """Activations [tokens, width] appended forward after forward into one tensor that is allocated once (grown by
    doubling when a step brings more tokens) and reused every step: no allocation per micro-step and no
    concatenation before the SAE step. `tensor` is a view, valid until the next clear() and append()."""

    def __init__(self):
        self._data: torch.Tensor | None = None
        self.n = 0

    def append(self, source: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Append source[rows] (all of source when rows is None) of a [tokens, width] tensor."""
        m = len(source) if rows is None else len(rows)
        data = self._data
        if data is None or self.n + m > len(data) or data.dtype != source.dtype or data.device != source.device:
            grown = source.new_empty((max(self.n + m, 2 * len(data) if data is not None else 0), source.shape[1]))
            if self.n:
                grown[:self.n] = data[:self.n]
            self._data = data = grown
        out = data.narrow(0, self.n, m)
        if rows is None:
            out.copy_(source)
        else:
            torch.index_select(source, 0, rows, out=out)
        self.n += m

    @property
    def tensor(self) -> torch.Tensor:
        return self._data[:self.n] if self._data is not None else torch.empty(0, 0)

    def clear(self) -> None:
        self.n = 0

    def __len__(self) -> int:
        return self.n


@contextmanager
def capture(model, hook_points: list[str], mask: torch.Tensor | None = None,
            into: dict[str, CaptureBuffer] | None = None):
    """During the forwards inside this context, append each hook's detached activations as [tokens, width] (only
    the tokens where `mask` [batch, pos] is true) to its CaptureBuffer (`into`, or new ones). Yields hook → buffer."""
    captured = into if into is not None else {h: CaptureBuffer() for h in hook_points}
    rows = None if mask is None else mask.flatten().nonzero().squeeze(1)

    def saver(name):
        def save(tensor, hook):
            captured[name].append(flatten(tensor.detach()), rows)
        return save

    with attached(model, {h: saver(h) for h in hook_points}):
        yield captured
