"""torchrun on CPU with gloo, 2 processes: DDP and FSDP2 train on exactly the rows one process with the same
global batch trains on (same losses, same SAE and LM weights to fp tolerance), and a 2-rank run resumes
exactly. Each run is a real `torchrun experiments/run.py` subprocess."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from chrono_membench import metric_keys as K
from chrono_membench.checkpoint import list_checkpoints
from chrono_membench.logging import read_metrics

ROOT = Path(__file__).resolve().parents[1]
# baseline: no temporal dropout (each rank draws masks for its own tokens, so a 2-rank run's SAEs cannot be
# bitwise those of one process with dropout on) and no diversity regulariser (a nonlinear function of the batch)
ARGS = ["--preset", "tiny", "--ablation", "baseline", "--no-progress", "train.max_steps=6", "train.eval_every=6",
        "checkpointing.checkpoint_every_n_steps=3", "chrono.canary_repetitions=[2]",
        "sae.warmup_tokens=512"]  # the SAE warm-up, its rows split over the ranks like a training step's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(*args, ranks: int = 2) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())] if ranks > 1 else [sys.executable]
    return [*launcher, "experiments/run.py", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, ranks: int = 2):
    return subprocess.run(command(*args, ranks=ranks), cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)


def ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def series(run_dir, key):
    return [r[key] for r in read_metrics(run_dir / "metrics.jsonl") if key in r]


def without_timings(run_dir):
    return [{k: v for k, v in r.items() if not K.is_timing(k)}
            for r in read_metrics(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: one process, micro-batch 2 (= 2 ranks × micro-batch 1)."""
    out = tmp_path_factory.mktemp("single")
    ok(run(*ARGS, f"run.out_dir={out}", "run.name=r", "train.micro_batch=2", ranks=1))
    return out / "r"


def final_checkpoint(run_dir):
    return {name: torch.load(run_dir / "checkpoints" / "step_00000006" / f"{name}.pt", weights_only=False)
            for name in ("model", "saes")}


def assert_same_training(run_dir, reference, rel=1e-4):
    """Equal to fp tolerance: the ranks sum gradients in another order (FSDP's reduce-scatter more so), and
    lr 3e-3 on a random model amplifies the last bits over 6 steps; training on other rows differs far more."""
    for key in ("train/loss", "train/grad_norm", "val/loss", "sae/blocks.1.hook_resid_post/mse",
                "mem/canary_exposure/2", "mem/loss/b0", "mem/token_match/b1", "mem/loss/unseen", "mem/loss_gap",
                "chrono/blocks.1.hook_resid_post/temporal_purity", "chrono/blocks.1.hook_resid_post/source_purity"):
        got, want = series(run_dir, key), series(reference, key)
        assert len(got) == len(want) > 0, key
        # Purity summaries average over latents whose top-k membership can flip on a near-tie: SAE weights that
        # agree to ~4e-6 (asserted below at rel) moved them by 2.5e-4 once (measured), so they get 10 × rel.
        tolerance = 10 * rel if "purity" in key else rel
        assert got == pytest.approx(want, rel=tolerance, abs=tolerance / 10), key
    a, b = final_checkpoint(run_dir), final_checkpoint(reference)
    # Adam divides each gradient by its running √v: elements whose gradients are near zero carry the summation-order
    # noise of DDP/FSDP into their update amplified. With transformers 5.24 that left 7 of 6.3M LM weights 2.3e-5
    # apart (measured), beyond atol rel/10; training on other rows moves nearly every weight by ~lr (3e-3).
    strict_misses, elements = 0, 0
    for key, value in b["model"].items():
        torch.testing.assert_close(a["model"][key], value, rtol=rel, atol=rel, msg=key)
        strict_misses += int((~torch.isclose(a["model"][key], value, rtol=rel, atol=rel / 10)).sum())
        elements += value.numel()
    assert strict_misses <= 1e-5 * elements, (strict_misses, elements)
    for hook, state in b["saes"]["saes"].items():
        for key, value in state.items():
            torch.testing.assert_close(a["saes"]["saes"][hook][key], value, rtol=rel, atol=rel / 10, msg=key)
    assert (run_dir / "final_model" / "config.json").exists()
    assert len(list((run_dir / "artifacts").glob("step_*/sae_*"))) == 3  # once (rank 0) per checkpoint: 0 (warm), 3, 6


