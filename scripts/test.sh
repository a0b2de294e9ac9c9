#!/usr/bin/env bash
# Installs tfvae with its test and bench extras and runs the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test,bench]"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export TFVAE_DATA_DIR="${TFVAE_DATA_DIR:-$(cd .. && pwd)/shared/data}"
python3 -m ruff check tfvae tests bench
python3 -m pytest -q -p no:cacheprovider tests "$@"
