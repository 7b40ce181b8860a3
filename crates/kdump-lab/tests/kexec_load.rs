//! Lab tests of `kexec -c`: kexec_load with our own ELF core headers, boot_params, e820 map
//! and Rust purgatory, on Debian's kernel, with 5-level (`-cpu max`) and 4-level
//! (`-cpu Haswell-v4`) paging.

mod common;

use common::{Phdr, START_KERNEL_MAP, check_vmcore_notes, minus, phys_ranges, program_headers, ram_loads};
use kdump_lab::{Scenario, Vm};
use kdump_machine::MachineInfo;

/// Shell helpers for the guest: `phys_off FILE PADDR` prints the file offset of physical
/// address PADDR in an ELF core file (/proc/kcore, /proc/vmcore), from its PT_LOADs.
const ELF_SH: &str = r#"u64() { od -A n -t d8 -j $2 -N 8 $1 | tr -d ' '; }
u32() { od -A n -t u4 -j $2 -N 4 $1 | tr -d ' '; }
u16() { od -A n -t u2 -j $2 -N 2 $1 | tr -d ' '; }
phys_off() {
  phoff=$(u64 $1 32); n=$(u16 $1 56); i=0
  while [ $i -lt $n ]; do
    h=$((phoff + i * 56))
    if [ "$(u32 $1 $h)" = 1 ]; then
      p=$(u64 $1 $((h + 24))); sz=$(u64 $1 $((h + 32)))
      if [ $p -ge 0 ] && [ $2 -ge $p ] && [ $2 -lt $((p + sz)) ]; then echo $(( $(u64 $1 $((h + 8))) + $2 - p )); return 0; fi
    fi
    i=$((i + 1))
  done
  echo none
}
# low FILE OUT: the bytes of physical [0x1000, 0x9fc00) (the backup region) as FILE maps them.
low() { off=$(phys_off $1 4096); [ "$off" != none ]; dd if=$1 of=$2 bs=1024 skip=$((off / 1024)) count=635; }
"#;

const LOAD_ARGS: &str = r#"/lab/vmlinuz --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline)""#;

/// Copies the files `kexec -c` reads into /results/sysroot, so the machine can be replayed
/// as a golden fixture (tests/fixtures/machines/).
const CAPTURE_SYSROOT: &str = r#"for f in /proc/iomem /proc/sys/kernel/osrelease /proc/sys/kernel/kexec_load_disabled \
         /sys/kernel/vmcoreinfo /sys/kernel/kexec_loaded /sys/kernel/kexec_crash_loaded \
         /sys/kernel/kexec_crash_size /sys/kernel/security/lockdown \
         /sys/devices/system/cpu/possible /sys/devices/system/cpu/present /sys/devices/system/cpu/online \
         /sys/devices/system/cpu/cpu*/crash_notes /sys/devices/system/cpu/cpu*/crash_notes_size \
         /sys/kernel/boot_params/data; do
  mkdir -p /results/sysroot$(dirname $f)
  cat $f > /results/sysroot$f
done
dd if=/proc/kcore of=/results/sysroot/proc/kcore bs=4096 count=4
"#;

#[test]
#[ignore = "refreshes the captured machines of tests/fixtures/machines; run by hand"]
fn capture_machine_fixtures() {
    for (name, cpu) in [("max", "max"), ("haswell", "Haswell-v4")] {
        let vm = Vm { cpu_model: cpu.into(), ..Vm::default() };
        let outcome =
            Scenario::new(&format!("kexec-c-fixture-{name}"), CAPTURE_SYSROOT).vm(vm).run().expect("scenario");
        eprintln!("captured {}", outcome.result_path("sysroot").display());
    }
}

