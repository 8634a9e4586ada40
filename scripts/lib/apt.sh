# The project's Debian packages (scripts/apt-packages) and installing them (sourced, not run).

APT_PACKAGES_FILE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/apt-packages"

# The packages that step $1 installs, or every package without an argument.
apt_packages() {
  sed 's/#.*//' "$APT_PACKAGES_FILE" |
    awk -v step="${1:-}" 'NF { for (i = 2; i <= NF; i++) if (step == "" || $i == step) { print $1; next } }'
}

# Installs the packages of step $1 that are not installed yet.
apt_install_step() {
  local missing=() p sudo=""
  for p in $(apt_packages "$1"); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing with apt: ${missing[*]}" >&2
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
