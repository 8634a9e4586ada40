#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and integration tests, the real-client
# compatibility, hostile-client, security, Apache Kafka's tools, Java client, differential, Kafka
# Streams, Kafka Connect and cluster fault suites against a release build of the broker, then a
# local Kubernetes for the smoke test, the operator suite and the end-to-end suite.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${STROM_CACHE:-$HOME/.cache/strom}"

step() { printf '\n==> %s (%s, %s free on disk)\n' "$1" "$(date +%T)" "$(df -h --output=avail . | tail -1 | tr -d ' ')"; }

# CI builds a clean clone once: incremental compilation caches would only take disk there.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi

step "install test dependencies"
scripts/install-test-deps.sh

step "every command the scripts and tests call is installed on a fresh machine"
scripts/check-tools

step "cargo fmt --check"
cargo fmt --all -- --check

step "request schemas are generated from Kafka's"
# broker/src/protocol/schemas.rs against Kafka's message schemas in the kafka-clients jar
# (downloaded once into the cache); fails when the file is stale or edited by hand.
scripts/gen-request-schemas --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "Helm chart (Helm v4 SDK lint and render, kubernetes-validate) and examples"
"$CACHE/venv/bin/pytest" -q -p no:cacheprovider tests/chart

step "CRD rules (CEL) and the KafkaNodePool scale subresource on a current kube-apiserver"
"$CACHE/venv/bin/pytest" -q -p no:cacheprovider tests/crds

step "Grafana dashboards against @grafana/schema (tsc)"
node tests/dashboards/check.mjs

if [ "${CI:-}" = true ]; then
  step "drop the debug build (nothing below uses it; CI machines can be short of disk)"
  rm -rf target/debug
fi

step "release build"
cargo build --release --locked -p strom-broker -p strom-operator

step "compatibility suite (real clients)"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -p no:cacheprovider tests/compat

step "hostile-client suite (wire bombs, hostile batches, connection floods and limits)"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -p no:cacheprovider tests/hostile

step "security suite (TLS, mTLS, SASL PLAIN/SCRAM, ACLs, real clients)"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -p no:cacheprovider tests/security

step "Apache Kafka's tools (kafka-topics, kafka-configs, ...) against Strom"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -p no:cacheprovider tests/kafka_tools

step "Kafka's Java client (kafka-clients 4.4, JUnit 5) against Strom"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -p no:cacheprovider tests/java_client

step "differential: Apache Kafka 4.4 and Strom side by side, field by field"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -s -p no:cacheprovider tests/differential

step "Kafka Streams (word count and windowed sum, at-least-once and exactly-once, kill -9)"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -s -p no:cacheprovider tests/streams

step "Kafka Connect (distributed workers, FileStream, MirrorMaker 2, exactly-once source) on Strom"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -p no:cacheprovider tests/connect

step "cluster fault suite (several brokers, kill -9, SIGSTOP, restarts)"
BROKER_BIN="$PWD/target/release/strom-broker" "$CACHE/venv/bin/pytest" -q -s -p no:cacheprovider tests/cluster

step "local Kubernetes: up, image, smoke StatefulSet"
trap 'e2e/local-cluster/down >/dev/null 2>&1 || true' EXIT
cluster_env=$(e2e/local-cluster/up)
# KUBECONFIG, and the cluster's own kubectl first on PATH for the suites below.
eval "$(tail -1 <<<"$cluster_env")"
scripts/build-image.sh localhost/strom:dev localhost/strom-operator:dev
# The Debian base (made by build-image.sh) runs the smoke test's probe pod.
e2e/local-cluster/load-image localhost/strom:dev localhost/strom-operator:dev docker.io/library/debian:bookworm-slim
e2e/local-cluster/smoke-test localhost/strom:dev

step "operator suite (strom-operator against the local API server, real Kafka clients)"
# Inside the cluster's network namespace, where Service and pod names resolve.
ip netns exec strom-k8s env OPERATOR_BIN="$PWD/target/release/strom-operator" STROM_IMAGE=localhost/strom:dev \
  "$CACHE/venv/bin/pytest" -q -s -p no:cacheprovider tests/operator

step "end-to-end suite (Helm install, client pod, broker pod deleted, 3 -> 4 -> 3, uninstall)"
STROM_E2E_TARGET=local e2e/run

step "local Kubernetes down"
e2e/local-cluster/down