fn hex(v: &serde_json::Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a hex string: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// Loads the lab's capture kernel with `kexec -c -p`, crashes, and checks what the capture
/// kernel's /proc/vmcore shows against the first kernel's own description of itself.
fn legacy_crash(name: &str, vm: Vm, levels: u8) {
    let marker = format!("lab.backup_marker={name}");
    let first = format!(
        "{ELF_SH}kexec -c -p --print-plan {LOAD_ARGS} > /results/plan.json
kexec -c -p -d {LOAD_ARGS}
cat /sys/kernel/kexec_crash_loaded > /results/crash_loaded
kdump sysinfo --json > /results/first-sysinfo.json
low /proc/kcore /results/low-first
sync
echo c > /proc/sysrq-trigger
"
    );
    let capture = format!(
        "{ELF_SH}cat /proc/cmdline > /results/capture-cmdline
dd if=/proc/vmcore of=/results/vmcore-head bs=4096 count=64
low /proc/vmcore /results/low-vmcore
low /proc/kcore /results/low-capture
"
    );
    let vm = Vm { extra_cmdline: marker.clone(), ..vm };
    // (The first script fails, and the run with it, if kexec -c refuses or the crash does not
    // hand over; the lab prints the serial console then.)
    let outcome = Scenario::new(name, &first).capture(&capture).vm(vm).run().expect("scenario");

    assert_eq!(outcome.read_result("crash_loaded").unwrap().trim(), "1");
    assert!(outcome.console.contains("Kernel panic - not syncing: sysrq triggered crash"), "{}", outcome.console);
    let plan: serde_json::Value = serde_json::from_str(&outcome.read_result("plan.json").unwrap()).unwrap();
    assert_eq!(plan["machine"]["paging_levels"], levels, "paging levels seen by the planner");
    assert!(plan["machine"]["warnings"].as_array().unwrap().is_empty(), "{}", plan["machine"]["warnings"]);

    // The capture kernel booted with our command line and elfcorehdr=.
    let cmdline = outcome.read_result("capture-cmdline").unwrap();
    let elfcorehdr = hex(&plan["elfcorehdr"]);
    assert!(cmdline.contains(&format!("elfcorehdr={}K", elfcorehdr / 1024)), "{cmdline}");
    assert!(cmdline.contains("irqpoll nr_cpus=1 reset_devices"), "{cmdline}");

    let info: MachineInfo = serde_json::from_str(&outcome.read_result("first-sysinfo.json").unwrap()).unwrap();
    let head = std::fs::read(outcome.result_path("vmcore-head")).unwrap();
    let phdrs = program_headers(&head);

    let text = check_vmcore_notes(&head, &phdrs, &info);

    // Kernel text at its (KASLR) virtual address, from /proc/kcore.
    let ktext: Vec<&Phdr> = phdrs.iter().filter(|p| p.p_type == 1 && p.vaddr >= START_KERNEL_MAP).collect();
    assert_eq!(ktext.len(), 1, "one kernel-text PT_LOAD");
    assert_eq!(ktext[0].paddr, info.kernel_code.unwrap().start, "kernel text starts at Kernel code");
    assert_eq!(ktext[0].vaddr, hex(&plan["machine"]["kernel_text"]["vaddr"]));
    let kaslr_text =
        text.lines().find_map(|l| l.strip_prefix("SYMBOL(_stext)=")).map(|v| u64::from_str_radix(v, 16).unwrap());
    if let Some(stext) = kaslr_text {
        assert!(
            ktext[0].vaddr <= stext && stext < ktext[0].vaddr + ktext[0].filesz,
            "_stext {stext:#x} in the text PT_LOAD"
        );
    }

    // RAM PT_LOADs: exactly System RAM minus the crash region, in the direct map.
    let base = hex(&plan["machine"]["direct_map_base"]);
    let ram = ram_loads(&phdrs);
    for p in &ram {
        assert_eq!(p.vaddr, base.wrapping_add(p.paddr), "{p:?}: p_vaddr in the direct map");
    }
    let loads = phys_ranges(&ram);
    assert_eq!(loads, minus(&info.system_ram, &info.crash_regions), "PT_LOADs vs System RAM minus the crash region");

    // Backup region: /proc/vmcore shows what the first kernel had in [0x1000, 0x9fc00) just
    // before the crash (read through its /proc/kcore), not what is there now that the capture
    // kernel runs: the purgatory copied it and the PT_LOAD points at the copy.
    let backup = &plan["backup"];
    let low_range = ram.iter().find(|p| p.paddr == 0x1000).expect("a PT_LOAD for the backup region");
    assert_eq!(low_range.filesz, hex(&backup["len"]));
    let first_low = std::fs::read(outcome.result_path("low-first")).unwrap();
    let vmcore_low = std::fs::read(outcome.result_path("low-vmcore")).unwrap();
    let capture_low = std::fs::read(outcome.result_path("low-capture")).unwrap();
    assert_eq!(first_low.len(), 0x9ec00);
    assert!(first_low.iter().any(|&b| b != 0), "the first kernel's low memory is not all zeros");
    let differ = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x != y).count();
    assert_eq!(differ(&first_low, &vmcore_low), 0, "vmcore's backup region == the first kernel's low memory");
    // The planted marker: QEMU's loader put the first kernel's command line (with
    // lab.backup_marker=…) at 0x20000, inside the backup region, where it stays until the crash.
    let marker_in = |b: &[u8]| b.windows(marker.len()).any(|w| w == marker.as_bytes());
    assert!(marker_in(&vmcore_low), "the planted marker is in vmcore's view of the first 640 KiB");
    // And the copy matters: the capture kernel has since written its own real-mode trampoline
    // there, so reading [0x1000, 0x9fc00) directly would not give the crashed kernel's bytes.
    let changed = differ(&first_low, &capture_low);
    assert!(changed > 0, "the capture kernel reused low memory (else this test proves nothing about the copy)");
    eprintln!("{name}: {changed} bytes of low memory changed under the capture kernel; vmcore shows the saved copy");
}

