#!/usr/bin/env bash
# A three-node Docker Swarm on one machine, for the tests (issue 14, "Test bed").
#
#   scripts/swarm-testbed.sh up                 # idempotent; prints nothing but progress on stderr
#   scripts/swarm-testbed.sh status             # exit 0 when all three nodes are Ready
#   scripts/swarm-testbed.sh env                # shell lines: JHX_SWARM_* and DOCKER_HOST of the manager
#   scripts/swarm-testbed.sh load-image REF...  # copy images from the private test engine onto every node
#   scripts/swarm-testbed.sh push-image REF...  # put images into the registry on node 1, print REF@digest
#   scripts/swarm-testbed.sh down               # removes everything `up` made
#
# Layout (see docs in ../shared/reference.md, "Docker Swarm on one machine"):
#   bridge jhxsw0 10.77.0.1/24 in the root namespace (the only change there);
#   network namespaces jhxsw1..3, veth eth0 10.77.0.11/.12/.13, NO default route;
#   one Debian dockerd per node (own data-root, exec-root, socket, pidfile, key,
#   cgroup parent, containerd), started with nsenter --net + unshare --mount --uts
#   so the node has its own hostname (node1..3) and a sysfs of its own netns;
#   node1 is the manager, node2 and node3 workers; node2 advertises two fake GPUs
#   as generic resources (NVIDIA-GPU=GPU-fake0/1); node labels jhext.node=nodeN,
#   gpu=true on node2; an attachable overlay network jhext-swarm (endpoint mode
#   dnsrr / mode=host ports: this kernel has no IPVS, so no routing mesh).
# Images reach the nodes by `docker save | docker load` (same image ID on every
# node); services must be created without registry resolution (CLI:
# --no-resolve-image) and find the local image (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1).
# `up` also starts a registry on node 1 (10.77.0.11:5000, every node trusts it
# as insecure): Debian's docker-registry, fetched once with `apt-get download`
# and unpacked with `dpkg-deb -x` into a cache (no system install); if it
# cannot be had, the bed comes up without it (`env` then prints an empty
# JHX_SWARM_REGISTRY).
set -euo pipefail

N=3
BR=jhxsw0
BR_ADDR=10.77.0.1
NET_PREFIX=10.77.0
NS_PREFIX=jhxsw
ADDR_POOL=10.78.0.0/16
OVERLAY=jhext-swarm
RUN_DIR=${JHX_SWARM_RUN:-/run/jhx-swarm}
# a tmpfs of its own unless JHX_SWARM_TMPFS=0 (then on disk)
STATE_DIR=${JHX_SWARM_STATE:-/var/lib/jhx-swarm}
SOURCE_HOST=${JHX_SWARM_SOURCE_HOST:-unix:///run/jupyterhub-ext-docker/docker.sock}
# the Debian 20.10 CLI that matches the engine (/usr/local/bin/docker may be newer)
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker || true)
GPU_NODE=2
REGISTRY_PORT=5000
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/jupyterhub-ext

log() { echo "[swarm-testbed] $*" >&2; }
die() { echo "[swarm-testbed] ERROR: $*" >&2; exit 1; }

ns() { echo "$NS_PREFIX$1"; }
addr() { echo "$NET_PREFIX.1$1"; }
sock() { echo "unix://$RUN_DIR/node$1/docker.sock"; }
d() { local n=$1; shift; "$DOCKER" -H "$(sock "$n")" "$@"; }
ping_node() { d "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

need() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces, dockerd)"
  local c
  for c in ip nsenter unshare dockerd; do
    command -v "$c" >/dev/null || die "missing command: $c"
  done
  [ -n "$DOCKER" ] || die "missing command: docker (Debian docker.io CLI)"
}

# --- network --------------------------------------------------------------

net_up() {
  if ! ip link show "$BR" >/dev/null 2>&1; then
    ip link add "$BR" type bridge
  fi
  ip addr show dev "$BR" | grep -q "inet $BR_ADDR/24" || ip addr add "$BR_ADDR/24" dev "$BR"
  ip link set "$BR" up
  local i n v
  for i in $(seq 1 $N); do
    n=$(ns "$i") v="${NS_PREFIX}h$i"
    [ -e "/run/netns/$n" ] || ip netns add "$n"
    if ! ip -n "$n" link show eth0 >/dev/null 2>&1; then
      ip link del "$v" 2>/dev/null || true
      ip link add "$v" type veth peer name eth0 netns "$n"
    fi
    ip link set "$v" master "$BR" up
    ip -n "$n" link set lo up
    ip -n "$n" addr show dev eth0 | grep -q "inet $(addr "$i")/24" \
      || ip -n "$n" addr add "$(addr "$i")/24" dev eth0
    ip -n "$n" link set eth0 up
    # never a default route: nothing in a node may reach a real network
    ip -n "$n" route del default 2>/dev/null || true
  done
}

