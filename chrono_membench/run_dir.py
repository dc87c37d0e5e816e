"""A run directory: every path of a run, the one atomic-write helper, and the one-writer lock.

    runs/<name>/
        config.yaml            the resolved config (rewritten on a resume with safe changes)
        metrics.jsonl          every logged value, one JSON object a line (the source of truth)
        resume_log.jsonl       safe config changes made on resume
        sessions.jsonl         each session of run.py that ended normally: its wall time, evals, machine, command
        checkpoints/step_N/    model, optimisers, SAEs, training state (checkpoint.py)
        artifacts/step_N/      SAEs in sae-lens format, features, purity matrices (artifacts.py)
        probe_set.json         the probe documents, decoded
        final_model/           the fine-tuned model in Hugging Face format
        .lock, .lock.owner     held while a process writes the run

Everything that must never be half-written goes through `atomic_write`: written under a temporary name in the
same directory, flushed, then renamed over the final name (a rename is atomic on POSIX), so a reader sees the
old version or the new one, never a mix. A failed write removes the temporary and says what space it needed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import filelock

from chrono_membench.errors import ConfigError, RunWriteError

CheckpointWriteError = RunWriteError  # the name the CLI and earlier code use


def _size(path: Path) -> int:
    if not path.exists():
        return 0
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        with open(f, "rb+") as handle:
            os.fsync(handle.fileno())
    if path.is_dir():
        _fsync_dir(path)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def disk_full(error: BaseException) -> OSError | None:
    """The OSError behind a failed write, if any: torch.save's zip writer turns ENOSPC into a RuntimeError
    ("unexpected pos", the OSError as its context) and safetensors into a SafetensorError naming it in words."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
        return OSError(errno.ENOSPC, "No space left on device")
    return None


