#!/usr/bin/env bash
# Install everything the demo hub and the tests need on a fresh Debian machine.
# Idempotent: a second run only checks. Needs root for apt (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(npm)
command -v prometheus >/dev/null || need_apt+=(prometheus)
# validates deploy/docker-compose.yml in the tests
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
# the three-node Swarm test bed (scripts/swarm-testbed.sh): ip netns, nsenter/unshare
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nsenter >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    "${need_apt[@]}" uidmap ca-certificates fonts-liberation
fi

if ! command -v configurable-http-proxy >/dev/null; then
  echo "[setup] npm install -g configurable-http-proxy"
  $SUDO npm install -g --no-fund --no-audit configurable-http-proxy
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
# reinstall when pyproject.toml changed since the last install
stamp=.venv/.jupyterhub-ext-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] pip install -e .[test,docs]"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test,docs]" 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import jupyterhub_ext, jupyterhub, dockerspawner" 
  touch "$stamp"
fi
