#!/usr/bin/env bash
# Restore volumes saved by backup-user-volumes.sh.
#
#   restore-user-volumes.sh <backup directory> [volume ...]
#
# Restores every volume in the backup, or only the ones named. A missing
# volume is recreated with its driver and labels; an existing one is emptied
# first, so the result is exactly the backup. Refused while any container
# (running or stopped) uses the volume: stop the user's server first.
# HELPER_IMAGE: any image with GNU tar and coreutils (default debian:bookworm-slim).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 <backup directory> [volume ...]" >&2; exit 2; }
src=$(cd "$1" && pwd)
shift
helper=${HELPER_IMAGE:-debian:bookworm-slim}

(cd "$src" && sha256sum --check --quiet SHA256SUMS) || {
  echo "checksums in $src/SHA256SUMS do not match: not restoring" >&2
  exit 1
}

if [ $# -gt 0 ]; then
  volumes=("$@")
else
  volumes=()
  for f in "$src"/*.tar.gz; do volumes+=("$(basename "$f" .tar.gz)"); done
fi

for v in "${volumes[@]}"; do
  [ -f "$src/$v.tar.gz" ] || { echo "$src/$v.tar.gz not found" >&2; exit 1; }
  users=$(docker ps --all --quiet --filter "volume=$v")
  if [ -n "$users" ]; then
    echo "volume $v is used by container(s) $users: stop the server (and remove stopped containers) first" >&2
    exit 1
  fi
done

for v in "${volumes[@]}"; do
  if ! docker volume inspect "$v" >/dev/null 2>&1; then
    args=(--driver "$(cat "$src/$v.driver")")
    while IFS= read -r l; do [ -n "$l" ] && args+=(--label "$l"); done < "$src/$v.labels"
    docker volume create "${args[@]}" "$v" >/dev/null
    echo "created $v" >&2
  fi
  echo "restoring $v" >&2
  docker run --rm --network none \
    --mount "type=volume,src=$v,dst=/data" \
    --mount "type=bind,src=$src,dst=/backup,readonly" \
    "$helper" sh -c 'find /data -mindepth 1 -delete && tar --extract --gzip --numeric-owner --preserve-permissions --same-owner --file "/backup/$0.tar.gz" --directory /data' "$v"
done