def write_error(final: Path, error: OSError, reference: Path | None = None, need: int = 0) -> RunWriteError:
    """RunWriteError naming `final`, the space the write needed (`need` bytes, else the size of `reference`, a
    previous version), the space free and, if given, the previous good version that stays intact."""
    need = need or (_size(reference) if reference is not None else 0)
    space = f"; it needs about {need / 1e9:.2f} GB" if need else ""
    where = next((p for p in (final, *final.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(where).free
    kept = f"; the previous good checkpoint {reference} is intact" if reference is not None else ""
    return RunWriteError(error.errno, f"cannot write {final}: {error.strerror or error}{space}, {free / 1e9:.2f} GB "
                                      f"free{kept}")


@contextmanager
def atomic_write(final: Path, reference: Path | None = None, shared_cache: bool = False, need: int = 0):
    """Yield a temporary path next to `final`; the caller writes a file or a directory there. On success it is
    fsynced and renamed over `final` (a directory `final` is replaced whole); on a failed write (an OSError, or a
    writer's own error caused by one: see disk_full) the temporary is removed and RunWriteError names `final`,
    the space the write needed (estimated from `reference`, a previous version) and the space free.
    shared_cache: several processes may write the same content at once (a model cache under torchrun): each
    writes its own temporary, and the first to finish wins."""
    final = Path(final)
    tmp = final.with_name(f".tmp{os.getpid() if shared_cache else ''}_{final.name}")
    _remove(tmp)  # a leftover of a killed writer
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync_tree(tmp)
        if shared_cache and final.exists():
            _remove(tmp)
            return
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException as e:  # nothing half-written stays
        _remove(tmp)
        cause = disk_full(e) if isinstance(e, Exception) else None
        if cause is None or isinstance(e, RunWriteError):
            raise
        raise write_error(final, cause, reference, need) from None


# Every artifact's file name per checkpoint (artifacts.py writes them, analysis/ reads them; {} = the hook point
# as a file-name part, hooks.file_name)
ARTIFACTS = {
    "sae": "sae_{}",  # sae-lens inference SAE (a directory)
    "features": "features_{}.safetensors",
    "purity": "purity_{}.safetensors",
    "density": "density_{}.safetensors",
    "latents": "latents_{}.safetensors",
    "windows": "windows.json",
    "memorisation_latents": "memorisation_latents_{}.json",
    "selective_latents": "selective_latents_{}.json",
    "probe_scores": "probe_scores.json",  # per eval: each seen window's Δloss, for the forgetting curves
    "crosscoder": "crosscoder_{}.safetensors",  # per checkpoint: the crosscoder's weights (crosscoder.load)
    "crosscoder_latents": "crosscoder_latents_{}.json",  # … and its per-latent readings at the last eval
}


class RunDir:
    """The paths of one run. It creates nothing on its own: writers create what they write."""

    def __init__(self, root: str | Path | RunDir):
        self.root = root.root if isinstance(root, RunDir) else Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def name(self) -> str:
        return self.root.name

    config = property(lambda self: self.root / "config.yaml")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    resume_log = property(lambda self: self.root / "resume_log.jsonl")
    sessions = property(lambda self: self.root / "sessions.jsonl")
    checkpoints = property(lambda self: self.root / "checkpoints")
    artifacts_root = property(lambda self: self.root / "artifacts")
    probe_set = property(lambda self: self.root / "probe_set.json")
    final_model = property(lambda self: self.root / "final_model")
    lock = property(lambda self: self.root / ".lock")

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}"

    def artifacts(self, step: int) -> Path:
        return self.artifacts_root / f"step_{step:08d}"

    def artifact(self, step: int, kind: str, hook: str = "", variant: str = "") -> Path:
        """The file (or directory) of one artifact: kind one of ARTIFACTS, for a hook point (not for windows),
        of an SAE variant's SAEs (sae, features) under variant_<name>/."""
        directory = self.artifacts(step) / (f"variant_{variant}" if variant else "")
        return directory / ARTIFACTS[kind].format(hook.replace(".", "_"))  # hooks.file_name, without torch

    def artifact_steps(self, kind: str, hook: str = "*", variant: str = "") -> list[tuple[int, Path]]:
        """[(step, path)] of every checkpoint's artifact of this kind (hook "*": any hook), oldest first."""
        pattern = str(self.artifact(0, kind, hook, variant).relative_to(self.artifacts(0)))
        found = sorted(self.artifacts_root.glob(f"step_*/{pattern}")) if self.artifacts_root.exists() else []
        step_of = lambda path: int(next(p for p in path.parts if p.startswith("step_"))[5:])  # noqa: E731
        return [(step_of(path), path) for path in found]

    def crosscoder_readings(self, hook: str = "*") -> list[tuple[int, dict]]:
        """[(step, reading)] of the crosscoder's per-latent readings at each checkpoint (crosscoder.py writes them),
        oldest first."""
        return [(step, json.loads(path.read_text())) for step, path in self.artifact_steps("crosscoder_latents", hook)]

    def list_checkpoints(self) -> list[Path]:
        """Complete checkpoint directories, oldest first (temporary ones are never listed)."""
        if not self.checkpoints.exists():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if p.is_dir() and p.name.startswith("step_"))

    def latest_checkpoint_path(self) -> Path | None:
        found = self.list_checkpoints()
        return found[-1] if found else None

    def add_session(self, record: dict) -> None:
        """Append one finished session's record to sessions.jsonl (what it cost and where it ran)."""
        with open(self.sessions, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_sessions(self) -> list[dict]:
        return [json.loads(line) for line in self.sessions.read_text().splitlines()] if self.sessions.exists() else []

    def write_text(self, path: Path, text: str) -> None:
        with atomic_write(path) as tmp:
            tmp.write_text(text)


def check_world_size(run_dir: RunDir, world: int) -> None:
    """--resume under another number of processes than the latest checkpoint was written by: refused (ConfigError)
    from its manifest alone, before anything heavy is imported (checkpoint.check_world_size checks the payload)."""
    latest = run_dir.latest_checkpoint_path()
    try:
        saved = json.loads((latest / "manifest.json").read_text()).get("world_size") if latest else None
    except (OSError, ValueError):
        return  # unreadable: the full check, after loading, decides (and may fall back to an older checkpoint)
    if saved is not None:
        refuse_world_size(latest, saved, world)


def refuse_world_size(path: Path, saved: int, world: int) -> None:
    """The one refusal of a checkpoint written by another number of processes (manifest or payload)."""
    if saved != world:
        raise ConfigError(f"--resume: {path} was written by {saved} process(es); resume it with the same world size "
                          f"(torchrun --nproc_per_node {saved}), not {world}")


def latest_run(out_dir: str | Path) -> RunDir | None:
    """The most recently written run under out_dir that has trained (holds a checkpoint): a run that failed
    before its first checkpoint has nothing to resume."""
    runs = [RunDir(p.parent) for p in Path(out_dir).glob("*/config.yaml")]
    runs = [r for r in runs if r.list_checkpoints()]
    return max(runs, key=lambda r: r.list_checkpoints()[-1].stat().st_mtime, default=None)


def check_unlocked(run_dir: RunDir) -> None:
    """Refuse at once (ConfigError) if a live process holds the run's lock: the CLI asks before its heavy imports
    and model load, then train() takes the lock for real."""
    if RunDir(run_dir).root.is_dir():
        with run_lock(RunDir(run_dir)):
            pass


@contextmanager
def run_lock(run_dir: RunDir):
    """One process writes a run directory at a time: an OS file lock (filelock), which the kernel releases when
    its process dies, so a lock left by a killed run is stale and simply taken. `.lock.owner` names the holder."""
    owner = run_dir.lock.with_name(".lock.owner")
    lock = filelock.FileLock(run_dir.lock, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            holder = json.loads(owner.read_text())
            where = f"pid {holder['pid']}" + ("" if holder.get("host") == socket.gethostname() else f" on {holder['host']}")
        except (OSError, ValueError, KeyError):
            where = "another process"
        raise ConfigError(f"run directory {run_dir.root} is in use by {where} (lock {run_dir.lock}); "
                          "wait for it to finish") from None
    try:
        owner.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        yield
    finally:
        owner.unlink(missing_ok=True)
        run_dir.lock.unlink(missing_ok=True)  # before the release: nobody else holds it, so nobody loses it
        lock.release()
