"""Hook-point names and their checks, without torch: the config refuses a bad name in a fraction of a second
(hooks.py holds what needs the model: widths, flattening, masks, capture; it re-exports these)."""

from __future__ import annotations

import re

from chrono_membench.errors import ConfigError

HOOK_KINDS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_mlp_out", "hook_attn_out", "attn.hook_z")
_FORM = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(k) for k in HOOK_KINDS) + r")$")
ALLOWED_FORMS = ", ".join(f"blocks.<layer>.{k}" for k in HOOK_KINDS)


def check_hook_forms(hook_points: list[str], key: str = "sae.hook_points") -> None:
    """Names only (the layer range needs the model: check_hook_points). Raises ConfigError naming the forms."""
    for hook in hook_points:
        if not _FORM.match(hook):
            raise ConfigError(f"{key}: {hook!r} is not a supported hook point; allowed: {ALLOWED_FORMS}")
    if len(set(hook_points)) != len(hook_points):
        raise ConfigError(f"{key} lists a hook point twice: {hook_points}")


def check_hook_points(hook_points: list[str], n_layers: int, key: str = "sae.hook_points") -> None:
    check_hook_forms(hook_points, key)
    for hook in hook_points:
        layer = layer_of(hook)
        if layer >= n_layers:
            raise ConfigError(f"{key}: {hook!r} names layer {layer}, but the model has layers 0..{n_layers - 1}; "
                              f"allowed: {ALLOWED_FORMS}")


def layer_of(hook: str) -> int:
    """The block a hook point sits in: blocks.6.attn.hook_z → 6."""
    return int(_FORM.match(hook).group(1))


def default_hook_points(n_layers: int) -> list[str]:
    return [f"blocks.{n_layers // 2}.hook_resid_post"]
