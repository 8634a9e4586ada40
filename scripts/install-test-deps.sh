#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: kcat and promtool from apt,
# the Python clients, the Helm SDK and kubernetes-validate in a venv, and kafkajs, TypeScript and
# @grafana/schema from npm. Idempotent; caches under ~/.cache/strom.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${STROM_CACHE:-$HOME/.cache/strom}"
mkdir -p "$CACHE"

need_apt=()
command -v kcat >/dev/null || need_apt+=(kcat)
command -v node >/dev/null || need_apt+=(nodejs npm)
command -v promtool >/dev/null || need_apt+=(prometheus)
if ((${#need_apt[@]})); then
  echo "installing with apt: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x "$CACHE/venv/bin/python" ]; then
  python3 -m venv "$CACHE/venv"
fi
stamp="$CACHE/venv/.requirements-$(sha256sum tests/requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$CACHE/venv/bin/pip" install -q --upgrade pip
  "$CACHE/venv/bin/pip" install -q -r tests/requirements.txt
  touch "$stamp"
fi

for dir in tests/compat/kafkajs tests/dashboards; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done
