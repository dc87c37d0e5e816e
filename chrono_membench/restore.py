"""A finished (or interrupted) run rebuilt for analysis from its last good checkpoint: the model, its SAE bank and
probe set at that step, and the step-0 model (analysis/ablate_latents.py, experiments/validate.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from chrono_membench.checkpoint import latest_good_checkpoint
from chrono_membench.config import config_from_dict, read_yaml
from chrono_membench.model import load_hf_state_dict, load_model
from chrono_membench.probes import ProbeSet
from chrono_membench.run_dir import RunDir
from chrono_membench.sae import SAEBank


@dataclass
class Restored:
    """A finished (or interrupted) run's last good checkpoint, for analysis: the model, its SAE bank and probe
    set at that step, and the step-0 model."""
    cfg: object
    step: int
    model: object
    reference: object
    saes: object
    probes: object
    tokenizer: object


def restore_for_analysis(run_dir: RunDir | Path, device: str | torch.device = "cpu") -> Restored:
    run_dir = RunDir(run_dir)
    found = latest_good_checkpoint(run_dir, required=("model", "state"))
    if found is None:
        raise FileNotFoundError(f"{run_dir.root} has no good checkpoint")
    path, ckpt = found
    cfg = config_from_dict(read_yaml(run_dir.config))
    model, tokenizer = load_model(cfg.model, device, seed=cfg.run.seed)
    load_hf_state_dict(model, ckpt["model"])
    reference = load_model(cfg.model, device, seed=cfg.run.seed)[0].eval().requires_grad_(False)
    saes = SAEBank.for_model(cfg, model, tokenizer, device, reference=reference) if ckpt.get("saes") is not None else None
    if saes is not None:
        saes.load_state_dict(ckpt["saes"])
    probes = ProbeSet.for_run(cfg, tokenizer, fill_unseen=False)  # the state below holds them
    if ckpt["state"]["batches"]["probes"] is not None:
        probes.load_state_dict(ckpt["state"]["batches"]["probes"])
    return Restored(cfg, ckpt["state"]["step"], model.eval(), reference.eval(), saes, probes, tokenizer)
