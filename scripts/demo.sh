#!/usr/bin/env bash
# The demo hub: JupyterHub with jupyterhub_ext on http://127.0.0.1:8000,
# using jupyterhub_config.example.py. Log in as "admin" (any password).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DOCKER_HOST=$(bash scripts/docker-engine.sh start | tail -n 1)
export DOCKER_HOST
JUPYTERHUB_SINGLEUSER_IMAGE=$(.venv/bin/python scripts/build_image.py | head -n 1)
export JUPYTERHUB_SINGLEUSER_IMAGE
export JUPYTERHUB_AUTHENTICATOR=${JUPYTERHUB_AUTHENTICATOR:-dummy}
mkdir -p .demo
cd .demo
echo "[demo] hub on http://127.0.0.1:8000 - log in as 'admin' with any password (Ctrl-C stops)"
exec ../.venv/bin/jupyterhub -f ../jupyterhub_config.example.py "$@"
