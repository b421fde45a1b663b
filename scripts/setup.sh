#!/usr/bin/env bash
# Create the project-local virtual environment in .venv and install hyenapixel with its test tools.
# Safe to run again: an existing .venv is reused and only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=dev,analysis,dense,export
say() { echo "setup.sh: $*"; }
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv with $PY"
  "$PY" -m venv .venv
else
  say "reusing the virtual environment .venv"
fi
say "upgrading pip"
.venv/bin/python -m pip install --quiet --upgrade pip
# torch/torchvision first, pinned to the builds this machine type serves from local disk;
# pyproject.toml itself only states minimum versions.
if .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  say "torch and torchvision are installed already"
else
  say "installing torch 2.14.1 and torchvision 0.29.1 (large downloads: this step takes the longest)"
  .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
fi
say "installing hyenapixel (editable) with its extras: $EXTRAS (test tools, analysis, dense prediction, export)"
.venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
say "done: run .venv/bin/hyenapixel train, or .venv/bin/python -m pytest -q"
