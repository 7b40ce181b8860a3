#!/usr/bin/env bash
# The main job, end to end, in the crash lab: boot Debian's kernel under QEMU,
# load a capture kernel with our kexec, crash it, save the dump with our
# tools and print a crash report. Steps that are not built yet say so.
# Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cargo run --quiet --release -p kdump-lab --bin kdump-lab -- demo "$@"
