#!/usr/bin/env bash
# The performance suite: every benchmark against real Docker, each against a
# baseline measured in the same run; writes docs/performance.md (~15 min on
# 2 cores). `bash scripts/bench.sh --quick` is the smoke mode the tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DOCKER_HOST=$(bash scripts/docker-engine.sh start | tail -n 1)
export DOCKER_HOST
exec .venv/bin/python bench/run.py "$@"
