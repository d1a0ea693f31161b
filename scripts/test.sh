#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotent), checks
# the tree with ruff and mypy, then runs the whole pytest suite against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
