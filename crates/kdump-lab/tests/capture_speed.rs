//! `kdump dump` reading /proc/vmcore in the capture kernel: the mmap path and
//! the read() fallback give byte-identical dumps (CI), and the benchmark
//! against makedumpfile on the same /proc/vmcore in one boot
//! (`scripts/bench-capture.sh`, an ignored test here).

use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_lab::{FILL_LIKE_A_SERVER, LOAD_CAPTURE_KERNEL, Scenario, Vm};

/// The bytes of a kdump-compressed file without the dump time (`timestamp` of
/// `disk_dump_header`, bytes 408..424), the one field two runs may differ in.
fn without_timestamp(path: &Path) -> Vec<u8> {
    let mut b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..8], b"KDUMP   ", "{} is not kdump-compressed", path.display());
    b[408..424].fill(0);
    b
}

#[test]
fn mmap_and_read_paths_give_identical_dumps_in_the_capture_kernel() {
    let first = format!(
        "{LOAD_CAPTURE_KERNEL}\
mkdir -p /tmp/cache && mount -t tmpfs tmpfs /tmp/cache
dd if=/dev/urandom of=/tmp/cache/file bs=1M count=16 2>/dev/null
sync
echo c > /proc/sysrq-trigger
"
    );
    // Each pair: mmap (the default) and read() (--non-mmap, or the environment variable).
    let capture = "\
kdump dump -l -d 31 --timings /proc/vmcore /results/mmap-l31.kdump 2> /results/mmap-l31.log
kdump dump -l -d 31 --timings --non-mmap /proc/vmcore /results/read-l31.kdump 2> /results/read-l31.log
kdump dump -z -d 1 --timings /proc/vmcore /results/mmap-z1.kdump 2> /results/mmap-z1.log
KDUMP_NO_MMAP=1 kdump dump -z -d 1 --timings /proc/vmcore /results/read-z1.kdump 2> /results/read-z1.log
cat /results/*.log
";
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), results_disk_mib: 512, ..Vm::default() };
    let outcome = Scenario::new("capture-mmap-vs-read", &first).capture(capture).vm(vm).run().expect("scenario");
    for (name, pages_at_least) in [("l31", 1000usize), ("z1", 100_000)] {
        let mapped = outcome.result_path(&format!("mmap-{name}.kdump"));
        let read = outcome.result_path(&format!("read-{name}.kdump"));
        let (a, b) = (without_timestamp(&mapped), without_timestamp(&read));
        assert!(a == b, "{name}: the mmap and read() dumps of the same /proc/vmcore differ");
        assert!(a.len() > pages_at_least * 10, "{name}: {} bytes is too small for a dump", a.len());
        let log = |way: &str| outcome.read_result(&format!("{way}-{name}.log")).unwrap();
        assert!(log("mmap").contains("source read by mmap;"), "{name}: mmap was not used:\n{}", log("mmap"));
        assert!(
            log("read").contains("source read by read() (mmap turned off);"),
            "{name}: read() was not forced:\n{}",
            log("read")
        );
        for way in ["mmap", "read"] {
            for stage in ["classification", "reading", "compression", "writing", "fsync", "peak RSS"] {
                assert!(log(way).contains(stage), "{way}-{name}: no {stage} in --timings:\n{}", log(way));
            }
        }
    }
}

/// Debian's makedumpfile and the shared libraries it loads, for the guest.
fn makedumpfile_files() -> Vec<(String, Vec<u8>)> {
    let bin = PathBuf::from("/usr/sbin/makedumpfile");
    let bin = if bin.exists() { bin } else { PathBuf::from("/usr/bin/makedumpfile") };
    let ldd = Command::new("ldd").arg(&bin).output().expect("ldd");
    let mut files = vec![("makedumpfile".to_string(), std::fs::read(&bin).expect("makedumpfile installed"))];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line.split("=>").last().unwrap_or("").split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            let name = Path::new(path).file_name().unwrap().to_string_lossy().to_string();
            files.push((name, std::fs::read(path).unwrap()));
        }
    }
    files
}

/// One bench boot: fills a guest of `KDUMP_BENCH_MIB` MiB (random data in
/// tmpfs, page cache, anonymous memory with transparent huge pages), crashes
/// it, and in the capture kernel runs makedumpfile and `kdump dump` on the
/// same /proc/vmcore under busybox `time -v`. Prints one line per run:
/// `RUN <name> | <wall m:ss> | <peak RSS KiB> | <output bytes>`.
#[test]
#[ignore = "benchmark: scripts/bench-capture.sh"]
fn bench_capture_kernel() {
    let mib: u32 = std::env::var("KDUMP_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let base = std::env::var_os("KDUMP_BENCH_BASE").map(PathBuf::from);
    let levels = std::env::var("KDUMP_BENCH_LEVELS").unwrap_or_else(|_| "31 1".into());
    let mut scenario_files: Vec<(String, Vec<u8>)> = makedumpfile_files();
    if let Some(base) = &base {
        scenario_files.push(("kdump-base".into(), std::fs::read(base).expect("KDUMP_BENCH_BASE")));
    }
    let copy: String =
        scenario_files.iter().map(|(n, _)| format!("cp /lab/t/{n} /results/t/{n}\n")).collect::<String>();
    let first = format!(
        "{LOAD_CAPTURE_KERNEL}\
MEM={mib}
mkdir -p /results/t
{copy}chmod 755 /results/t/*
echo always > /sys/kernel/mm/transparent_hugepage/enabled || true
{FILL_LIKE_A_SERVER}
grep -E 'AnonHugePages|^Cached|MemFree' /proc/meminfo
sync
echo c > /proc/sysrq-trigger
"
    );
    let has_base = if base.is_some() { "1" } else { "0" };
    // zlib and snappy take minutes per GiB under TCG: KDUMP_BENCH_CODECS=lz runs lzo and zstd only.
    let rounds: u32 = std::env::var("KDUMP_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let all_codecs = if std::env::var("KDUMP_BENCH_CODECS").is_ok_and(|c| c == "lz") { "0" } else { "1" };
    let capture = format!(
        r#"
T=/results/t
MDF="$T/ld-linux-x86-64.so.2 --library-path $T $T/makedumpfile"
rm -f /results/cache
one() {{ # name, command...
  name=$1; shift
  rm -f /results/out /results/out.incomplete
  sync; echo 3 > /proc/sys/vm/drop_caches
  time -v "$@" /proc/vmcore /results/out > /results/run.log 2>&1 || {{ echo "RUN-FAILED $name"; cat /results/run.log; }}
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' /results/run.log)
  # busybox time reports ru_maxrss (KiB) multiplied by 4 (it takes it for pages): undo that.
  rss=$(( $(sed -n 's/.*Maximum resident set size (kbytes): //p' /results/run.log) / 4 ))
  size=$(stat -c %s /results/out 2>/dev/null || echo 0)
  echo "RUN $name | $wall | $rss | $size"
  grep -E '^kdump:   ' /results/run.log || true
  rm -f /results/out
}}
ls -l /proc/vmcore
for d in {levels}; do
  # The main comparison, interleaved {rounds} times: the host's load varies, take the best of each.
  for r in $(seq {rounds}); do
    one "makedumpfile -l -d $d" $MDF -l -d $d
    one "kdump dump -l -d $d" kdump dump -l -d $d --timings
    one "kdump dump -z -d $d" kdump dump -z -d $d --timings
  done
  if [ $d = 31 ]; then
    if [ {has_base} = 1 ]; then one "kdump dump -l -d $d (before this change)" $T/kdump-base dump -l -d $d --message-level 0; fi
    one "kdump dump -l -d $d --non-mmap" kdump dump -l -d $d --non-mmap --timings
  fi
  if [ $d = 31 ] && [ {all_codecs} = 1 ]; then
    one "makedumpfile -c -d $d" $MDF -c -d $d
    one "makedumpfile -p -d $d" $MDF -p -d $d
    one "kdump dump -c -d $d" kdump dump -c -d $d --timings
    one "kdump dump -p -d $d" kdump dump -p -d $d --timings
    if [ {has_base} = 1 ]; then one "kdump dump -z -d $d (before this change)" $T/kdump-base dump -z -d $d --message-level 0; fi
  fi
done
one "kdump dump --mem-usage" sh -c 'kdump dump --mem-usage "$0" > "$1"'
"#
    );
    let vm = Vm {
        memory_mib: mib,
        cpus: 2,
        crashkernel: Some("256M".into()),
        results_disk_mib: mib * 2 + 1024,
        timeout: std::time::Duration::from_secs(3600),
        ..Vm::default()
    };
    let mut scenario = Scenario::new(&format!("bench-capture-{mib}"), &first).capture(&capture).vm(vm);
    for (name, data) in scenario_files {
        scenario = scenario.file(&format!("/lab/t/{name}"), data, 0o755);
    }
    let outcome = scenario.run().expect("bench scenario");
    let mut printed = 0;
    for line in outcome.console.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("RUN") || line.starts_with("kdump:   ") || line.contains("AnonHugePages") {
            println!("{line}");
            printed += 1;
        }
    }
    assert!(printed > 0, "no results on the console");
    assert!(!outcome.console.contains("RUN-FAILED"), "a run failed; see the console");
}
