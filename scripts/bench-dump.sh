#!/usr/bin/env bash
# Benchmarks `kdump dump` against makedumpfile on the same real vmcore.
#
# Usage: scripts/bench-dump.sh [MEMORY_MIB]     (default 4096)
#
# The crash lab boots a MEMORY_MIB guest, fills it like a busy server (random
# data in tmpfs, anonymous memory, page cache), crashes it with sysrq and
# saves /proc/vmcore as an ELF file (cached in target/bench). Each tool then
# saves it at -d 1 with every codec both support and several thread counts,
# and at -d 31 (cache, user, free and zero pages left out, classified from the
# struct pages through VMCOREINFO) with lzo and zstd;
# the table shows wall and CPU time, peak RSS and output size, with ratios to
# makedumpfile -l (Debian 12's 1.7.2, no zstd); sid's makedumpfile (zstd) runs
# too, with its own libraries (`kdump-lab makedumpfile sid`). The page cache is warm for every run (the vmcore is read
# once first), so the numbers compare the tools, not the disk.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
command -v /usr/bin/time >/dev/null || apt-get install -y -q time

MEM=${1:-4096}
OUT=target/bench
mkdir -p "$OUT"
VMCORE=$OUT/vmcore-${MEM}m-filled
if [ ! -s "$VMCORE" ]; then
  cargo run --quiet --release -p kdump-lab --bin kdump-lab -- vmcore "$VMCORE" "$MEM" max --fill
fi
cargo build --quiet --release -p kdump
KDUMP=$PWD/target/release/kdump
# A zstd-capable makedumpfile: sid's package run with its own libraries.
MDF_SID=$(cargo run --quiet --release -p kdump-lab --bin kdump-lab -- makedumpfile sid) || MDF_SID=
MDF_SID_VERSION=$([ -n "$MDF_SID" ] && "$MDF_SID" -v 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p')
cat "$VMCORE" > /dev/null

row() { # name, command...
  local name=$1; shift
  rm -f "$OUT/out" "$OUT/out.incomplete"
  /usr/bin/time -o "$OUT/time" -f "%e %U %S %M" "$@" >/dev/null 2>&1
  local t
  t=$(tail -1 "$OUT/time")
  local size
  size=$(stat -c %s "$OUT/out")
  echo "$name $t $size"
}

{
  row "makedumpfile -l -d 1" makedumpfile -l -d 1 "$VMCORE" "$OUT/out"
  row "makedumpfile -c -d 1" makedumpfile -c -d 1 "$VMCORE" "$OUT/out"
  row "makedumpfile -l -d 1 --num-threads 2" makedumpfile -l -d 1 --num-threads 2 "$VMCORE" "$OUT/out"
  if [ -n "$MDF_SID" ]; then
    row "makedumpfile $MDF_SID_VERSION -z -d 1" "$MDF_SID" -z -d 1 "$VMCORE" "$OUT/out"
    row "makedumpfile $MDF_SID_VERSION -l -d 1" "$MDF_SID" -l -d 1 "$VMCORE" "$OUT/out"
  fi
  for codec in z l c p; do
    for threads in 1 2; do
      row "kdump dump -$codec -d 1 --num-threads $threads" "$KDUMP" dump -$codec -d 1 --num-threads $threads --message-level 0 "$VMCORE" "$OUT/out"
    done
  done
  row "makedumpfile -l -d 31" makedumpfile -l -d 31 "$VMCORE" "$OUT/out"
  row "makedumpfile -c -d 31" makedumpfile -c -d 31 "$VMCORE" "$OUT/out"
  row "makedumpfile -l -d 31 --num-threads 2" makedumpfile -l -d 31 --num-threads 2 "$VMCORE" "$OUT/out"
  if [ -n "$MDF_SID" ]; then
    row "makedumpfile $MDF_SID_VERSION -z -d 31" "$MDF_SID" -z -d 31 "$VMCORE" "$OUT/out"
  fi
  for codec in l z; do
    for threads in 1 2; do
      row "kdump dump -$codec -d 31 --num-threads $threads" "$KDUMP" dump -$codec -d 31 --num-threads $threads --message-level 0 "$VMCORE" "$OUT/out"
    done
  done
} > "$OUT/results.txt"

awk -v vm="$(stat -c %s "$VMCORE")" '
  NR == 1 { base_wall = $(NF-4) }
  { n = split($0, f, " "); name = ""; for (i = 1; i <= n - 5; i++) name = name (i > 1 ? " " : "") f[i]
    wall = f[n-4]; cpu = f[n-3] + f[n-2]; rss = f[n-1] / 1024; size = f[n] / 1048576
    printf "| %s | %.2f | %.2f | %.2f | %.0f | %.0f | %.3f |\n", name, wall, wall / base_wall, cpu, rss, size, f[n] / vm }
  BEGIN { print "| run | wall s | wall vs makedumpfile -l -d 1 | CPU s | peak RSS MiB | output MiB | output / vmcore |"; print "|---|---|---|---|---|---|---|" }
' "$OUT/results.txt"
echo "vmcore: $VMCORE ($(($(stat -c %s "$VMCORE") >> 20)) MiB), $(nproc) CPUs"
