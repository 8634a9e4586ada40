#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: the `test` packages of
# scripts/apt-packages (kcat, promtool, ip), the Python clients, the Helm SDK and
# kubernetes-validate in a venv, and kafkajs, TypeScript and @grafana/schema with the machine's
# npm (Node.js comes with the machine image: scripts/other-tools), and a current kube-apiserver
# (scripts/build-kube-apiserver) for the CRD suite. Idempotent; caches under ~/.cache/strom.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/apt.sh
CACHE="${STROM_CACHE:-$HOME/.cache/strom}"
mkdir -p "$CACHE"

apt_install_step test

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

# The CRD suite's API server: a current kube-apiserver built from the Go module proxy (cached).
scripts/build-kube-apiserver >/dev/null
