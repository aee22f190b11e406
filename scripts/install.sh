#!/usr/bin/env bash
# Create .venv (if missing) and install rankwise with its pinned, CPU-only stack. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
