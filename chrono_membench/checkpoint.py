"""Checkpoints: the payload (what a run needs to continue exactly) with paired save and restore.

    checkpoints/step_N/  model.pt   the LM's weights under their Hugging Face names
                         optim.pt   the optimisers' states (under FSDP: gathered full state dicts)
                         state.pt   TrainState counters, world size, RNG states, data (stream, seen log, probes)
                         saes.pt    the SAE bank (weights, Adam, dropout RNG, norm estimates, anchors)
                         manifest.json  sha256 of every file

A directory is renamed into place only when complete (run_dir.atomic_write), and it counts as good only if
every file matches the manifest; a corrupt one is skipped (with a warning) for the previous one.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chrono_membench import distributed
from chrono_membench.distributed import Dist
from chrono_membench.errors import ConfigError
from chrono_membench.model import hf_state_dict, load_hf_state_dict
from chrono_membench.run_dir import (  # noqa: F401 (CheckpointWriteError re-exported)
    CheckpointWriteError, RunDir, atomic_write, refuse_world_size,
)

MANIFEST = "manifest.json"


@dataclass
class TrainState:
    """The loop's counters. `skipped_in_a_row` restarts at 0 on resume (a resumed run gets a fresh budget)."""
    step: int = 0  # finished optimiser updates
    skipped: int = 0  # updates skipped for a non-finite loss or gradient, in total
    skipped_in_a_row: int = 0
    diversity_mu: float = 0.0  # the diversity regulariser's μ, when chrono.diversity_share sets it


def get_rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- the payload
def save(run_dir: RunDir, state: TrainState, model, optimizers, saes, batches, d: Dist, keep_last: int) -> Path:
    """Checkpoint everything needed to continue exactly. Every rank calls it (under FSDP the weights and optimiser
    states are gathered, a collective); rank 0 writes. The stream, seen log, probes, RNG and SAEs are identical on
    every rank (distributed.py), so rank 0's copy resumes them all."""
    payload = {
        "model": hf_state_dict(model),
        "optim": distributed.optimizer_state(model, optimizers, d),
        "state": {"step": state.step, "skipped": state.skipped, "diversity_mu": state.diversity_mu,
                  "world_size": d.world, "rng": get_rng_state(),
                  "batches": batches.state_dict()},
    }
    if saes is not None:
        payload["saes"] = saes.state_dict()
    if d.main:
        write(run_dir, state.step, payload, keep_last, world_size=d.world)
    d.barrier()  # no rank runs ahead of a checkpoint that may still fail (exit 5 on rank 0 stops the job)
    return run_dir.checkpoint(state.step)


def restore_model(ckpt: dict, model, path: Path | None = None) -> None:
    """The LM's weights: before data parallelism wraps or shards it. A checkpoint of another model (a foreign
    checkpoint copied in, another width) is refused in one line naming it (ConfigError: exit 2)."""
    try:
        load_hf_state_dict(model, ckpt["model"])
    except ConfigError as e:
        raise ConfigError(f"--resume: checkpoint {path}: {e}; it was written by another model than this run's "
                          "config builds") from None


def restore_training(ckpt: dict, model, optimizers, saes, batches, d: Dist) -> TrainState:
    """Everything else, once the optimisers exist. → the TrainState to continue from."""
    distributed.load_optimizer_state(model, optimizers, ckpt["optim"], d)
    state = ckpt["state"]
    batches.load_state_dict(state["batches"])
    if saes is not None:
        saes.load_state_dict(ckpt["saes"])
    set_rng_state(state["rng"])
    return TrainState(step=state["step"], skipped=state["skipped"], diversity_mu=state.get("diversity_mu", 0.0))


def check_world_size(path: Path, ckpt: dict, d: Dist) -> None:
    refuse_world_size(path, ckpt["state"].get("world_size", 1), d.world)


