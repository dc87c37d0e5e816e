"""Small helpers shared by the tests: run the CLI, train a tiny run, read what it logged."""

import contextlib
import io
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from chrono_membench import metric_keys as K
from chrono_membench.config import load_config
from chrono_membench.logging import read_metrics
from chrono_membench.model import quiet_known_warnings

ROOT = Path(__file__).resolve().parents[1]
HOOK = "blocks.1.hook_resid_post"  # the tiny preset's default SAE hook (mid-depth of 2 layers)
# The run every kill / signal / corruption test interrupts, and compares with its uninterrupted twin (made once
# per session: conftest.uninterrupted_run): a checkpoint every 2 steps, an eval every 3. With an SAE variant and
# the SAE warm-up (a checkpoint at step 0) and the crosscoder, so every fault test also checks that those resume
# exactly.
FAULT_ARGS = ["--preset", "tiny", "--no-progress", "train.max_steps=10", "checkpointing.checkpoint_every_n_steps=2",
              "train.eval_every=3", "sae.variants={no_dropout: {chrono.dropout_p_max: 0}}", "sae.warmup_tokens=512",
              "crosscoder.enabled=true"]

# A process that holds a run directory's lock until killed: `python -c HOLD <dir>` prints "held" once it has it.
HOLD = """
import sys, time
from chrono_membench.run_dir import RunDir, run_lock
with run_lock(RunDir(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def tiny(*overrides, ablation=None):
    return load_config("tiny", overrides=list(overrides), ablation=ablation)


def train_tiny(run_dir, *overrides, ablation=None, **kwargs):
    """Train a tiny run in-process; → its metrics records."""
    from chrono_membench.train import train

    train(tiny(*overrides, ablation=ablation), run_dir, progress=False, **kwargs)
    return read_metrics(run_dir / "metrics.jsonl")


def cli(*args, env=None):
    """experiments/run.py in a subprocess, from the repository root."""
    return subprocess.run([sys.executable, "experiments/run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def run_main(*args):
    """experiments/run.py's main() in this process, → what cli() returns (exit code, stdout, stderr), without a new
    interpreter's ≈ 7 s of imports. For what a test reads from the run and its exit code; a test of signals, of a
    kill or of environment variables read at import needs cli()'s own process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("default")  # as the command's own process shows them (pytest would collect them)
        quiet_known_warnings()
        try:
            code = load_script("experiments/run.py").main(list(args))
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    err.write("".join(f"warning: {w.message}\n" for w in said))
    return subprocess.CompletedProcess(["experiments/run.py", *args], code, out.getvalue(), err.getvalue())


def series(metrics, key):
    return [(r["step"], r[key]) for r in metrics if key in r]


def losses(run_dir, key="train/loss"):
    return {r["step"]: r[key] for r in read_metrics(run_dir / "metrics.jsonl") if key in r}


def values(run_dir):
    """Every logged record without the wall-clock timings (which differ between identical runs)."""
    return [{k: v for k, v in r.items() if not K.is_timing(k)} for r in read_metrics(run_dir / "metrics.jsonl")]


def wait_for_step(run_dir, step, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "metrics.jsonl").exists() and any(
                r.get("step", 0) >= step and "train/loss" in r for r in read_metrics(run_dir / "metrics.jsonl")):
            return
        time.sleep(0.05)
    raise AssertionError(f"run did not reach step {step}")


def load_script(relative_path: str):
    """A script of the repository (benchmarks/, experiments/) as a module, without touching sys.path."""
    import importlib.util

    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wandb_records(run_file):
    """The protobuf records of an offline run's .wandb transaction log, read with wandb's own Record message
    (the file is in LevelDB's log format after a 7-byte header; wandb 0.31's Python has no reader of its own)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, pending = Path(run_file).read_bytes(), 7, 32768, b""
    while pos + 7 <= len(data):
        room = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if room < 7 or (kind == 0 and length == 0):  # block trailer / padding
            pos += room
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def differing_payload(a: Path, b: Path, step: int) -> list[str]:
    """Where the checkpoints of `step` in runs a and b differ, the whole payload compared bitwise (weights, optimiser
    states, SAEs, the seen log and stream state, every RNG state): the paths into it that differ; [] if none."""
    import numpy as np
    import torch

    from chrono_membench.checkpoint import load_checkpoint
    from chrono_membench.run_dir import RunDir

    out: list[str] = []

    def walk(x, y, where):
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            same = isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            same = np.array_equal(x, y)
        elif isinstance(x, dict) and isinstance(y, dict):
            if x.keys() != y.keys():
                out.append(f"{where}: keys {sorted(map(str, x.keys() ^ y.keys()))}")
            for k in x.keys() & y.keys():
                walk(x[k], y[k], f"{where}.{k}")
            return
        elif isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{where}[{i}]")
            return
        else:
            same = x == y or (x != x and y != y)  # nan == nan here
        if not same:
            out.append(where)

    walk(*(load_checkpoint(RunDir(r).checkpoint(step)) for r in (a, b)), "payload")
    return out
