#!/usr/bin/env bash
# Builds the Strom image without a Docker engine: buildah with --pull=never on a Debian base
# image made locally with debootstrap (cached), using the release binaries built on the host
# (stripped of their debug info).
# With Docker, `docker build .` builds the same Dockerfile from source instead.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${STROM_CACHE:-$HOME/.cache/strom}"
IMAGE="${1:-localhost/strom:dev}"
BASE=docker.io/library/debian:bookworm-slim

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  ROOTFS_TAR="$CACHE/debian-bookworm-minbase.tar"
  if [ ! -f "$ROOTFS_TAR" ]; then
    echo "making the $BASE base image with debootstrap" >&2
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$rootfs"
  fi
  c=$(buildah from scratch)
  buildah add "$c" "$ROOTFS_TAR" / >/dev/null
  buildah commit -q "$c" "$BASE" >/dev/null
  buildah rm "$c" >/dev/null
fi

cargo build --release --locked -q -p strom-broker -p strom-operator
# The release profile keeps line tables for profiling; the image does not need them.
mkdir -p target/image
for bin in strom-broker strom-operator; do
  objcopy --strip-debug "target/release/$bin" "target/image/$bin"
done
buildah bud -q --pull=never --isolation chroot --build-arg BUILD=prebuilt -t "$IMAGE" . >/dev/null
echo "built $IMAGE ($(buildah images --format '{{.Size}}' "$IMAGE"))" >&2