# ---- files
def _nbytes(obj) -> int:
    """The tensor bytes in a payload: about what its files will take."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def write(run_dir: RunDir, step: int, payload: dict[str, object], keep_last: int, world_size: int = 1) -> Path:
    """payload: name → picklable object (state dicts); one `<name>.pt` file each, a manifest (with the world size,
    which --resume checks before the heavy imports: manifest_world_size), then renamed."""
    previous, start = run_dir.latest_checkpoint_path(), time.perf_counter()
    with atomic_write(run_dir.checkpoint(step), reference=previous, need=_nbytes(payload)) as tmp:
        tmp.mkdir()
        files = {}
        for name, obj in payload.items():
            path = payload_file(tmp, name)
            with open(path, "wb") as f:
                torch.save(obj, f)
            files[path.name] = _sha256(path)
        # write_s: how long the payload took to write and hash (benchmarks/cost_growth.py reads it)
        (tmp / MANIFEST).write_text(json.dumps({"step": step, "world_size": world_size, "files": files,
                                                "write_s": round(time.perf_counter() - start, 3)}, indent=1))
    for old in run_dir.list_checkpoints()[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return run_dir.checkpoint(step)


REQUIRED = ("model", "optim", "state")  # what every run's checkpoint holds; "saes" too when the run has SAEs


def verify_checkpoint(path: Path, required: tuple[str, ...] = REQUIRED) -> None:
    """Raise ValueError naming what is wrong, or return if the manifest lists every `required` payload entry
    and every file it lists matches."""
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise ValueError(f"{path} has no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{manifest_path} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"{manifest_path} lists no files")
    shed = [n for n in required if n in manifest.get("shed", [])]
    if shed:
        raise ValueError(f"{path}: its {', '.join(shed)} state was deleted when the run finished "
                         "(checkpointing.shed_optimizer); resume from the last checkpoint")
    unlisted = [payload_file(path, n).name for n in required if payload_file(path, n).name not in manifest["files"]]
    if unlisted:
        raise ValueError(f"{manifest_path} does not list {', '.join(unlisted)}")
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.exists():
            raise ValueError(f"{file} is missing")
        if _sha256(file) != digest:
            raise ValueError(f"{file} does not match its checksum")


def shed_optimizer_states(run_dir: RunDir | Path, enabled: bool = True) -> int:
    """When a run has finished: delete the optimiser states of every checkpoint but the last (only a resume from an
    earlier checkpoint needs them, and the last is kept whole), each manifest rewritten first to say so. The earlier
    checkpoints keep their model and SAEs (sparse probing, analysis). → bytes freed."""
    freed = 0
    for path in RunDir(run_dir).list_checkpoints()[:-1] if enabled else []:
        optim, manifest_path = payload_file(path, "optim"), path / MANIFEST
        if not optim.exists():
            continue
        manifest = json.loads(manifest_path.read_text())
        manifest["files"].pop(optim.name, None)
        manifest["shed"] = sorted({*manifest.get("shed", []), "optim"})
        with atomic_write(manifest_path) as tmp:
            tmp.write_text(json.dumps(manifest))
        freed += optim.stat().st_size
        optim.unlink()
    return freed


def load_checkpoint(path: Path, map_location="cpu", required: tuple[str, ...] = REQUIRED) -> dict[str, object]:
    verify_checkpoint(path, required)
    manifest = json.loads((path / MANIFEST).read_text())
    # weights_only=False: these are our own files (checksummed above) holding plain Python state too.
    return {Path(n).stem: torch.load(path / n, map_location=map_location, weights_only=False)
            for n in manifest["files"]}


def latest_good_checkpoint(run_dir: RunDir | Path, map_location="cpu",
                           required: tuple[str, ...] = REQUIRED) -> tuple[Path, dict] | None:
    """The newest checkpoint that verifies and loads; corrupt ones are skipped with a warning."""
    for path in reversed(RunDir(run_dir).list_checkpoints()):
        try:
            return path, load_checkpoint(path, map_location, required)
        except Exception as e:
            warnings.warn(f"skipping corrupt checkpoint {path}: {e}", stacklevel=2)
    return None


def list_checkpoints(run_dir: RunDir | Path) -> list[Path]:
    return RunDir(run_dir).list_checkpoints()


def payload_file(path: Path, name: str) -> Path:
    """The file holding payload entry `name` ("model", "optim", "state", "saes") of the checkpoint at `path`."""
    return path / f"{name}.pt"
