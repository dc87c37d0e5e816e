"""Run safety: graceful preemption and resume-config checks (the one-writer lock is in run_dir.py).

- SIGTERM / SIGINT: the trainer finishes the optimiser step in flight, checkpoints, flushes, and exits with
  EXIT_PREEMPTED; a second signal exits at once: with EXIT_PREEMPTED if that checkpoint is complete, else with
  128 + the signal (checkpoints are renamed into place whole, so the last good one is never corrupted).
- Resuming with a config that would make the run a different experiment is refused, naming the keys and,
  where a field says so, why; which keys are safe to change is marked on the config's fields themselves
  (config.py, `on_resume` metadata). Safe changes are recorded in resume_log.jsonl.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

from chrono_membench.config import ConfigError, resume_rule
from chrono_membench.errors import EXIT_PREEMPTED, Preempted  # noqa: F401  (their home is the fault table)
from chrono_membench.run_dir import RunDir



def exit_with(code: int) -> None:
    """sys.exit(code) once a command's work is done and closed (files, wandb, the data worker), without the ≈ 2 s
    the interpreter's last garbage collections take over torch's and transformers' objects at exit (measured on the
    2-core CPU: 8.5 s → 6.4 s for importing the package and leaving): frozen objects are not collected again."""
    gc.freeze()
    sys.exit(code)


def _exit_preempted(signum, frame):
    os._exit(EXIT_PREEMPTED)


class PreemptionGuard:
    """Within this context, the first SIGTERM/SIGINT only sets `requested`; a second one exits at once."""

    def __init__(self):
        self.requested: int | None = None
        self.checkpointed = False  # set once the checkpoint of the stop is complete: any later signal exits 4
        self.checkpoint: Path | None = None  # the stop's checkpoint: renamed into place whole, so once it is a
        #                                      directory it is complete, even before save() has returned
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested is not None:  # second signal: leave now; nothing half-written is ever taken for good
            done = self.checkpointed or (self.checkpoint is not None and self.checkpoint.is_dir())
            os._exit(EXIT_PREEMPTED if done else 128 + signum)
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
            # after a stop whose checkpoint is complete the process is leaving: a late signal (during teardown,
            # wandb's finish, interpreter exit) must not turn exit 4 into a death by signal
            signal.signal(sig, _exit_preempted if self.checkpointed else handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""

    def stopped(self, step: int, path: Path, world: int, run_root: Path) -> Preempted:
        """The stop's checkpoint `path` is complete: from here on, whatever else arrives, the exit code is 4.
        → the exception that ends the run, saying how to continue it."""
        self.checkpointed = True
        by = self.name or "a signal to another rank"
        launcher = f"torchrun --nproc_per_node {world}" if world > 1 else "python"
        return Preempted(f"stopped by {by} at step {step}; checkpoint {path}; "
                         f"continue with: {launcher} experiments/run.py --resume {run_root}")


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "mixture":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def keys_added_since(saved: dict, device_type: str) -> dict:
    """A saved config.yaml with the keys added since filled in as the run that wrote it ran: before train.autocast,
    bf16 on CUDA only; before sae.autocast, fp32 SAE steps."""
    saved.setdefault("train", {}).setdefault("autocast", "bf16" if device_type == "cuda" else "fp32")
    saved.setdefault("sae", {}).setdefault("autocast", "fp32")
    return saved


def config_changes(saved: dict, new: dict) -> tuple[dict[str, str], list[str]]:
    """({unsafe key: why}, [safe keys]) among the keys whose values differ between the saved and the new config."""
    a, b = _flatten(saved), _flatten(new)
    unsafe, safe = {}, []
    for key in sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)):
        rule = resume_rule(key)
        why = rule(saved) if callable(rule) else (None if rule else "")
        if why is None:
            safe.append(key)
        else:
            unsafe[key] = why
    return unsafe, safe


def check_resume_config(run_dir: RunDir, saved: dict, new: dict, write_log: bool = True) -> None:
    """Refuse a different experiment; record safe changes in resume_log.jsonl (rank 0 only: write_log)."""
    unsafe, safe = config_changes(saved, new)
    if unsafe:
        a, b = _flatten(saved), _flatten(new)
        diff = "; ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" + (f" ({why})" if why else "") for k, why in unsafe.items())
        raise ConfigError(f"--resume {run_dir.root}: these changes would make it a different experiment: {diff}")
    if safe and write_log:
        with open(run_dir.resume_log, "a") as f:
            f.write(json.dumps({"time": time.time(), "changed": {k: _flatten(new).get(k) for k in safe},
                                "was": {k: _flatten(saved).get(k) for k in safe}}) + "\n")
