#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: the `test` packages of
# scripts/apt-packages (kcat, promtool, ip), the Python clients, the Helm SDK and
# kubernetes-validate in a venv, quixstreams in another, and kafkajs, TypeScript and @grafana/schema with the machine's
# npm (Node.js comes with the machine image: scripts/other-tools), Apache Kafka's jars from Maven
# Central (tests/kafka/pom.xml, with the machine's Java and Maven) for scripts/kafka-tool, the Java
# client, Kafka Streams and Kafka Connect suites' Maven builds, the Go clients' modules, and a
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

# Kafka's Java client suite (tests/java_client): Maven's plugins, kafka-clients, JUnit and their
# dependencies, fetched by compiling the suite and starting Surefire on a selection of no test
# (Surefire fetches its JUnit Platform provider only when it runs).
stamp="$CACHE/java_client/.pom-$(sha256sum tests/java_client/pom.xml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  mkdir -p "$CACHE/java_client"
  rm -f "$CACHE"/java_client/.pom-*
  mvn -q -B -f tests/java_client/pom.xml test -Dstrom.build.dir="$CACHE/java_client/target" \
    -Dtest='*Test#none' -Dsurefire.failIfNoSpecifiedTests=false
  touch "$stamp"
fi

# The Kafka Streams suite's application (tests/streams/pom.xml): kafka-streams and Maven's plugins
# once per pom, then compiled into tests/streams/target (quick when nothing changed), its runtime
# classpath written to target/classpath.txt.
stamp="$CACHE/streams/.pom-$(sha256sum tests/streams/pom.xml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$CACHE"/streams/.pom-*
  mvn -q -B -f tests/streams/pom.xml dependency:resolve dependency:resolve-plugins
  mkdir -p "$CACHE/streams"
  touch "$stamp"
fi
mvn -q -B -f tests/streams/pom.xml package

# Kafka Connect's worker and its FileStream and MirrorMaker 2 connectors (4.3.1, the newest
# release with connect-file on Maven Central), pinned in tests/connect/pom.xml.
stamp="$CACHE/connect/.pom-$(sha256sum tests/connect/pom.xml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$CACHE/connect/lib" "$CACHE"/connect/.pom-*
  mvn -q -B -f tests/connect/pom.xml dependency:copy-dependencies -DoutputDirectory="$CACHE/connect/lib"
  touch "$stamp"
fi

# The Go clients of the compatibility suite (tests/compat/go): their modules, pinned in go.mod and
# go.sum, into the module cache tests/compat/test_go_clients.py builds with.
(cd tests/compat/go && GOMODCACHE="$CACHE/gomod" GOFLAGS=-mod=readonly GOTOOLCHAIN=local go mod download)

# The CRD suite's API server: a current kube-apiserver built from the Go module proxy (cached).
scripts/build-kube-apiserver >/dev/null
