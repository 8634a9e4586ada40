# Debian bookworm from this machine's own apt configuration (sourced, not run).

DEBIAN_MINBASE_TAR="${STROM_CACHE:-$HOME/.cache/strom}/debian-bookworm-minbase.tar"

# The repository that apt uses for bookworm main: the project downloads from wherever this
# machine is configured to, and names no host itself.
debian_mirror() {
  local uri
  # With downloaded lists, by codename, whatever suite name the sources use (bookworm,
  # oldstable); before the first `apt-get update`, by the suite written in the sources.
  uri=$(apt-get indextargets --format '$(REPO_URI)' 'Codename: bookworm' 'Component: main' 'Identifier: Packages' | head -1)
  [ -n "$uri" ] || uri=$(apt-get indextargets --no-release-info --format '$(REPO_URI)' \
    'Release: bookworm' 'Component: main' 'Identifier: Packages' | head -1)
  if [ -z "$uri" ]; then
    echo "error: apt has no Debian bookworm main repository configured (see apt-get indextargets)" >&2
    return 1
  fi
  echo "$uri"
}

# Makes $DEBIAN_MINBASE_TAR once: a debootstrap --variant=minbase bookworm root as a tar, without
# apt's lists and downloaded packages.
make_debian_minbase_tar() {
  [ ! -f "$DEBIAN_MINBASE_TAR" ] || return 0
  local mirror rootfs
  mirror=$(debian_mirror)
  echo "making a minimal Debian bookworm root with debootstrap from $mirror" >&2
  mkdir -p "$(dirname "$DEBIAN_MINBASE_TAR")"
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$DEBIAN_MINBASE_TAR.tmp" .
  mv "$DEBIAN_MINBASE_TAR.tmp" "$DEBIAN_MINBASE_TAR"
  rm -rf "$rootfs"
}
