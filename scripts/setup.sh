#!/usr/bin/env bash
# Create .venv beside the checkout and install skupper into it (with test tools when
# asked: `scripts/setup.sh test`). Safe to run again: pip only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extra=""
if [ "${1:-}" = "test" ]; then
  extra="[test]"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra}"
