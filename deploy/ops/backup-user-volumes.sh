#!/usr/bin/env bash
# Back up every Docker volume of one hub user, found by its owner label.
#
#   backup-user-volumes.sh <user name> <backup directory>
#
# Writes, per volume: <volume>.tar.gz (contents, with owners, modes, times,
# symlinks and hard links), <volume>.labels and <volume>.driver (to recreate
# it), and SHA256SUMS for the lot. Stop the user's server first for a
# consistent copy (refused otherwise; FORCE=1 overrides).
# HELPER_IMAGE: any image with GNU tar and coreutils (default debian:bookworm-slim).
set -euo pipefail

usage() { echo "usage: $0 <user name> <backup directory>" >&2; exit 2; }
[ $# -eq 2 ] || usage
user=$1
dest=$(mkdir -p "$2" && cd "$2" && pwd)
helper=${HELPER_IMAGE:-debian:bookworm-slim}
label="jupyterhub-ext.owner-name=$user"

volumes=$(docker volume ls --quiet --filter "label=$label")
if [ -z "$volumes" ]; then
  echo "no volume carries the label $label (volumes made before jupyterhub_ext have no labels: back them up by name)" >&2
  exit 1
fi

running=$(docker ps --quiet --filter "label=$label")
if [ -n "$running" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "$user has a running server ($running): stop it first for a consistent backup, or set FORCE=1" >&2
  exit 1
fi

for v in $volumes; do
  echo "backing up $v" >&2
  docker volume inspect --format '{{range $k, $val := .Labels}}{{$k}}={{$val}}{{"\n"}}{{end}}' "$v" \
    | sed '/^$/d' > "$dest/$v.labels"
  docker volume inspect --format '{{.Driver}}' "$v" > "$dest/$v.driver"
  docker run --rm --network none \
    --mount "type=volume,src=$v,dst=/data,readonly" \
    --mount "type=bind,src=$dest,dst=/backup" \
    "$helper" tar --create --gzip --format=posix --numeric-owner --preserve-permissions \
      --file "/backup/$v.tar.gz" --directory /data .
done

(cd "$dest" && sha256sum -- *.tar.gz *.labels *.driver > SHA256SUMS)
echo "$dest:" >&2
echo "$volumes"
