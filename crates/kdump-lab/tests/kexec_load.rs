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

/// `kexec -c -p` of an xz-compressed bzImage (`xz` on the host, CRC64 as the CLI writes):
/// decompressed in user space, loaded with kexec_load, and the crash boots the capture kernel.
#[test]
fn legacy_xz_compressed_kernel_crash() {
    let image = Vm::default().kernel.image().expect("lab kernel");
    let out = std::process::Command::new("xz").args(["-c", "-T1", "-3"]).arg(&image).output().expect("xz");
    assert!(out.status.success(), "xz failed");
    let first = r#"kexec -c -p /lab/vmlinuz.xz --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline)"
cat /sys/kernel/kexec_crash_loaded > /results/crash_loaded
sync
echo c > /proc/sysrq-trigger
"#;
    let capture = "test -e /proc/vmcore && echo yes > /results/vmcore-present\n";
    let outcome = Scenario::new("kexec-c-xz", first)
        .file("/lab/vmlinuz.xz", out.stdout, 0o644)
        .capture(capture)
        .run()
        .expect("scenario");
    assert_eq!(outcome.read_result("crash_loaded").unwrap().trim(), "1");
    assert_eq!(outcome.read_result("vmcore-present").unwrap().trim(), "yes", "{}", outcome.console);
}
