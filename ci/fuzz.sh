#!/usr/bin/env bash
# Runs every fuzz target of helio-core's log decoders (core/fuzz, cargo fuzz + libFuzzer) for
# $HELIO_FUZZ_SECONDS seconds each (default 20), starting from its committed corpus, and fails
# on the first crash, panic or failed check. Installs cargo-fuzz if it is missing; runs from any
# directory.
#
# cargo fuzz needs nightly compiler flags (sanitizers, coverage instrumentation); with only a
# stable toolchain, RUSTC_BOOTSTRAP=1 lets the stable compiler take them.
#
# The checkout is left as it was: each target fuzzes a scratch copy of its corpus, and crash
# reproducers are written next to it, under the build folder, which the failure message names.
set -euo pipefail
cd "$(dirname "$0")/.."

# One line per target: the name of its file in core/fuzz/fuzz_targets/.
targets=(
  frame
  frame_mutated
  fragment
  superblock
  batch
  clean
  replay
  recover
  cut
  page
)

step() { printf '\n== %s\n' "$*"; }

for file in core/fuzz/fuzz_targets/*.rs; do
  name="$(basename "$file" .rs)"
  if [[ " ${targets[*]} " != *" $name "* ]]; then
    echo "ci/fuzz.sh: fuzz target $name is not in its list of targets" >&2
    exit 1
  fi
done

seconds="${HELIO_FUZZ_SECONDS:-20}"
export CARGO_TARGET_DIR="${HELIO_BUILD_CACHE:-$HOME/.cache/helio-build}/fuzz"
export RUSTC_BOOTSTRAP=1
mkdir -p "$CARGO_TARGET_DIR"

if ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

step "building the fuzz targets ($(cargo fuzz --version))"
(cd core && cargo fuzz build)
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$CARGO_TARGET_DIR/$triple/release"

scratch="$CARGO_TARGET_DIR/runs"
rm -rf "$scratch"
for target in "${targets[@]}"; do
  step "fuzzing $target for $seconds s"
  corpus="$scratch/$target/corpus"
  artifacts="$scratch/$target/artifacts"
  log="$scratch/$target/log"
  mkdir -p "$corpus" "$artifacts"
  cp -R "core/fuzz/corpus/$target/." "$corpus/"
  # -timeout: an input that runs for 10 s is a hang, and fails the run like a crash.
  if ! "$bin_dir/$target" "$corpus" -max_total_time="$seconds" -timeout=10 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 80 "$log" >&2
    echo "fuzz target $target failed (whole log: $log); reproducers in $artifacts:" >&2
    ls -l "$artifacts" >&2
    echo "rerun one with: (cd core && RUSTC_BOOTSTRAP=1 cargo fuzz run $target FILE)" >&2
    exit 1
  fi
  grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$log" || true
done