# --- engines --------------------------------------------------------------

write_config() {
  local i=$1 gr='[]'
  [ "$i" = "$GPU_NODE" ] && gr='["NVIDIA-GPU=GPU-fake0", "NVIDIA-GPU=GPU-fake1"]'
  mkdir -p "$STATE_DIR/node$i/data" "$RUN_DIR/node$i/exec"
  cat >"$STATE_DIR/node$i/daemon.json" <<EOF
{
  "data-root": "$STATE_DIR/node$i/data",
  "exec-root": "$RUN_DIR/node$i/exec",
  "pidfile": "$RUN_DIR/node$i/dockerd.pid",
  "hosts": ["$(sock "$i")"],
  "deprecated-key-path": "$STATE_DIR/node$i/key.json",
  "cgroup-parent": "/jhx-swarm-node$i",
  "dns": ["$BR_ADDR"],
  "insecure-registries": ["$(addr 1):5000"],
  "iptables": false,
  "ip-forward": false,
  "storage-driver": "overlay2",
  "shutdown-timeout": 2,
  "log-driver": "json-file",
  "log-opts": {"max-size": "1m"},
  "node-generic-resources": $gr
}
EOF
}

start_node() {
  local i=$1
  ping_node "$i" && return 0
  write_config "$i"
  rm -f "$RUN_DIR/node$i/docker.sock" "$RUN_DIR/node$i/dockerd.pid"
  # Only the network namespace is entered (ip netns exec would remount /sys and
  # hide the cgroup tree); a fresh sysfs for this netns with the host cgroup tree
  # re-bound, and an own UTS namespace for the hostname.
  DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 nohup setsid \
    nsenter --net="/run/netns/$(ns "$i")" -- \
    unshare --mount --uts --propagation slave -- sh -c '
      set -e
      x=$(mktemp -d /tmp/jhx-cg.XXXXXX)
      mount --rbind /sys/fs/cgroup "$x"
      mount -t sysfs sysfs /sys
      mount --rbind "$x" /sys/fs/cgroup
      umount -l "$x"; rmdir "$x"
      hostname "$1"
      exec dockerd --config-file "$2"' sh "node$i" "$STATE_DIR/node$i/daemon.json" \
    >"$STATE_DIR/node$i/dockerd.log" 2>&1 </dev/null &
}

wait_node() {
  local i=$1
  for _ in $(seq 1 120); do
    ping_node "$i" && return 0
    sleep 0.25
  done
  tail -20 "$STATE_DIR/node$i/dockerd.log" >&2 || true
  die "dockerd of node$i did not come up; see $STATE_DIR/node$i/dockerd.log"
}

