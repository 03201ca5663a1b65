#!/usr/bin/env bash
# Every check CI makes, in order: formatting, lints, the no_std build of the core, the API docs,
# all tests, and the loom model checks. Installs what it needs itself; runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain components"
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "helio-core without std (no_std + alloc)"
cargo build -p helio-core --no-default-features

step "API docs (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "tests"
cargo test --workspace --release

step "loom model checks of the CAS protocols"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p helio-core --test loom --release
