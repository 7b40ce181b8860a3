#!/usr/bin/env bash
# Benchmarks `kdump dump` against makedumpfile INSIDE the lab's capture kernel:
# both read the same /proc/vmcore in one boot (QEMU TCG, nr_cpus=1).
#
# Usage: scripts/bench-capture.sh [MEMORY_MIB...]      (default: 1024 4096 8192)
#   KDUMP_BENCH_BASE=/path/to/static/kdump   also times an older kdump binary
#   KDUMP_BENCH_LEVELS="31 1"                 dump levels to run (default both)
#   KDUMP_BENCH_CODECS=lz                     lzo and zstd only (zlib and snappy take minutes under TCG)
#   KDUMP_BENCH_ROUNDS=3                      rounds of makedumpfile -l / kdump -l / kdump -z, interleaved;
#                                             the table shows the best (the host's load varies)
#
# Each size boots a guest, fills it (random data in tmpfs, page cache,
# anonymous memory with transparent huge pages), crashes it with sysrq, and in
# the capture kernel runs makedumpfile 1.7.2 (Debian's, with its libraries
# copied in) and `kdump dump` at -d 31 and -d 1 with each codec, under busybox
# `time -v` (wall time, peak RSS). `kdump dump --timings` adds its stages.
# Results: target/bench/capture-<MIB>.txt, a markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
mkdir -p target/bench
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1024 4096 8192)
for mib in "${sizes[@]}"; do
  out=target/bench/capture-$mib.txt
  KDUMP_BENCH_MIB=$mib cargo test --quiet -p kdump-lab --test capture_speed -- --ignored --nocapture \
    bench_capture_kernel 2>/dev/null | grep -E '^(RUN|kdump:|AnonHugePages)' > "$out"
  echo "### ${mib} MiB guest"
  echo
  echo "| run | runs | best wall s | all wall s | peak RSS MiB | output MiB |"
  echo "|---|---|---|---|---|---|"
  awk -F' [|] ' '/^RUN / {
      name = substr($1, 5); split($2, t, "m "); wall = t[1] * 60 + t[2]
      if (!(name in n)) order[++k] = name
      n[name]++; all[name] = all[name] (n[name] > 1 ? " " : "") sprintf("%.2f", wall)
      if (!(name in best) || wall < best[name]) best[name] = wall
      if ($3 > rss[name]) rss[name] = $3; size[name] = $4 }
    END { for (i = 1; i <= k; i++) { m = order[i]
      printf "| %s | %d | %.2f | %s | %.1f | %.1f |\n", m, n[m], best[m], all[m], rss[m] / 1024, size[m] / 1048576 } }' "$out"
  echo
done
