#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time, from seeds of small valid
# inputs, on stable Rust (libFuzzer with SanitizerCoverage, as `cargo fuzz -s none`).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    (default 20 s, every target)
#
# Fails when a target crashes (the input is kept in target/fuzz/artifacts/) or
# when its coverage stays under its floor below: a target stuck at a few dozen
# edges tests only a magic check, not the parser. The corpus grows across runs
# in target/fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
shift || true
all=(dump_kdump dump_flat dump_elf kernel_memory machine_text bzimage net_replies ssh_text ssh_handshake s3_response debuginfo)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# Edges each target must reach from its seeds within the time (measured about
# 2x above these with 20 s on a 2-core machine under load).
declare -A floor=([dump_kdump]=400 [dump_flat]=400 [dump_elf]=250 [kernel_memory]=600 [machine_text]=400 [bzimage]=40 [net_replies]=75 [ssh_text]=450 [ssh_handshake]=300 [s3_response]=400 [debuginfo]=600)

out=$PWD/target/fuzz
seeds=$out/seeds
rm -rf "$seeds"
cargo run --quiet -p kdump-dumpfile --example fuzz_seeds -- "$seeds"
cargo run --quiet -p kdump-net --example fuzz_seeds -- "$seeds"
mkdir -p "$seeds/machine_text" "$seeds/bzimage"
cp -r fuzz/seeds/s3_response "$seeds/"   # S3 answers: XML documents and whole HTTP responses
cp fuzz/seeds/machine_text/* "$seeds/machine_text/"   # /proc/net/route
for f in tests/fixtures/machines/*/proc/iomem tests/fixtures/machines/*/proc/cmdline \
  tests/fixtures/machines/*/sys/devices/system/cpu/online tests/fixtures/machines/*/sys/kernel/security/lockdown; do
  [ -f "$f" ] && cp "$f" "$seeds/machine_text/$(echo "$f" | tr / _)"
done
# A small debug "vmlinux": the kernel's types as 6.1 lays them out, built by gcc with DWARF.
mkdir -p "$seeds/debuginfo"
gcc -g -O0 -nostdlib -static -no-pie -Wl,--build-id -o "$seeds/debuginfo/mini_kernel" \
  crates/kdump-debuginfo/tests/fixtures/mini_kernel.c
# A real kernel's setup header, when the lab has fetched one.
kernel=$(ls target/lab-cache/kernel/*/boot/vmlinuz-* 2>/dev/null | head -1 || true)
if [ -n "$kernel" ]; then
  head -c 20000 "$kernel" > "$seeds/bzimage/head"
else
  printf 'MZ' > "$seeds/bzimage/tiny"
fi

# known_hosts lines of every form (plain, [host]:port, patterns, hashed by ssh-keygen -H,
# markers), a private key as ssh-keygen writes it, a target URL.
mkdir -p "$seeds/ssh_text"
key=AAAAC3NzaC1lZDI1NTE5AAAAIHD3ZRQLsQ/Kpq5elLfS6C9y/yr/wrKEoNaWiHx3olkU
printf 'ssh://root@127.0.0.1:2222/var/crash\n# comment\nbackup.example,10.0.0.5 ssh-ed25519 %s root@b\n[127.0.0.1]:2222 ssh-ed25519 %s\n*.lab,!bad.lab,h?st ssh-ed25519 %s\n' \
  "$key" "$key" "$key" > "$seeds/ssh_text/plain"
printf '|1|ZcPjRMa6ldDcfLQPxorxtfF4bU4=|sv3aU5XMlra6rf1jHJBkCS8a0AY= ssh-ed25519 %s\n@revoked * ssh-ed25519 %s\n@cert-authority *.lab ssh-ed25519 %s\nsrv ecdsa-sha2-nistp256 AAAAE2VjZHNh\n' \
  "$key" "$key" "$key" > "$seeds/ssh_text/hashed"
cargo run --quiet -p kdump-ssh --example ssh_fuzz_seeds -- "$seeds/ssh_handshake"
cat > "$seeds/ssh_text/key" <<'KEY'
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBw92UUC7EPyqauXpS30ugvcv8q/8KyhKDWloh8d6JZFAAAAJAS3KSYEtyk
mAAAAAtzc2gtZWQyNTUxOQAAACBw92UUC7EPyqauXpS30ugvcv8q/8KyhKDWloh8d6JZFA
AAAECx0LDYfKalcyEo9JVc3QGyVLykJubnHI75033aEXZRonD3ZRQLsQ/Kpq5elLfS6C9y
/yr/wrKEoNaWiHx3olkUAAAAB3Rlc3RrZXkBAgMEBQY=
-----END OPENSSH PRIVATE KEY-----
KEY

echo "== building the fuzz targets (SanitizerCoverage, stable)"
# --target keeps these flags off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --quiet --release --manifest-path fuzz/Cargo.toml --target x86_64-unknown-linux-gnu \
  --target-dir "$out/build"
bin=$out/build/x86_64-unknown-linux-gnu/release

failed=0
passed=0
printf '%-14s %8s %8s %10s %s\n' target edges features runs result
for t in "${targets[@]}"; do
  corpus=$out/corpus/$t
  mkdir -p "$corpus" "$out/artifacts"
  log=$out/$t.log
  rc=0
  "$bin/$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$t-" "$corpus" "$seeds/$t" > "$log" 2>&1 || rc=$?
  edges=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  features=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  result=ok
  if [ $rc -ne 0 ]; then
    result="CRASHED (exit $rc): see $log and $out/artifacts/$t-*"
    failed=1
  elif [ "${edges:-0}" -lt "${floor[$t]}" ]; then
    result="too shallow: ${edges:-0} edges, floor ${floor[$t]} (are the seeds still valid?)"
    failed=1
  fi
  printf '%-14s %8s %8s %10s %s\n' "$t" "${edges:-?}" "${features:-?}" "${runs:-?}" "$result"
  if [ "$result" = ok ]; then passed=$((passed + 1)); fi
done
echo "fuzz: $passed passed, $(( ${#targets[@]} - passed )) failed"
if [ $failed -ne 0 ]; then
  grep -h -A20 -E 'panicked|ERROR: libFuzzer' "$out"/*.log | head -60 || true
  exit 1
fi