kdump_lab::kernel_matrix! {
    /// With the CPU model each kernel supports best: 5-level paging except on 5.10.
    fn legacy_panic_load_crash(kernel) {
        let levels = if kernel.cpu_model() == "max" { 5 } else { 4 };
        legacy_crash(&format!("kexec-c-crash-{kernel}"), Vm::on(kernel), levels);
    }
}

#[test]
fn legacy_panic_load_crash_4level() {
    legacy_crash("kexec-c-crash-haswell", Vm { cpu_model: "Haswell-v4".into(), ..Vm::default() }, 4);
}

/// `-a` (the default) falls back to kexec_load when kexec_file_load refuses the image with
/// ENOEXEC: a copy of the kernel without XLF_CAN_BE_LOADED_ABOVE_4G, which the kernel's
/// bzImage64 probe rejects but which loads below 4 GiB through our planner. `-s` keeps the
/// refusal. A gzip-compressed bzImage goes to kexec_load directly.
#[test]
fn auto_falls_back_to_kexec_load_on_enoexec() {
    let first = r#"cp /lab/vmlinuz /tmp/vmlinuz-no4g
printf '\175' | dd of=/tmp/vmlinuz-no4g bs=1 seek=566 conv=notrunc
set +e
kexec -s -p /tmp/vmlinuz-no4g --initrd=/lab/capture.img 2>/results/file-only.err; echo $? > /results/file-only.rc
set -e
cat /sys/kernel/kexec_crash_loaded > /results/after-file-only
kexec -p /tmp/vmlinuz-no4g --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline)" 2>/results/auto.err
cat /results/auto.err
cat /sys/kernel/kexec_crash_loaded > /results/after-auto
kexec -p -u
gzip -c /lab/vmlinuz > /tmp/vmlinuz.gz
kexec -p /tmp/vmlinuz.gz --initrd=/lab/capture.img 2>/results/gzip.err
cat /sys/kernel/kexec_crash_loaded > /results/after-gzip
kexec -p -u
"#;
    let outcome = Scenario::new("kexec-auto-fallback", first).carry_capture_kernel("true").run().expect("scenario");
    assert_eq!(outcome.read_result("file-only.rc").unwrap().trim(), "1");
    assert_eq!(outcome.read_result("after-file-only").unwrap().trim(), "0");
    let auto = outcome.read_result("auto.err").unwrap();
    assert!(auto.contains("falling back to kexec_load"), "{auto}");
    assert_eq!(outcome.read_result("after-auto").unwrap().trim(), "1", "loaded through kexec_load");
    // A gzip-compressed bzImage: decompressed and loaded with kexec_load.
    let gzip = outcome.read_result("gzip.err").unwrap();
    assert!(gzip.contains("is compressed: loading it with kexec_load"), "{gzip}");
    assert_eq!(outcome.read_result("after-gzip").unwrap().trim(), "1");
}

