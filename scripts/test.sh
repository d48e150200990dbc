#!/usr/bin/env bash
# Install into .venv and run the whole test suite (lint first: it is fast).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check src tests bench
.venv/bin/mypy src/skupper bench
.venv/bin/lint-imports
.venv/bin/python -m pytest -q "$@"
