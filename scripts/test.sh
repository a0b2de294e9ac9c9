#!/usr/bin/env bash
# Installs tfvae with its test, bench and serving extras at the exact versions CI tested
# (constraints.txt; setup.py keeps ranges) and runs the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -c constraints.txt -e ".[test,bench,serving]"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export TFVAE_DATA_DIR="${TFVAE_DATA_DIR:-$(cd .. && pwd)/shared/data}"
# the notebook tests need a Jupyter kernel named python3 (ipykernel registers one)
python3 -m jupyter kernelspec list 2>/dev/null | grep -qw python3 || python3 -m ipykernel install --user
python3 -m ruff check tfvae tests bench
# Two workers (one per core here); each test file stays on one worker (its fixtures are shared).
python3 -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests "$@"