/// The paper's variant: the memory map on the command line (`memmap=exactmap …`), no backup
/// copy, and `-i` (the purgatory skips the SHA-256 check). The capture kernel still boots and
/// exposes the crashed kernel's memory; without the backup the low PT_LOAD reads low memory
/// directly.
#[test]
fn legacy_memmap_cmdline_no_backup_no_checks() {
    let first = format!(
        "kexec -c -p -i --no-backup --pass-memmap-cmdline --print-plan {LOAD_ARGS} > /results/plan.json
kexec -c -p -i --no-backup --pass-memmap-cmdline {LOAD_ARGS}
sync
echo c > /proc/sysrq-trigger
"
    );
    let capture = "cat /proc/cmdline > /results/capture-cmdline
dd if=/proc/vmcore of=/results/vmcore-head bs=4096 count=64
";
    let vm = Vm { cpu_model: "Haswell-v4".into(), ..Vm::default() };
    let outcome = Scenario::new("kexec-c-memmap", &first).capture(capture).vm(vm).run().expect("scenario");
    let plan: serde_json::Value = serde_json::from_str(&outcome.read_result("plan.json").unwrap()).unwrap();
    assert!(plan["backup"].is_null() && plan["purgatory_checks"] == false);
    let cmdline = outcome.read_result("capture-cmdline").unwrap();
    assert!(cmdline.contains("memmap=exactmap memmap="), "{cmdline}");
    let phdrs = program_headers(&std::fs::read(outcome.result_path("vmcore-head")).unwrap());
    let low = phdrs.iter().find(|p| p.p_type == 1 && p.paddr == 0x1000).expect("low PT_LOAD");
    assert_eq!(low.filesz, 0x9ec00);
}

/// `kexec -c -l` + `kexec -e`: a normal kexec_load (no ELF headers, all RAM in the e820 map)
/// boots the new kernel through our purgatory, with its command line.
#[test]
fn legacy_load_and_exec_boots_the_new_kernel() {
    let first = "\
kexec -c -l -d /lab/vmlinuz --initrd=/lab/capture.img --append='console=ttyS0 panic=-1 lab.marker=legacy-exec'
cat /sys/kernel/kexec_loaded > /results/loaded
sync
kexec -e
";
    let second = "cat /proc/cmdline > /results/second-cmdline\n";
    let vm = Vm { crashkernel: None, cpu_model: "Haswell-v4".into(), ..Vm::default() };
    let outcome = Scenario::new("kexec-c-load-exec", first).capture(second).vm(vm).run().expect("scenario");
    assert_eq!(outcome.read_result("loaded").unwrap().trim(), "1");
    let cmdline = outcome.read_result("second-cmdline").unwrap();
    assert_eq!(cmdline.trim(), "console=ttyS0 panic=-1 lab.marker=legacy-exec");
}

/// `crashkernel=256M,high` + `crashkernel=72M,low` on a 5 GiB machine: everything is loaded
/// into the high region above 4 GiB (kernel, initrd through `ext_ramdisk_*`, boot_params and
/// command line through `ext_cmd_line_ptr`), both regions are RAM for the capture kernel, and
/// the PT_LOADs leave both out.
#[test]
fn legacy_crash_region_above_4g_with_low_region() {
    let first = format!(
        "kexec -c -p --print-plan {LOAD_ARGS} > /results/plan.json
kexec -c -p {LOAD_ARGS}
kdump sysinfo --json > /results/first-sysinfo.json
sync
echo c > /proc/sysrq-trigger
"
    );
    let capture = "cat /proc/cmdline > /results/capture-cmdline
dd if=/proc/vmcore of=/results/vmcore-head bs=4096 count=64
";
    let vm = Vm {
        memory_mib: 5120,
        crashkernel: Some("256M,high".into()),
        extra_cmdline: "crashkernel=72M,low".into(),
        cpu_model: "Haswell-v4".into(),
        ..Vm::default()
    };
    let outcome = Scenario::new("kexec-c-crash-high", &first).capture(capture).vm(vm).run().expect("scenario");
    let plan: serde_json::Value = serde_json::from_str(&outcome.read_result("plan.json").unwrap()).unwrap();
    let info: MachineInfo = serde_json::from_str(&outcome.read_result("first-sysinfo.json").unwrap()).unwrap();
    assert_eq!(info.crash_regions.len(), 2, "{:?}", info.crash_regions);
    assert!(hex(&plan["kernel"]["load"]) > 1 << 32, "kernel above 4 GiB: {}", plan["kernel"]);
    assert!(hex(&plan["boot_params"]) > 1 << 32);
    let cmdline = outcome.read_result("capture-cmdline").unwrap();
    assert!(cmdline.contains(&format!("elfcorehdr={}K", hex(&plan["elfcorehdr"]) / 1024)), "{cmdline}");
    let phdrs = program_headers(&std::fs::read(outcome.result_path("vmcore-head")).unwrap());
    let loads = phys_ranges(&ram_loads(&phdrs));
    assert_eq!(loads, minus(&info.system_ram, &info.crash_regions), "PT_LOADs skip both crash regions");
}

/// One sample of a running lab VM: wall time since sampling started, CPU time QEMU has used
/// so far (all its threads), and the length of the serial console log.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: std::time::Duration,
    qemu_cpu: std::time::Duration,
    console_len: u64,
}

