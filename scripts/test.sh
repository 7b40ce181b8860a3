#!/usr/bin/env bash
# The test suite: formatting, lints, unit tests, crash-lab tests and a fuzz smoke run.
# Usage: scripts/test.sh          the whole suite (what CI runs; installs what it needs)
#        scripts/test.sh --fast   no VMs and no fuzzing: fmt, clippy, every unit, golden
#                                 and property test (a couple of minutes, warm)
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
case "${1:-}" in
  --fast) fast=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--fast]" >&2; exit 2 ;;
esac

[ $fast = 1 ] || bash scripts/deps.sh
[ $fast = 0 ] || bash scripts/seaweedfs.sh   # the S3 tests' server, also in a fast run

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings
if [ $fast = 1 ]; then
  echo "== tests without VMs"
  cargo test --workspace --exclude kdump-lab
  cargo test -p kdump-lab --lib --bins
  exit 0
fi
echo "== static release build"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu --bin kexec --bin kdump
echo "== tests (unit and crash lab)"
# Lab tests boot VMs under TCG; two at a time fit the 2-core machines.
cargo test --workspace --no-fail-fast -- --test-threads=2
echo "== the Debian package, installed, used, removed and purged in a bookworm chroot"
bash scripts/test-package.sh "$(bash scripts/package-deb.sh --no-build)"
echo "== fuzz smoke run (every target, from its seeds)"
bash scripts/fuzz.sh 20
