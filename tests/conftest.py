"""Shared fixtures: offline always, one tiny tokenizer for the whole session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("CHRONO_MEMBENCH_PNG", "0")


@pytest.fixture(scope="session")
def tokenizer():
    from chrono_membench.config import ModelConfig
    from chrono_membench.model import load_tokenizer

    return load_tokenizer(ModelConfig(name="tiny"))