/// Samples the lab VM from the host while it runs: each time console.log grows, when and how
/// much CPU QEMU had used. QEMU writes the guest's serial output to the file as it is emitted,
/// so a console byte was printed at the first sample that covers it (1 ms poll). QEMU's CPU time
/// (the sum of its threads' run time, /proc/PID/task/*/schedstat) hardly depends on what else
/// the host runs, unlike wall time on a shared machine.
struct ConsoleClock {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Sample>>,
}

impl ConsoleClock {
    fn start(scenario: &str) -> Self {
        use std::sync::atomic::Ordering;
        let path = kdump_lab::runs_dir().join(scenario).join("console.log");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let mut samples = Vec::new();
            let mut last = u64::MAX;
            // The lab deletes the previous run's directory first: only trust the file once it
            // has been missing, so a stale log from the last run is never sampled.
            let mut seen_new = false;
            let mut qemu = None;
            let mut polls = 0u64;
            while !flag.load(Ordering::Relaxed) {
                polls += 1;
                let len = std::fs::metadata(&path).map(|m| m.len()).ok();
                if len.is_none() {
                    seen_new = true;
                }
                if seen_new && qemu.is_none() && polls.is_multiple_of(20) {
                    qemu = find_qemu(&path);
                }
                if let (Some(len), Some(pid)) = (len, qemu)
                    && seen_new
                    && len != last
                {
                    samples.push(Sample { wall: t0.elapsed(), qemu_cpu: cpu_time(pid), console_len: len });
                    last = len;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            samples
        });
        ConsoleClock { stop, thread }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("console sampler")
    }
}

/// The QEMU process writing `console` (its command line names the file).
fn find_qemu(console: &std::path::Path) -> Option<u32> {
    let needle = format!("file:{}", console.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        cmdline.split(|&b| b == 0).any(|arg| arg == needle.as_bytes()).then_some(pid)
    })
}

/// CPU time used by all threads of `pid` (first field of each thread's schedstat, in ns).
fn cpu_time(pid: u32) -> std::time::Duration {
    let ns: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    std::time::Duration::from_nanos(ns)
}

/// The first sample whose console covers byte `offset`.
fn sample_at(samples: &[Sample], offset: usize) -> Sample {
    *samples.iter().find(|s| s.console_len > offset as u64).expect("sampled that far")
}

/// Time from the sysrq crash message to the capture kernel's first console line.
#[derive(Clone, Copy, Debug)]
struct PanicToCapture {
    wall: std::time::Duration,
    qemu_cpu: std::time::Duration,
}

/// A QEMU whose TCG emulates the SHA extensions (8.1 or later): the one in PATH if it is new
/// enough, else QEMU from Debian's bookworm-backports, unpacked into target/ by
/// scripts/lab-qemu-backports.sh (apt-get download on first use, as the lab fetches its kernel).
fn qemu_with_sha_ni() -> std::path::PathBuf {
    use std::process::Command;
    let version = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let numbers: Vec<u32> = version
        .split("version ")
        .nth(1)
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    if numbers.len() == 2 && (numbers[0], numbers[1]) >= (8, 1) {
        return "qemu-system-x86_64".into();
    }
    let script = kdump_lab::workspace_root().join("scripts/lab-qemu-backports.sh");
    let out = Command::new(&script).output().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "QEMU in PATH ({}) does not emulate SHA-NI (needs 8.1+), and {} failed:\n{}",
        version.lines().next().unwrap_or("none"),
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("qemu-system-x86_64")
}

