#!/usr/bin/env bash
# The crash-lab tests that run once per kernel of the matrix (Debian's 5.10, 6.1,
# 6.12 and newest cloud kernels), on every kernel or on those named.
# Usage: scripts/test-matrix.sh [SUITE...]     e.g. scripts/test-matrix.sh bullseye sid
# (scripts/test.sh runs the same tests on the whole matrix as part of the suite.)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
if [ $# -gt 0 ]; then
  KDUMP_LAB_MATRIX=$(IFS=,; echo "$*")
  export KDUMP_LAB_MATRIX
fi
echo "== kernel matrix: ${KDUMP_LAB_MATRIX:-all}"
# The matrix tests are the ones kernel_matrix! declares: their names end in ::<suite>.
cargo test -p kdump-lab --tests -- --test-threads=2 ::bullseye ::bookworm ::trixie ::sid
