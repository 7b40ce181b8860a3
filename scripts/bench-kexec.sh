#!/usr/bin/env bash
# Timing of `kexec -c` (kexec_load + Rust purgatory), recorded in docs/PERFORMANCE.md.
#
#   scripts/bench-kexec.sh [BZIMAGE] [INITRD_MIB] [SYSROOT] [RUNS]
#
# 1. On this host (release build): planning a panic load and the real purgatory blob
#    verifying every segment (crates/kexec/examples/bench_kexec_c.rs).
# 2. In the crash lab (QEMU TCG, so only relative): the load as timed by `kexec -c -p -d`
#    inside the guest (plan + kexec_load syscall), read from the lab tests' consoles.
set -euo pipefail
cd "$(dirname "$0")/.."

kernel=${1:-$(ls target/lab-cache/kernel/*/boot/vmlinuz-* 2>/dev/null | head -1 || true)}
initrd_mib=${2:-8}
sysroot=${3:-tests/fixtures/machines/qemu-1g-2cpu-crash256m-la57}
runs=${4:-7}
if [ -z "$kernel" ]; then
  echo "no kernel: pass a bzImage, or run a lab test once to fetch Debian's into target/lab-cache" >&2
  exit 1
fi
initrd=$(mktemp)
trap 'rm -f "$initrd"' EXIT
head -c $((initrd_mib << 20)) /dev/urandom > "$initrd"

echo "== host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
cargo run --quiet --release -p kexec --example bench_kexec_c -- "$kernel" "$initrd" "$sysroot" "$runs"

if [ "${BENCH_LAB:-0}" = 1 ]; then
  echo "== crash lab (QEMU TCG): kexec -c -p -d inside the guest"
  KDUMP_LAB_KEEP=1 cargo test --quiet -p kdump-lab --test kexec_load legacy_panic_load_crash -- --test-threads=2 >/dev/null
  for run in target/lab-runs/kexec-c-crash-*; do
    echo "$(basename "$run"): $(grep -ao 'plan [0-9.]* ms, syscall [0-9.]* ms' "$run/console.log")"
  done
fi
