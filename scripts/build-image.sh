#!/usr/bin/env bash
# Builds the Strom image without a Docker engine: buildah with --pull=never on a Debian base
# image made locally with debootstrap (cached), using the release binaries built on the host
# (stripped of their debug info).
# With Docker, `docker build .` builds the same Dockerfile from source instead.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/apt.sh
. scripts/lib/debian.sh
IMAGE="${1:-localhost/strom:dev}"
BASE=docker.io/library/debian:bookworm-slim
apt_install_step image

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  make_debian_minbase_tar
  c=$(buildah from scratch)
  buildah add "$c" "$DEBIAN_MINBASE_TAR" / >/dev/null
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
