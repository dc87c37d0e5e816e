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


# The slowest modules first (seconds of test time each, 2-core Xeon, 2026-12-08): pytest-xdist hands out whole
# modules (--dist loadscope, --no-loadscope-reorder in pyproject.toml), each to the first worker with room, so with
# the long ones first the last ones out are short and neither worker idles long at the end (in collection order,
# which puts test_validation.py last, the run's last 90 s had one worker idle). The rest keep collection order.
SLOW_FIRST = ("faults/test_real_faults.py",  # 180
              "test_analysis.py",  # 150
              "test_distributed.py",  # 120: two torchrun ranks on the cores the other worker uses too
              "faults/test_preemption_and_resume_safety.py",  # 95
              "test_validation.py", "test_train.py",  # 90 each
              "test_plan.py", "test_sae.py", "test_experiments.py",  # 60-75
              "test_evaluation.py", "data/test_stream.py", "chrono/test_blind.py",  # 45-50
              "test_checkpoint.py", "test_crosscoder.py", "test_logging.py")  # 25-37


def pytest_collection_modifyitems(config, items):
    rank = {f"tests/{name}": i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: a module keeps its order


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
