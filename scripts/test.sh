#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and crash-lab tests.
# Usage: scripts/test.sh        (run from anywhere; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== static release build"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu --bin kexec --bin kdump
echo "== tests (unit and crash lab)"
# Lab tests boot VMs under TCG; two at a time fit the 2-core machines.
cargo test --workspace -- --test-threads=2