def test_ddp_two_ranks_match_one_process_and_resume_exactly(tmp_path, one_process):
    ok(run(*ARGS, f"run.out_dir={tmp_path}", "run.name=ddp", "train.micro_batch=1"))
    run_dir = tmp_path / "ddp"
    assert_same_training(run_dir, one_process)
    assert series(run_dir, "train/tokens_per_s") and not series(run_dir, "train/mfu")  # no peak FLOP/s on CPU

    uninterrupted = without_timings(run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step_00000006")  # as if the job died after step 3's checkpoint
    shutil.rmtree(run_dir / "final_model")
    proc = ok(run("--resume", str(run_dir), "--no-progress"))
    assert "resumed from" in proc.stdout
    assert without_timings(run_dir) == uninterrupted

    proc = run("--resume", str(run_dir), "--no-progress", ranks=1)
    assert proc.returncode == 2 and "written by 2 process(es)" in proc.stderr


def test_fsdp2_two_ranks_match_one_process_and_resume_exactly(tmp_path, one_process):
    ok(run(*ARGS, f"run.out_dir={tmp_path}", "run.name=fsdp", "train.micro_batch=1", "train.parallel=fsdp"))
    run_dir = tmp_path / "fsdp"
    assert_same_training(run_dir, one_process, rel=1e-3)
    uninterrupted = without_timings(run_dir)  # the optimiser state went through torch.distributed.checkpoint
    shutil.rmtree(run_dir / "checkpoints" / "step_00000006")
    ok(run("--resume", str(run_dir), "--no-progress"))
    assert without_timings(run_dir) == uninterrupted


def test_sigterm_to_torchrun_stops_every_rank_at_one_step_and_resumes(tmp_path):
    """torchrun forwards SIGTERM to both ranks, which may see it at different steps: they must agree on one
    step, checkpoint it once and stop; the resumed run then logs every step exactly once."""
    run_dir = tmp_path / "sig"
    args = ("--preset", "tiny", "--no-progress", f"run.out_dir={tmp_path}", "run.name=sig", "train.micro_batch=1",
            "train.max_steps=16", "train.eval_every=1000", "checkpointing.checkpoint_every_n_steps=1000")
    proc = subprocess.Popen(command(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 300
    while not ((run_dir / "metrics.jsonl").exists() and any(
            "train/loss" in r and r["step"] >= 3 for r in read_metrics(run_dir / "metrics.jsonl"))):
        assert proc.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0  # torchrun reports its own SignalException; the workers exited 4
    (checkpoint,) = list_checkpoints(run_dir)
    stopped = int(checkpoint.name.split("_")[1])
    assert 3 <= stopped < 16
    assert stderr.count(f"preempted: stopped by SIGTERM at step {stopped}") == 1  # rank 0 alone reports
    assert max(r["step"] for r in read_metrics(run_dir / "metrics.jsonl")) == stopped

    ok(run("--resume", str(run_dir), "--no-progress"))
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "train/loss" in r] == list(range(1, 17))
    # the diversity regulariser's μ, calibrated from both ranks' q/k gradient norms (autograd.grad under DDP)
    mus = [r["chrono/attn_diversity/mu"] for r in read_metrics(run_dir / "metrics.jsonl") if "chrono/attn_diversity/mu" in r]
    assert len(mus) >= 5 and all(0 < m < float("inf") for m in mus)


def test_padded_share_splits_items_disjointly_and_pads_to_equal_counts():
    from chrono_membench.distributed import Dist

    shares = [Dist(rank=r, world=2).padded_share(5) for r in range(2)]
    assert [i.tolist() for i, _ in shares] == [[0, 2, 4], [1, 3, 0]]  # equal counts: FSDP needs equal forwards
    assert [w.tolist() for _, w in shares] == [[1, 1, 1], [1, 1, 0]]  # the padding item counts nowhere
    index, weight = Dist().padded_share(5)
    assert index.tolist() == [0, 1, 2, 3, 4] and weight.tolist() == [1] * 5