/// A panic load with `kexec -c -p` (plus `extra_flags`) on a CPU with (`max` under QEMU >= 8.1)
/// or without (`max,-sha-ni`) the SHA extensions: the purgatory verifies the segments on the
/// matching SHA-256 path and the capture kernel boots. Measures, from the host, the time from
/// the sysrq crash message to the capture kernel's first console line (`Linux version`,
/// printed early thanks to `earlyprintk`): crash shutdown, relocate_kernel, the purgatory, the
/// capture kernel's decompression and early setup.
fn crash_through_purgatory(name: &str, cpu_model: &str, expect_sha_ni: bool, extra_flags: &str) -> PanicToCapture {
    let first = format!(
        r#"if grep -qw sha_ni /proc/cpuinfo; then echo yes; else echo no; fi > /results/sha_ni
kexec -c -p -d {extra_flags} /lab/vmlinuz --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline) earlyprintk=serial,ttyS0,115200"
sync
echo c > /proc/sysrq-trigger
"#
    );
    let capture = "echo capture-ok > /results/capture-ok\n";
    // One QEMU for both paths, so they differ only in the CPU model.
    let qemu = qemu_with_sha_ni();
    let vm = Vm { cpu_model: cpu_model.into(), qemu: qemu.clone(), ..Vm::default() };
    let clock = ConsoleClock::start(name);
    let outcome = Scenario::new(name, &first).capture(capture).vm(vm).run();
    let samples = clock.finish();
    let outcome = outcome.expect("scenario");
    let guest_sha_ni = outcome.read_result("sha_ni").unwrap().trim() == "yes";
    assert_eq!(
        guest_sha_ni,
        expect_sha_ni,
        "SHA-NI in the guest's /proc/cpuinfo with {} -cpu {cpu_model}",
        qemu.display()
    );
    assert_eq!(outcome.read_result("capture-ok").unwrap().trim(), "capture-ok");

    let console = std::fs::read(outcome.run_dir.join("console.log")).unwrap();
    let find = |needle: &str, from: usize| {
        console[from..].windows(needle.len()).position(|w| w == needle.as_bytes()).map(|p| p + from)
    };
    let crash = find("sysrq: Trigger a crash", 0).expect("the sysrq crash message");
    let second = find("Linux version", crash).expect("the capture kernel's first message");
    let (a, b) = (sample_at(&samples, crash), sample_at(&samples, second));
    let t = PanicToCapture { wall: b.wall - a.wall, qemu_cpu: b.qemu_cpu - a.qemu_cpu };
    eprintln!(
        "{name} (-cpu {cpu_model} {extra_flags}): sysrq crash message -> capture kernel's first line: \
         {:.0} ms wall, {:.0} ms QEMU CPU",
        t.wall.as_secs_f64() * 1e3,
        t.qemu_cpu.as_secs_f64() * 1e3
    );
    t
}

#[test]
fn purgatory_sha_ni_path_boots_the_capture_kernel() {
    crash_through_purgatory("kexec-c-purgatory-sha-ni", "max", true, "");
}

#[test]
fn purgatory_portable_path_boots_the_capture_kernel() {
    crash_through_purgatory("kexec-c-purgatory-portable", "max,-sha-ni", false, "");
}

/// docs/PERFORMANCE.md, "panic to capture kernel": `ROUNDS` (default 3) rounds of the SHA-NI
/// path, the portable path and `-i` (no verification), one VM at a time; medians and minima.
#[test]
#[ignore = "timing, several minutes; run by hand"]
fn panic_to_capture_kernel_timing() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let cases = [
        ("sha-ni", "max", true, ""),
        ("portable", "max,-sha-ni", false, ""),
        ("-i (no checks)", "max,-sha-ni", false, "-i"),
    ];
    let mut times: Vec<Vec<PanicToCapture>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, &(_, cpu, sha_ni, flags)) in cases.iter().enumerate() {
            times[i].push(crash_through_purgatory("kexec-c-purgatory-timing", cpu, sha_ni, flags));
        }
    }
    let ms = |d: std::time::Duration| format!("{:.0}", d.as_secs_f64() * 1e3);
    let median_cpu = |t: &[PanicToCapture]| {
        let mut cpu: Vec<_> = t.iter().map(|t| t.qemu_cpu).collect();
        cpu.sort();
        cpu[cpu.len() / 2]
    };
    // Even emulated, the three paths differ in work done: no hash < SHA-NI < portable.
    let (sha_ni, portable, none) = (median_cpu(&times[0]), median_cpu(&times[1]), median_cpu(&times[2]));
    assert!(none < sha_ni && sha_ni < portable, "QEMU CPU: -i {none:?}, SHA-NI {sha_ni:?}, portable {portable:?}");
    eprintln!("| path | wall ms median (min) | QEMU CPU ms median (min) |");
    eprintln!("|---|---|---|");
    for ((label, ..), t) in cases.iter().zip(&times) {
        let mut wall: Vec<_> = t.iter().map(|t| t.wall).collect();
        let mut cpu: Vec<_> = t.iter().map(|t| t.qemu_cpu).collect();
        wall.sort();
        cpu.sort();
        let (mw, mc) = (wall[wall.len() / 2], cpu[cpu.len() / 2]);
        eprintln!("| {label} | {} ({}) | {} ({}) |", ms(mw), ms(wall[0]), ms(mc), ms(cpu[0]));
    }
}
