#!/usr/bin/env bash
# Builds the two Strom images without a Docker engine: buildah with --pull=never on a Debian base
# image made locally with debootstrap (cached), using the release binaries built on the host
# (stripped of their debug info). `build-image.sh [BROKER_IMAGE [OPERATOR_IMAGE]]`; each image
# must stay within MAX_IMAGE_BYTES.
# With Docker, `docker build .` (and `--target operator`) builds the same Dockerfile from source.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/apt.sh
. scripts/lib/debian.sh
IMAGE="${1:-localhost/strom:dev}"
OPERATOR_IMAGE="${2:-localhost/strom-operator:dev}"
MAX_IMAGE_BYTES=$((25 * 1000 * 1000))
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
build() { # image target
  buildah bud -q --pull=never --isolation chroot --build-arg BUILD=prebuilt --target "$2" -t "$1" . >/dev/null
  local bytes
  # The layers' uncompressed tar sizes.
  bytes=$(buildah inspect --type image "$1" | jq -r .Manifest | jq '[.layers[].size] | add')
  echo "built $1: $((bytes / 1000)) kB" >&2
  if [ "$bytes" -gt "$MAX_IMAGE_BYTES" ]; then
    echo "build-image: $1 is $bytes bytes, above the $MAX_IMAGE_BYTES byte budget" >&2
    exit 1
  fi
}
build "$IMAGE" broker
build "$OPERATOR_IMAGE" operator
