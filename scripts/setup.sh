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
.venv/bin/python -m pip install --quiet --no-cache-dir --upgrade pip
# torch/torchvision first, pinned to the builds this machine type serves from local disk;
# pyproject.toml itself only states minimum versions.
if .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  say "torch and torchvision are installed already"
else
  # Where the wheels are not on local disk, pip downloads the CUDA build from PyPI: several GB of wheels that
  # unpack to about 5.5 GB. --no-cache-dir keeps pip from storing a second copy of the download in its cache.
  free_gb=$(df -Pk . | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
  if [ "${free_gb:-0}" -lt 10 ]; then
    say "warning: only ${free_gb} GiB free on this disk; a download of the CUDA build from PyPI needs about 10 GiB"
  fi
  say "installing torch 2.14.1 and torchvision 0.29.1 (large downloads: this step takes the longest; ${free_gb} GiB free)"
  if ! .venv/bin/python -m pip install --quiet --no-cache-dir torch==2.14.1 torchvision==0.29.1; then
    say "error: installing torch failed; if pip reported 'No space left on device', free disk space (about 10 GiB)"
    say "and run scripts/setup.sh again: the .venv it made is reused"
    exit 1
  fi
fi
say "installing hyenapixel (editable) with its extras: $EXTRAS (test tools, analysis, dense prediction, export)"
.venv/bin/python -m pip install --quiet --no-cache-dir -e ".[$EXTRAS]"
say "done: run .venv/bin/hyenapixel train, or .venv/bin/python -m pytest -q"
