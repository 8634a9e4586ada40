#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while each and reports executions and exec/s per
# target; exits non-zero when a target crashed (the input is left in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]     default: 60 s, every target
#
# The seed corpora in fuzz/corpus/<target>/ are read, never written: what a run discovers goes to
# a scratch corpus, removed afterwards unless STROM_FUZZ_CORPUS names a directory to keep it in
# (fuzz/corpus/ itself is kept small; minimize into it with `cargo fuzz cmin`). CI replays the
# seed corpora without cargo-fuzz (broker/tests/fuzz_corpus.rs); long runs stay out of CI.
# STROM_FUZZ_ARGS adds libFuzzer options to every run (for example -runs=10000000 to stop after
# that many executions). Needs the stable toolchain only: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use
# its nightly flags.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [seconds-per-target] [target...]" >&2; exit 2 ;;
esac

if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "==> installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
nice=(nice -n "${STROM_FUZZ_NICE:-10}")

cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/strom-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# The dispatch target keeps its broker's data under TMPDIR; it goes with the scratch directory.
export TMPDIR="$scratch/tmp"
mkdir -p "$TMPDIR"

failed=()
summary=()
for target in "${targets[@]}"; do
  work="${STROM_FUZZ_CORPUS:-$scratch/corpus}/$target"
  mkdir -p "$work" "corpus/$target"
  # Per target: the broker behind the dispatch target grows with what it is sent; metadata
  # record sequences past a few KB only slow the fuzzer down.
  extra=()
  case "$target" in
    request_dispatch) extra=(-rss_limit_mb=6144) ;;
    metadata_records) extra=(-max_len=4096) ;;
  esac
  log="$scratch/$target.log"
  echo "==> $target for ${seconds}s" >&2
  status=0
  "${nice[@]}" cargo fuzz run "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" ${STROM_FUZZ_ARGS:-} \
    >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  secs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log" | tail -1)
  if [ -z "$runs" ]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)/\1/p' "$log" | tail -1)
  fi
  rate=$(sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p' "$log" | tail -1)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="CRASHED (exit $status)"
    failed+=("$target")
    grep -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY|Test unit written to" "$log" | head -8 >&2 || true
    mkdir -p "artifacts/$target" && cp "$log" "artifacts/$target/fuzz.log"
  fi
  summary+=("$(printf '%-20s %12s executions in %5ss  %8s exec/s  %s' \
    "$target" "${runs:-?}" "${secs:-?}" "${rate:-?}" "$result")")
done

echo
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs and fuzz.log in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
