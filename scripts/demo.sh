#!/usr/bin/env bash
# The main job, end to end, in the crash lab: boot Debian's kernel under QEMU,
# write /etc/kdump.toml, `kdump setup` (the capture initramfs is our static
# kdump alone, loaded with kexec_file_load), crash it with `kdump test`; the
# capture kernel's init (our kdump) saves dump, log and report to the NVMe
# disk and powers off; the host prints `kdump info` of the saved dump.
# Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cargo run --quiet --release -p kdump-lab --bin kdump-lab -- demo "$@"
