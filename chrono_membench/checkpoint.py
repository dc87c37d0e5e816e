"""Checkpoints: written to a temporary directory, checksummed in a manifest, renamed into place.

A directory `checkpoints/step_<N>/` exists only if it was complete when renamed, and it counts as good only
if every file matches the manifest's sha256. A corrupt one is skipped (with a warning) for the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch

MANIFEST = "manifest.json"


class CheckpointWriteError(OSError):
    """A checkpoint or artifact could not be written (full disk, permissions); nothing half-written is left."""


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def write_failed(what: Path, tmp: Path, error: OSError, reference: Path | None) -> CheckpointWriteError:
    """Remove the half-written `tmp`, and say what failed, why, and how much space it needs."""
    shutil.rmtree(tmp, ignore_errors=True)
    need = _dir_size(reference) if reference is not None else 0
    space = f"; it needs about {need / 1e9:.2f} GB" if need else ""
    free = shutil.disk_usage(what.parent if what.parent.exists() else Path("/")).free
    kept = f"; the previous good checkpoint {reference} is intact" if reference is not None else ""
    return CheckpointWriteError(error.errno, f"cannot write {what}: {error.strerror or error}{space}, "
                                f"{free / 1e9:.2f} GB free{kept}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, object], keep_last: int) -> Path:
    """payload: name → picklable object (state dicts); one `<name>.pt` file each."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    previous = list_checkpoints(run_dir)
    try:
        tmp.mkdir()
        files = {}
        for name, obj in payload.items():
            path = tmp / f"{name}.pt"
            with open(path, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            files[path.name] = _sha256(path)
        manifest = tmp / MANIFEST
        manifest.write_text(json.dumps({"step": step, "files": files}, indent=1))
        with open(manifest) as f:
            os.fsync(f.fileno())
        _fsync_dir(tmp)
    except OSError as e:  # ENOSPC, EACCES, …: the previous checkpoints are untouched
        raise write_failed(final, tmp, e, previous[-1] if previous else None) from None
    if final.exists():  # the same step saved again (e.g. the stop after skipped steps)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first (temporary ones are never listed)."""
    root = checkpoint_dir(run_dir)
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))


def verify_checkpoint(path: Path) -> None:
    """Raise ValueError naming what is wrong, or return if every file matches the manifest."""
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise ValueError(f"{path} has no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{manifest_path} is not valid JSON ({e})") from None
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.exists():
            raise ValueError(f"{file} is missing")
        if _sha256(file) != digest:
            raise ValueError(f"{file} does not match its checksum")


def load_checkpoint(path: Path, map_location="cpu") -> dict[str, object]:
    verify_checkpoint(path)
    manifest = json.loads((path / MANIFEST).read_text())
    # weights_only=False: these are our own files (checksummed above) holding plain Python state too.
    return {Path(n).stem: torch.load(path / n, map_location=map_location, weights_only=False)
            for n in manifest["files"]}


def latest_good_checkpoint(run_dir: Path, map_location="cpu") -> tuple[Path, dict] | None:
    """The newest checkpoint that verifies and loads; corrupt ones are skipped with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, map_location)
        except Exception as e:
            warnings.warn(f"skipping corrupt checkpoint {path}: {e}", stacklevel=2)
    return None
