"""SAE architectures, as a table: each name sae-lens's registry knows, with the arguments its training config takes
from `sae.*` (SAELens keeps one class per architecture behind a registry; this is the harness's side of it).

A custom architecture is a module in this folder that subclasses sae-lens's TrainingSAE / TrainingSAEConfig and
calls `register(name, training_class, config_class, kwargs)`; every module here is imported with the package, so
`sae.architecture=<name>` then works like a built-in one. An unknown name is a config error naming the table.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY, register_sae_training_class

from chrono_membench.config import ConfigError, SAEConfig

# architecture → the keyword arguments of its sae-lens training config that come from sae.* (d_in, d_sae and the
# device are the bank's)
ARCHITECTURES: dict[str, Callable[[SAEConfig], dict]] = {
    "topk": lambda c: {"k": c.k},
    "batchtopk": lambda c: {"k": c.k},
    "standard": lambda c: {"l1_coefficient": c.sparsity_coefficient},
    "jumprelu": lambda c: {"l0_coefficient": c.sparsity_coefficient},
}


def register(name: str, training_class, config_class, kwargs: Callable[[SAEConfig], dict]) -> None:
    """Make `sae.architecture=name` train `training_class` (registered with sae-lens, which then also saves and
    loads it) with `kwargs(sae_config)` passed to `config_class`."""
    if name in ARCHITECTURES:
        raise ValueError(f"SAE architecture {name!r} is already registered")
    register_sae_training_class(name, training_class, config_class)
    ARCHITECTURES[name] = kwargs


def training_class(cfg: SAEConfig) -> tuple[type, type, dict]:
    """(sae-lens training class, its config class, the config's keyword arguments from sae.*) for cfg.architecture."""
    if cfg.architecture not in ARCHITECTURES or cfg.architecture not in SAE_TRAINING_CLASS_REGISTRY:
        raise ConfigError(f"sae.architecture={cfg.architecture!r} is not a registered SAE architecture; allowed: "
                          f"{', '.join(sorted(a for a in ARCHITECTURES if a in SAE_TRAINING_CLASS_REGISTRY))} "
                          "(a custom one: a module in chrono_membench/saes/ that calls register)")
    sae_class, config_class = SAE_TRAINING_CLASS_REGISTRY[cfg.architecture]
    return sae_class, config_class, ARCHITECTURES[cfg.architecture](cfg)


for _module in pkgutil.iter_modules(__path__):  # custom architectures register themselves on import
    importlib.import_module(f"{__name__}.{_module.name}")
