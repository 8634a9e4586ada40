#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: the `test` packages of
# scripts/apt-packages (kcat, promtool, ip), the Python clients, the Helm SDK and
# kubernetes-validate in a venv, quixstreams in another, and kafkajs, TypeScript and @grafana/schema with the machine's
# npm (Node.js comes with the machine image: scripts/other-tools), Apache Kafka's jars from Maven
# Central (tests/kafka/pom.xml, with the machine's Java and Maven) for scripts/kafka-tool, and a
# current kube-apiserver (scripts/build-kube-apiserver) for the CRD suite. Idempotent; caches under
# ~/.cache/strom.
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

# quixstreams pins an older confluent-kafka than the suite's, so it has a venv of its own.
if [ ! -x "$CACHE/venv-quix/bin/python" ]; then
  python3 -m venv "$CACHE/venv-quix"
fi
stamp="$CACHE/venv-quix/.requirements-$(sha256sum tests/quixstreams-requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$CACHE/venv-quix/bin/pip" install -q --upgrade pip
  "$CACHE/venv-quix/bin/pip" install -q -r tests/quixstreams-requirements.txt
  touch "$stamp"
fi

for dir in tests/compat/kafkajs tests/dashboards; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done

# Apache Kafka's tools and broker, pinned in tests/kafka/pom.xml, for scripts/kafka-tool.
stamp="$CACHE/kafka/.pom-$(sha256sum tests/kafka/pom.xml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$CACHE/kafka/lib" "$CACHE"/kafka/.pom-*
  mvn -q -B -f tests/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$CACHE/kafka/lib"
  touch "$stamp"
fi

# The CRD suite's API server: a current kube-apiserver built from the Go module proxy (cached).
scripts/build-kube-apiserver >/dev/null
