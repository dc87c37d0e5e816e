"""SAE architectures, as a table: each name sae-lens's registry knows, with what the harness needs to know of it
(SAELens keeps one class per architecture behind a registry; this is the harness's side of it). sae.py asks the
row, never the name: which arguments its training config takes from `sae.*`, whether `sae.k` applies, which of
sae-lens's losses is its sparsity penalty, whether it decodes sparsely.

A custom architecture is a module in this folder, named as the architecture, that subclasses sae-lens's
TrainingSAE / TrainingSAEConfig and calls `register(name, training_class, config_class, Architecture(...))`. The
config knows it by its module's name without importing anything (`sae.architecture=<name>`: an unknown name is
refused there, in one line, before any model loads); the module is imported when the SAEs are built.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chrono_membench.errors import ConfigError

if TYPE_CHECKING:
    from chrono_membench.config import SAEConfig


@dataclass(frozen=True)
class Architecture:
    kwargs: Callable[[SAEConfig], dict]  # sae.* → its sae-lens training config's keyword arguments (d_in, d_sae and
    #                                      the device are the bank's)
    k: bool = False  # sae.k sets how many latents fire per token (so it is at most d_sae; checked at the bank)
    sparsity_loss: str | None = None  # the key in sae-lens's losses of its sparsity penalty (sae/<hook>/sparsity);
    #                                   None: the step's L0 is logged there instead
    sparse_decode: bool = False  # ≤ k latents per token: decode by gathering only their decoder rows (sae.py)


ARCHITECTURES: dict[str, Architecture] = {
    "topk": Architecture(lambda c: {"k": c.k}, k=True, sparse_decode=True),
    "batchtopk": Architecture(lambda c: {"k": c.k}, k=True, sparse_decode=True),
    "standard": Architecture(lambda c: {"l1_coefficient": c.sparsity_coefficient}, sparsity_loss="l1_loss"),
    "jumprelu": Architecture(lambda c: {"l0_coefficient": c.sparsity_coefficient}, sparsity_loss="l0_loss"),
}


def known() -> list[str]:
    """Every architecture a config may name: the table's and this folder's modules' (not imported)."""
    return sorted(set(ARCHITECTURES) | {m.name for m in pkgutil.iter_modules(__path__)})


def check_name(name: str, field: str = "sae.architecture") -> None:
    """One line for an architecture nobody registers (config.py calls it: no import of sae-lens needed)."""
    if name not in known():
        raise ConfigError(f"{field}={name!r} is not a registered SAE architecture; allowed: {', '.join(known())} "
                          "(a custom one: a module chrono_membench/saes/<name>.py that calls register)")


def register(name: str, training_class, config_class, architecture: Architecture) -> None:
    """Make `sae.architecture=name` train `training_class` (registered with sae-lens, which then also saves and
    loads it), configured by `architecture`."""
    from sae_lens.registry import register_sae_training_class

    if name in ARCHITECTURES:
        raise ValueError(f"SAE architecture {name!r} is already registered")
    register_sae_training_class(name, training_class, config_class)
    ARCHITECTURES[name] = architecture


def architecture(cfg: SAEConfig) -> tuple[Architecture, type, type]:
    """(its row, sae-lens training class, its config class) for cfg.architecture, importing its module if custom."""
    from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY

    name = cfg.architecture
    if name not in ARCHITECTURES and name in {m.name for m in pkgutil.iter_modules(__path__)}:
        importlib.import_module(f"{__name__}.{name}")  # it registers itself
    check_name(name)
    if name not in ARCHITECTURES or name not in SAE_TRAINING_CLASS_REGISTRY:
        raise ConfigError(f"sae.architecture={name!r}: chrono_membench/saes/{name}.py did not register it")
    return (ARCHITECTURES[name], *SAE_TRAINING_CLASS_REGISTRY[name])
