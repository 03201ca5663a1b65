#!/usr/bin/env bash
# Every check CI makes, in order: formatting, lints, the no_std build of the core, the API docs,
# all tests (the workload runner with every peer engine, RocksDB included), and the loom model
# checks. Installs what it needs itself; runs from any directory.
#
# Builds go to $HELIO_BUILD_CACHE (default ~/.cache/helio-build), outside the checkout, so a
# machine that ran this before reuses RocksDB's ~10 minute C++ build; a fresh machine builds it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

export CARGO_TARGET_DIR="${HELIO_BUILD_CACHE:-$HOME/.cache/helio-build}"
mkdir -p "$CARGO_TARGET_DIR"

step "system packages (clang + libclang for RocksDB's bindings, a TrueType font for the plots, bindfs for the FUSE test)"
missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || missing+=(libclang-dev)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# hw-tests/tests/fuse.rs opens a store on a bindfs mount (it skips, saying why, without /dev/fuse).
command -v bindfs >/dev/null 2>&1 || missing+=(bindfs)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

step "toolchain components"
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

step "cargo fmt --check"
cargo fmt --all -- --check

# Release profile, so that the test build below reuses its build-script outputs (RocksDB's C++).
step "cargo clippy (all targets, every peer engine, warnings are errors)"
cargo clippy --release --workspace --all-targets --features helio-bench/peers,helio-gluesql/peers -- -D warnings

step "helio-core without std (no_std + alloc)"
cargo build -p helio-core --no-default-features

step "API docs (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# helio-backends' tests run against these (and start, kill and restart servers of their own from
# the same binaries); without them those tests fail, never pass.
step "remote-store test servers: Redis and S3 (moto) on loopback ports"
trap 'bash ci/remote-servers.sh stop' EXIT
servers="$(bash ci/remote-servers.sh start)"  # an assignment, so that a failed start stops the run
eval "$servers"

step "tests (the workload runner with every peer engine)"
cargo test --workspace --release --features helio-bench/peers
bash ci/remote-servers.sh stop

step "loom model checks of the CAS protocols"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/loom" cargo test -p helio-core --test loom --release

step "fuzz targets (cargo fuzz, ${HELIO_FUZZ_SECONDS:-20} s each)"
bash ci/fuzz.sh
