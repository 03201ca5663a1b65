#!/usr/bin/env bash
# Runs the SIGKILL crash tests (runtime-uring/tests/crash.rs on a shard, crash_store.rs on a
# store of 4 shards) in release mode for as long as asked: each test in turn for its share of
# the time, then the cycles each one did. Runs from any
# directory; stops at the first failure (its message names the cycle and the seed).
#
#   bash ci/crash-soak.sh 3600              # an hour, 20 minutes per test
#   bash ci/crash-soak.sh --seconds 600
#   HELIO_CRASH_SEED=0x... bash ci/crash-soak.sh 600   # the kill times of an earlier run
#
# Builds go to $HELIO_BUILD_CACHE (default ~/.cache/helio-build), as ci/test.sh's do.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 SECONDS | --seconds SECONDS" >&2
  exit 2
}

seconds=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) [ $# -ge 2 ] || usage; seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#--seconds=}"; shift ;;
    -h | --help) usage ;;
    *) [ -z "$seconds" ] || usage; seconds="$1"; shift ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || usage

export CARGO_TARGET_DIR="${HELIO_BUILD_CACHE:-$HOME/.cache/helio-build}"
mkdir -p "$CARGO_TARGET_DIR"

# Test file, then test.
tests=(
  crash:sigkill_never_loses_an_acknowledged_sync_write
  crash:sigkill_never_loses_writes_before_an_acknowledged_sync
  crash:sigkill_during_cleaning_never_loses_a_synced_write
  crash_store:sigkill_store_recovers_a_prefix_of_one_writers_keys
  crash_store:sigkill_store_never_tears_a_batch
)
share=$(awk -v s="$seconds" -v n="${#tests[@]}" 'BEGIN { printf "%.1f", s / n }')

log=$(mktemp)
summary() {
  printf '\n== crash soak: cycles done\n'
  grep -h '^crash: ' "$log" || echo "(no test finished)"
  awk -F': ' '/^crash: / { split($3, w, " "); n += w[1] } END { printf "total: %d cycles\n", n }' "$log"
  rm -f "$log"
}
trap summary EXIT

printf '== building the crash tests (release)\n'
cargo test --release -p helio --test crash --test crash_store --no-run

for entry in "${tests[@]}"; do
  file="${entry%%:*}" test="${entry#*:}"
  printf '\n== %s for %s s\n' "$test" "$share"
  HELIO_CRASH_SECONDS="$share" cargo test --release -p helio --test "$file" -- \
    --exact "$test" --nocapture --test-threads=1 | tee -a "$log"
done
