#!/usr/bin/env bash
# The demo hub: JupyterHub with jupyterhub_ext on http://127.0.0.1:8000,
# using jupyterhub_config.example.py. Log in as the admin name it prints (any
# password): a random name made on the first run and kept in .demo/admin-name.
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
# no built-in admin name, not even in the demo
[ -s admin-name ] || ../.venv/bin/python -c "import secrets; print('demo-' + secrets.token_hex(3))" >admin-name
export JUPYTERHUB_ADMIN_USERS=${JUPYTERHUB_ADMIN_USERS:-$(cat admin-name)}
echo "[demo] hub on http://127.0.0.1:8000 - log in as '${JUPYTERHUB_ADMIN_USERS}' with any password (Ctrl-C stops)"
exec ../.venv/bin/jupyterhub -f ../jupyterhub_config.example.py "$@"
