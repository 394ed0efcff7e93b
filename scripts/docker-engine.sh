#!/usr/bin/env bash
# Start (or stop) a private Docker engine for the demo hub and the tests.
# It never touches a system dockerd: own data-root, exec-root, socket and pidfile.
#   scripts/docker-engine.sh start   -> prints the DOCKER_HOST to use
#   scripts/docker-engine.sh stop
set -euo pipefail
STATE=${JHEXT_DOCKER_STATE:-/var/lib/jupyterhub-ext-docker}
RUN=${JHEXT_DOCKER_RUN:-/run/jupyterhub-ext-docker}
SOCK="$RUN/docker.sock"
PIDFILE="$RUN/dockerd.pid"
export DOCKER_HOST="unix://$SOCK"

ping_engine() { docker -H "$DOCKER_HOST" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

case "${1:-start}" in
start)
  if ping_engine; then echo "$DOCKER_HOST"; exit 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "no Docker engine answers at $DOCKER_HOST and we are not root: cannot start one" >&2
    exit 1
  fi
  command -v dockerd >/dev/null || { echo "dockerd not installed (apt-get install docker.io)" >&2; exit 1; }
  mkdir -p "$STATE/data" "$RUN/exec"
  # the engine must outlive this script (it is stopped with `stop`)
  nohup setsid dockerd \
    --data-root "$STATE/data" --exec-root "$RUN/exec" \
    --host "$DOCKER_HOST" --pidfile "$PIDFILE" \
    --iptables=false --ip-forward=false \
    --storage-driver overlay2 \
    ${JHEXT_DOCKERD_ARGS:-} >"$STATE/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    if ping_engine; then echo "$DOCKER_HOST"; exit 0; fi
    sleep 0.5
  done
  echo "dockerd did not come up; see $STATE/dockerd.log" >&2
  tail -20 "$STATE/dockerd.log" >&2
  exit 1
  ;;
stop)
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
