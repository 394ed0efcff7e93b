#!/usr/bin/env bash
# Run the whole test suite against a real Docker engine (started if none runs).
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k rename  # extra pytest arguments pass through
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DOCKER_HOST=$(bash scripts/docker-engine.sh start | tail -n 1)
export DOCKER_HOST
echo "[test] Docker engine at $DOCKER_HOST"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python scripts/build_image.py >/dev/null
.venv/bin/python -m pytest -ra --durations=30 "$@"
