"""Shared fixtures: offline always, one tiny tokenizer for the whole session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("CHRONO_MEMBENCH_PNG", "0")
# One intra-op thread per process: the tests run on 2 pytest-xdist workers on 2 cores, and their tiny models gain
# nothing from a second thread; two workers × two OpenMP threads (× the CLI subprocesses they start) spin-wait
# for each other (measured: 1.5× the CPU time of a sequential run). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


NEEDS_GB = 2.0  # the peak of the tests' temporary directories (real checkpoints, each passing test's removed at once)


def pytest_sessionstart(session):
    """Before any test: room for what the tests write, or one line saying where and how much (rather than dozens
    of failures of a disk that is full before the tests start)."""
    import shutil
    import tempfile
    from pathlib import Path

    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controller has checked
        return
    where = Path(session.config.option.basetemp or tempfile.gettempdir()).resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free / 1e9
    if free < NEEDS_GB:
        pytest.exit(f"the tests write real checkpoints under {where} and need about {NEEDS_GB:g} GB free there; "
                    f"{free:.2f} GB free (free some, or point TMPDIR or --basetemp at a roomier disk)", returncode=1)


@pytest.fixture(scope="session")
def tokenizer():
    from chrono_membench.config import ModelConfig
    from chrono_membench.model import load_tokenizer

    return load_tokenizer(ModelConfig(name="tiny"))


@pytest.fixture(scope="session")
def uninterrupted_run(tmp_path_factory):
    """helpers.FAULT_ARGS run once, start to end, by the CLI → (run directory, wall seconds)."""
    import time

    from helpers import FAULT_ARGS, cli

    out = tmp_path_factory.mktemp("uninterrupted")
    start = time.time()
    done = cli(*FAULT_ARGS, f"run.out_dir={out}", "run.name=straight")
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "straight", time.time() - start
