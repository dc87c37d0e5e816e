"""Run safety: graceful preemption, resume-config checks, and one writer per run directory.

- SIGTERM / SIGINT: the trainer finishes the optimiser step in flight, checkpoints, flushes, and exits with
  EXIT_PREEMPTED; a second signal exits at once (checkpoints are renamed into place whole, so the last good
  one is never corrupted).
- Resuming with a config that would make the run a different experiment is refused, naming the keys;
  changes that are safe (the horizon, cadences, logging, checkpointing, device) are allowed and recorded.
- A lock file holds the writer's pid and host; a lock left by a process that no longer exists is stale and
  taken over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from chrono_membench.config import ConfigError

EXIT_PREEMPTED = 4
SAFE_TO_CHANGE = ("run.name", "run.device", "run.out_dir", "run.preset", "train.max_steps", "train.eval_every",
                  "train.log_every", "train.chrono_every", "train.max_skipped_in_a_row", "train.compile",
                  "train.peak_tflops", "logging.", "checkpointing.")


class Preempted(RuntimeError):
    """A signal asked the run to stop; a checkpoint of the current step was written."""


class PreemptionGuard:
    """Within this context, the first SIGTERM/SIGINT only sets `requested`; a second one exits at once."""

    def __init__(self):
        self.requested: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested is not None:
            os._exit(128 + signum)  # second signal: leave now; nothing half-written is ever taken for good
        self.requested = signum

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker): no handler, no preemption
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "mixture":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: dict, new: dict) -> tuple[list[str], list[str]]:
    """(unsafe keys, safe keys) whose values differ between the saved and the resumed config."""
    a, b = _flatten(saved), _flatten(new)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    safe = [k for k in changed if k.startswith(SAFE_TO_CHANGE)]
    return [k for k in changed if k not in safe], safe


def check_resume_config(run_dir: Path, saved: dict, new: dict, write_log: bool = True) -> None:
    """Refuse a different experiment; record safe changes in resume_log.jsonl (rank 0 only: write_log)."""
    unsafe, safe = config_changes(saved, new)
    if unsafe:
        a, b = _flatten(saved), _flatten(new)
        diff = "; ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in unsafe)
        raise ConfigError(f"--resume {run_dir}: these changes would make it a different experiment: {diff}")
    if safe and write_log:
        with open(run_dir / "resume_log.jsonl", "a") as f:
            f.write(json.dumps({"time": time.time(), "changed": {k: _flatten(new).get(k) for k in safe},
                                "was": {k: _flatten(saved).get(k) for k in safe}}) + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(run_dir: Path):
    """One process writes a run directory at a time. A stale lock (its process is gone) is taken over."""
    path = run_dir / ".lock"
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            break
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}
            same_host = holder.get("host") == me["host"]
            if holder and (not same_host or _alive(holder["pid"])):
                where = f"pid {holder['pid']}" + ("" if same_host else f" on {holder['host']}")
                raise ConfigError(f"run directory {run_dir} is in use by {where} (lock {path}); "  # noqa: B904
                                  "wait for it, or remove the lock if that process is really gone")
            path.unlink(missing_ok=True)  # stale: its writer died without cleaning up
    else:
        raise ConfigError(f"could not take the lock {path}")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