swarm_state() { d "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }

swarm_up() {
  if [ "$(swarm_state 1)" != active ]; then
    log "swarm init on node1 ($(addr 1))"
    d 1 swarm init --advertise-addr "$(addr 1)" --listen-addr "$(addr 1):2377" \
      --default-addr-pool "$ADDR_POOL" >/dev/null
  fi
  local token i
  token=$(d 1 swarm join-token -q worker)
  for i in $(seq 2 $N); do
    if [ "$(swarm_state "$i")" != active ]; then
      log "node$i joins as a worker"
      d "$i" swarm join --token "$token" --advertise-addr "$(addr "$i")" \
        --listen-addr "$(addr "$i"):2377" "$(addr 1):2377" >/dev/null
    fi
  done
  local id
  for i in $(seq 1 $N); do
    id=$(d "$i" info --format '{{.Swarm.NodeID}}')
    local extra=()
    [ "$i" = "$GPU_NODE" ] && extra=(--label-add gpu=true)
    d 1 node update --label-add "jhext.node=node$i" "${extra[@]}" "$id" >/dev/null
  done
  if ! d 1 network inspect "$OVERLAY" >/dev/null 2>&1; then
    d 1 network create --driver overlay --attachable "$OVERLAY" >/dev/null
  fi
}

all_ready() {
  local ready
  ready=$(d 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true)
  [ "$ready" = "$N" ]
}

# --- registry on node 1 ----------------------------------------------------

registry_url() { echo "http://$(addr 1):$REGISTRY_PORT/v2/"; }
registry_ok() { curl -fsS --max-time 2 -o /dev/null "$(registry_url)" 2>/dev/null; }

registry_binary() {
  local bin
  bin=$(ls "$CACHE"/docker-registry-*/usr/bin/docker-registry 2>/dev/null | tail -n 1 || true)
  if [ -z "$bin" ]; then
    local tmp deb dest
    tmp=$(mktemp -d)
    chmod 755 "$tmp"  # apt's _apt user writes the download there
    (cd "$tmp" && apt-get download -q docker-registry >/dev/null 2>&1) || { rm -rf "$tmp"; return 1; }
    deb=$(ls "$tmp"/docker-registry_*.deb | head -n 1)
    dest="$CACHE/docker-registry-$(dpkg-deb -f "$deb" Version | tr -c 'A-Za-z0-9.+\n' _)"
    mkdir -p "$dest" && dpkg-deb -x "$deb" "$dest"
    rm -rf "$tmp"
    bin="$dest/usr/bin/docker-registry"
  fi
  [ -x "$bin" ] && echo "$bin"
}

registry_up() {
  registry_ok && return 0
  local bin dir="$STATE_DIR/registry"
  if ! bin=$(registry_binary); then
    log "WARNING: no docker-registry (apt-get download failed): the bed runs without a registry"
    return 0
  fi
  mkdir -p "$dir/data"
  printf '%s\n' "version: 0.1" "log:" "  level: warn" "storage:" "  filesystem:" \
    "    rootdirectory: $dir/data" "  delete:" "    enabled: true" "http:" \
    "  addr: $(addr 1):$REGISTRY_PORT" >"$dir/config.yml"
  nohup setsid nsenter --net="/run/netns/$(ns 1)" -- "$bin" serve "$dir/config.yml" \
    >"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/registry.pid"
  for _ in $(seq 1 40); do registry_ok && return 0; sleep 0.25; done
  tail -5 "$dir/registry.log" >&2 || true
  log "WARNING: the registry on node1 did not answer: the bed runs without it"
}

# Tag on node 1 as 10.77.0.11:5000/REF, push from node 1, print REF@digest
# (what a service pins; workers pull it from node 1).
cmd_push_image() {
  [ $# -gt 0 ] || die "usage: $0 push-image REF..."
  registry_ok || die "no registry answers at $(registry_url)"
  local ref target digest
  for ref in "$@"; do
    if ! d 1 image inspect "$ref" >/dev/null 2>&1; then
      N=1 cmd_load_image "$ref"
    fi
    target="$(addr 1):$REGISTRY_PORT/$ref"
    d 1 tag "$ref" "$target"
    d 1 push -q "$target" >/dev/null || die "push of $target failed"
    digest=$(d 1 image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$target" \
      | grep "^$(addr 1):$REGISTRY_PORT/${ref%:*}@" | head -n 1)
    [ -n "$digest" ] || die "no digest for $target after the push"
    echo "$digest"
  done
}

cmd_up() {
  need
  local t0=$SECONDS i
  mkdir -p "$RUN_DIR" "$STATE_DIR"
  # the nodes' data-roots live in memory by default: loading an image is faster
  # and `down` does not have to delete ~120k files per image from disk
  if [ "${JHX_SWARM_TMPFS:-1}" = 1 ] && ! mountpoint -q "$STATE_DIR"; then
    mount -t tmpfs -o "size=${JHX_SWARM_TMPFS_SIZE:-8g},mode=0711" jhx-swarm "$STATE_DIR"
  fi
  net_up
  for i in $(seq 1 $N); do start_node "$i"; done
  for i in $(seq 1 $N); do wait_node "$i"; done
  swarm_up
  for _ in $(seq 1 80); do all_ready && break; sleep 0.25; done
  all_ready || { d 1 node ls >&2 || true; die "not all $N nodes are Ready"; }
  if [ "${JHX_SWARM_REGISTRY:-1}" = 1 ]; then registry_up; fi
  log "up: $N nodes Ready in $((SECONDS - t0)) s"
}

cmd_status() {
  local i ok=0
  for i in $(seq 1 $N); do
    if ping_node "$i"; then
      echo "node$i $(addr "$i") $(sock "$i") engine=up swarm=$(swarm_state "$i")"
    else
      echo "node$i $(addr "$i") $(sock "$i") engine=down"; ok=1
    fi
  done
  if ping_node 1; then d 1 node ls >&2 || true; fi
  all_ready || ok=1
  return $ok
}

cmd_env() {
  local i
  echo "DOCKER_HOST=$(sock 1)"
  echo "JHX_SWARM_MANAGER=$(sock 1)"
  echo "JHX_SWARM_BRIDGE_ADDR=$BR_ADDR"
  echo "JHX_SWARM_NETWORK=$OVERLAY"
  if registry_ok; then
    echo "JHX_SWARM_REGISTRY=$(addr 1):$REGISTRY_PORT"
  else
    echo "JHX_SWARM_REGISTRY="
  fi
  for i in $(seq 1 $N); do
    echo "JHX_SWARM_NODE${i}_HOST=$(sock "$i")"
    echo "JHX_SWARM_NODE${i}_ADDR=$(addr "$i")"
    echo "JHX_SWARM_NODE${i}_ID=$(d "$i" info --format '{{.Swarm.NodeID}}' 2>/dev/null || true)"
  done
}

# Copy images from the private test engine onto every node: one `docker save`
# streamed into the three `docker load`s at once; skipped on nodes that already
# hold the same image ID.
cmd_load_image() {
  [ $# -gt 0 ] || die "usage: $0 load-image REF..."
  local ref id i todo
  for ref in "$@"; do
    id=$("$DOCKER" -H "$SOURCE_HOST" image inspect --format '{{.Id}}' "$ref") \
      || die "image $ref not found at $SOURCE_HOST"
    todo=()
    for i in $(seq 1 $N); do
      [ "$(d "$i" image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)" = "$id" ] \
        || todo+=("$i")
    done
    [ ${#todo[@]} -gt 0 ] || continue
    log "loading $ref into node(s) ${todo[*]}"
    local fifos=() pids=() dir
    dir=$(mktemp -d)
    for i in "${todo[@]}"; do
      mkfifo "$dir/$i"; fifos+=("$dir/$i")
      d "$i" load -q <"$dir/$i" >/dev/null & pids+=($!)
    done
    local rc=0
    "$DOCKER" -H "$SOURCE_HOST" save "$ref" | tee "${fifos[@]}" >/dev/null || rc=1
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    rm -rf "$dir"
    [ $rc = 0 ] || die "loading $ref failed"
    for i in "${todo[@]}"; do
      [ "$(d "$i" image inspect --format '{{.Id}}' "$ref")" = "$id" ] \
        || die "node$i has a different image ID for $ref"
    done
  done
}

cmd_down() {
  need
  local t0=$SECONDS i pid n
  pid=$(cat "$RUN_DIR/registry.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  # containers first (SIGKILL): a daemon that stops them itself waits up to each
  # task's stop grace period (10 s by default) per container
  for i in $(seq 1 $N); do
    if ping_node "$i"; then
      d "$i" ps -aq | xargs -r "$DOCKER" -H "$(sock "$i")" rm -f >/dev/null 2>&1 &
    fi
  done
  wait
  for i in $(seq 1 $N); do
    pid=$(cat "$RUN_DIR/node$i/dockerd.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  done
  for i in $(seq 1 $N); do
    pid=$(cat "$RUN_DIR/node$i/dockerd.pid" 2>/dev/null || true)
    [ -n "$pid" ] || continue
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  done
  log "engines stopped after $((SECONDS - t0)) s"
  # anything still living in a node's network namespace was started by the bed
  # (containerd, shims, docker-proxy, container processes): end them by PID
  for i in $(seq 1 $N); do
    n=$(ns "$i")
    [ -e "/run/netns/$n" ] || continue
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  sleep 0.2
  for i in $(seq 1 $N); do
    n=$(ns "$i")
    ip link del "${NS_PREFIX}h$i" 2>/dev/null || true
    [ -e "/run/netns/$n" ] && ip netns del "$n"
  done
  ip link del "$BR" 2>/dev/null || true
  # the engines mounted their layers in their own mount namespaces (gone with
  # them); unmount anything that still shows up in ours before deleting
  local m
  for m in $(awk -v s="$STATE_DIR" -v r="$RUN_DIR" \
      'index($5, s) == 1 || index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$STATE_DIR" "$RUN_DIR"
  log "state removed after $((SECONDS - t0)) s"
  for i in $(seq 1 $N); do
    find /sys/fs/cgroup -maxdepth 2 -depth -type d -name "jhx-swarm-node$i" \
      -exec rmdir {} \; 2>/dev/null || true
  done
  log "down in $((SECONDS - t0)) s"
}

# stop one node's engine (a node that went down) and start it again; its swarm
# state is on disk, so it rejoins as it was
cmd_stop_node() {
  local i=$1 pid
  pid=$(cat "$RUN_DIR/node$i/dockerd.pid" 2>/dev/null || true)
  [ -n "$pid" ] || die "node$i is not running"
  d "$i" ps -q | xargs -r "$DOCKER" -H "$(sock "$i")" rm -f >/dev/null 2>&1 || true
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

cmd_start_node() {
  local i=$1
  start_node "$i"
  wait_node "$i"
}

case "${1:-}" in
up) cmd_up ;;
stop-node) shift; cmd_stop_node "${1:?node number}" ;;
start-node) shift; cmd_start_node "${1:?node number}" ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
load-image) shift; cmd_load_image "$@" ;;
push-image) shift; cmd_push_image "$@" ;;
*) echo "usage: $0 up|down|status|env|load-image REF...|push-image REF...|stop-node N|start-node N" >&2; exit 2 ;;
esac
