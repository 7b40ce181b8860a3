//! Crash hotplug: memory and CPUs added after the capture kernel was loaded are in the dump.
//!
//! The first kernel loads the capture kernel, then QEMU's monitor hot-adds a 256 MiB DIMM
//! and a CPU; the guest onlines them and crashes. On kernels with crash hotplug (6.6+) the
//! kernel itself rewrites the loaded image's ELF core headers: always for kexec_file_load
//! (`kexec -s -p`), and for kexec_load (`kexec -c -p`) because we ask it to
//! (`KEXEC_UPDATE_ELFCOREHDR`, a headers segment of `crash_elfcorehdr_size`). Checked on the
//! host: a PT_LOAD of /proc/vmcore covers the DIMM's physical range as the first kernel's
//! /proc/iomem showed it, there is one NT_PRSTATUS per CPU online at the crash (the new one
//! included), and a `-d 31` dump of it reads back. `--no-hotplug` is the contrast: the
//! kernel leaves those headers alone and the new memory is missing.
//!
//! On a kernel without crash hotplug (6.1) the udev rule's `kdump reload --if-needed` reloads
//! what `kdump setup` loaded, and the dump our capture init saves covers the new memory and
//! CPU (without the reload it misses both).

mod common;

use std::fs::File;
use std::process::Command;

use common::{minus, notes, phys_ranges, program_headers, ram_loads};
use kdump_dumpfile::{KdumpReader, PageState, PhysMem};
use kdump_lab::{LabKernel, MonitorStep, Scenario, Vm, static_tools, workspace_root};
use kdump_machine::PhysRange;

/// Boot CPUs; the hot-added one is CPU 2 (`socket-id=2`, see [`Vm::max_cpus`]).
const BOOT_CPUS: u32 = 2;
const MARKER: &str = "LAB-HOTPLUG-NOW";
/// The capture kernel as the lab builds it.
const LOAD_ARGS: &str = r#"/lab/vmlinuz --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline)""#;

/// Guest side, after the load: ask the host for the DIMM and the CPU, wait for the kernel to
/// see them (ACPI events are handled asynchronously), online them, record the machine, crash.
/// `$reload`, if set, is evaluated after onlining (the udev path of kernels without crash hotplug).
const HOTPLUG_AND_CRASH: &str = r#"blocks_before=$(ls -d /sys/devices/system/memory/memory* | wc -l)
exec 3</dev/ttyS1
echo LAB-HOTPLUG-NOW
read -r reply <&3
i=0
while [ "$(ls -d /sys/devices/system/memory/memory* | wc -l)" -le "$blocks_before" ] || [ ! -e /sys/devices/system/cpu/cpu2/online ]; do
  i=$((i + 1)); [ $i -le 300 ] || { echo "hot-added devices never appeared"; exit 1; }
  sleep 0.1
done
echo 1 > /sys/devices/system/cpu/cpu2/online
for b in /sys/devices/system/memory/memory*; do
  if [ "$(cat $b/state)" = offline ]; then echo online > $b/state; fi
done
eval "$reload"
cat /proc/iomem > /results/iomem-after
cat /sys/devices/system/cpu/online > /results/cpus-online
kdump status > /results/status.txt 2>&1 || true
dmesg > /results/dmesg-first.txt
sync
echo c > /proc/sysrq-trigger
"#;

/// The capture kernel keeps the headers and notes of /proc/vmcore and a `-d 31` dump.
const CAPTURE: &str = "dd if=/proc/vmcore of=/results/vmcore-head bs=4096 count=64
kdump dump -d 31 /proc/vmcore /results/d31.kdump
";

/// A machine with room for one more DIMM and CPU, with the CPU model `kernel` supports.
fn hotplug_vm(kernel: LabKernel) -> Vm {
    Vm {
        memory_mib: 512,
        max_memory_mib: Some(1024),
        cpus: BOOT_CPUS,
        max_cpus: Some(4),
        crashkernel: Some("192M".into()),
        // The -d 31 dump: everything but the free pages of 768 MiB.
        results_disk_mib: 640,
        ..Vm::on(kernel)
    }
}

/// The monitor commands that hot-add a 256 MiB DIMM and CPU 2 of the model `cpu_model`.
fn hot_add(cpu_model: &str) -> MonitorStep {
    let cpu = format!("device_add {cpu_model}-x86_64-cpu,socket-id={BOOT_CPUS},core-id=0,thread-id=0,id=cpu2");
    MonitorStep::new(
        MARKER,
        &["object_add memory-backend-ram,id=mem1,size=256M", "device_add pc-dimm,id=dimm1,memdev=mem1", &cpu],
    )
}

/// "System RAM" ranges of a /proc/iomem above 4 GiB: the lab's machines have no boot RAM
/// there (512 MiB), so this is the DIMM QEMU placed in its device-memory region.
fn hot_added_ram(iomem: &str) -> Vec<PhysRange> {
    iomem
        .lines()
        .filter(|l| !l.starts_with(' ') && l.ends_with(": System RAM"))
        .filter_map(|l| {
            let (start, end) = l.split(" : ").next()?.split_once('-')?;
            Some(PhysRange { start: u64::from_str_radix(start, 16).ok()?, end: u64::from_str_radix(end, 16).ok()? })
        })
        .filter(|r| r.start >= 1 << 32)
        .collect()
}

/// Number of CPUs in a sysfs CPU list such as `0-2` or `0,2-3`.
fn cpu_count(list: &str) -> usize {
    list.trim()
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

/// What the capture kernel saw of the crashed machine.
struct Seen {
    /// The hot-added DIMM's physical range(s), from the first kernel's /proc/iomem.
    dimm: Vec<PhysRange>,
    /// Parts of `dimm` no PT_LOAD of /proc/vmcore covers.
    missing: Vec<PhysRange>,
    /// CPUs online at the crash.
    online_cpus: usize,
    /// NT_PRSTATUS notes in /proc/vmcore.
    prstatus: usize,
}

/// Boots `kernel`, loads with `load` (a shell line), hot-adds, crashes; reads what was seen.
fn crash_after_hotplug(name: &str, kernel: LabKernel, load: &str, reload: &str) -> (kdump_lab::Outcome, Seen) {
    let vm = hotplug_vm(kernel);
    let step = hot_add(&vm.cpu_model);
    let first =
        format!("{load}\n[ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 1 ]\nreload='{reload}'\n{HOTPLUG_AND_CRASH}");
    let outcome = Scenario::new(name, &first).capture(CAPTURE).monitor(step).vm(vm).run().expect("scenario");

    let iomem = outcome.read_result("iomem-after").unwrap();
    let dimm = hot_added_ram(&iomem);
    let size: u64 = dimm.iter().map(|r| r.end - r.start + 1).sum();
    assert_eq!(size, 256 << 20, "{name}: the DIMM as System RAM above 4 GiB in the first kernel:\n{iomem}");
    let online_cpus = cpu_count(&outcome.read_result("cpus-online").unwrap());
    assert_eq!(online_cpus, BOOT_CPUS as usize + 1, "{name}: the new CPU is online");

    let head = std::fs::read(outcome.result_path("vmcore-head")).unwrap();
    let phdrs = program_headers(&head);
    let missing = minus(&dimm, &phys_ranges(&ram_loads(&phdrs)));
    let note_segs: Vec<_> = phdrs.iter().filter(|p| p.p_type == 4).collect();
    assert_eq!(note_segs.len(), 1, "{name}: /proc/vmcore merges the notes into one PT_NOTE");
    let seg = &head[note_segs[0].offset as usize..(note_segs[0].offset + note_segs[0].filesz) as usize];
    let prstatus = notes(seg).iter().filter(|(n, t, _)| n == "CORE" && *t == 1).count();
    (outcome, Seen { dimm, missing, online_cpus, prstatus })
}

/// The dump covers the hot-added memory and CPU, and its `-d 31` dump reads back.
fn check_covered(name: &str, outcome: &kdump_lab::Outcome, seen: &Seen) {
    let dmesg = outcome.read_result("dmesg-first.txt").unwrap_or_default();
    let hp: Vec<&str> = dmesg.lines().filter(|l| l.contains("crash hp:") || l.contains("kexec")).collect();
    assert!(
        seen.missing.is_empty(),
        "{name}: no PT_LOAD of /proc/vmcore covers {:x?} of the hot-added DIMM {:x?}; first kernel: {hp:#?}",
        seen.missing,
        seen.dimm
    );
    assert_eq!(seen.prstatus, seen.online_cpus, "{name}: one NT_PRSTATUS per CPU online at the crash");

    let kdump = static_tools().unwrap().kdump;
    let d31 = outcome.result_path("d31.kdump");
    let v = common::check_info_names_everything(&kdump, &d31);
    assert_eq!(v["cpus"].as_array().map(Vec::len), Some(seen.online_cpus), "{name}: {}", v["cpus"]);
    let out = Command::new(&kdump).arg("dmesg").arg(&d31).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sysrq triggered crash"));
}

fn kernel_updates(kernel: LabKernel, loader: &str) {
    let name = format!("hotplug-{kernel}{}", loader.replace(' ', ""));
    let (outcome, seen) = crash_after_hotplug(&name, kernel, &format!("kexec {loader} -p {LOAD_ARGS}"), "");
    let status = outcome.read_result("status.txt").unwrap();
    assert!(status.contains("updated by the kernel on CPU and memory hotplug"), "{name}: {status}");
    check_covered(&name, &outcome, &seen);
}

#[test]
fn trixie_kexec_file_load_follows_hotplug() {
    kernel_updates(LabKernel::Trixie, "-s");
}

#[test]
fn trixie_kexec_load_follows_hotplug() {
    kernel_updates(LabKernel::Trixie, "-c");
}

#[test]
fn newest_kexec_file_load_follows_hotplug() {
    kernel_updates(LabKernel::Sid, "-s");
}

#[test]
fn newest_kexec_load_follows_hotplug() {
    kernel_updates(LabKernel::Sid, "-c");
}

/// Without `KEXEC_UPDATE_ELFCOREHDR` the kernel leaves a kexec_load image alone: the memory
/// added after the load is missing from the dump (what every kexec_load user had before).
#[test]
fn trixie_kexec_load_without_hotplug_misses_the_new_memory() {
    let name = "hotplug-trixie-c-no-hotplug";
    let (outcome, seen) =
        crash_after_hotplug(name, LabKernel::Trixie, &format!("kexec -c -p --no-hotplug {LOAD_ARGS}"), "");
    let status = outcome.read_result("status.txt").unwrap();
    assert!(status.contains("NOT updated"), "{name}: {status}");
    assert_eq!(seen.missing, seen.dimm, "{name}: the DIMM added after the load is not in the dump");
}

/// The command packaging/98-kdump-hotplug.rules runs on CPU and memory events (the lab's
/// busybox init has no udev: the test runs it as udev would, and `the_udev_rule_runs_…`
/// checks the rule file says the same).
const RELOAD: &str = "kdump reload --if-needed";

/// The RUN commands of a udev rules file, by the SUBSYSTEM they match.
fn udev_runs(rules: &str) -> Vec<(String, String)> {
    let value = |line: &str, key: &str| {
        let at = line.find(key)? + key.len();
        let rest = &line[at..];
        Some(rest[..rest.find('"')?].to_string())
    };
    rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| (value(l, "SUBSYSTEM==\"").unwrap_or_default(), value(l, "RUN+=\"").unwrap_or_default()))
        .collect()
}

#[test]
fn the_udev_rule_runs_the_reload_the_lab_test_runs() {
    let path = workspace_root().join("packaging/98-kdump-hotplug.rules");
    let rules = std::fs::read_to_string(&path).unwrap();
    let runs = udev_runs(&rules);
    let subsystems: Vec<&str> = runs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subsystems, ["cpu", "memory"], "{rules}");
    for (subsystem, run) in &runs {
        assert_eq!(run.as_str(), format!("/usr/sbin/{RELOAD}"), "{subsystem}: {rules}");
    }
    for action in ["add", "remove", "online", "offline"] {
        assert!(rules.lines().filter(|l| l.contains("ACTION==")).all(|l| l.contains(action)), "{action}: {rules}");
    }
}

/// A kernel without crash hotplug (6.1): `kdump setup` loads with kexec_file_load, the DIMM
/// and CPU come, the udev rule's command reloads if `reloads` (once: the second run finds
/// nothing changed), and the dump our capture init saves covers the new memory and CPU, or,
/// without the reload, misses both.
fn bookworm_service(name: &str, reloads: bool) {
    let reload = if reloads {
        format!("{RELOAD} > /results/reload.txt; {RELOAD} > /results/reload-again.txt")
    } else {
        String::new()
    };
    let vm = hotplug_vm(LabKernel::Bookworm);
    let step = hot_add(&vm.cpu_model);
    let append = kdump_lab::LAB_CMDLINE;
    let first = format!(
        r#"uuid=$(dd if=/dev/nvme0n1 bs=1 skip=1128 count=16 2>/dev/null | od -An -tx1 | tr -d ' \n')
[ ${{#uuid}} = 32 ]
mkdir -p /etc
cat > /etc/kdump.toml <<CONFIG
final_action = "poweroff"
[target]
device = "UUID=$uuid"
path = "/crash"
wait_seconds = 30
[capture]
kernel = "/lab/vmlinuz"
initramfs = "/var/lib/kdump/initramfs.img"
append = "{append}"
CONFIG
kdump setup > /results/setup.txt
kdump status > /results/status-before.txt
reload='{reload}'
{HOTPLUG_AND_CRASH}"#
    );
    let outcome = Scenario::new(name, &first).capture_is_ours().monitor(step).vm(vm).run().expect("scenario");

    let before = outcome.read_result("status-before.txt").unwrap();
    assert!(before.contains("hotplug:         no crash hotplug in this kernel"), "{before}");
    if reloads {
        let reload = outcome.read_result("reload.txt").unwrap();
        assert!(
            reload.contains("unloaded the previous capture kernel") && reload.contains("capture kernel loaded"),
            "{reload}"
        );
        let again = outcome.read_result("reload-again.txt").unwrap();
        assert!(again.contains("nothing to do"), "the second reload finds nothing changed: {again}");
    }

    let dimm = hot_added_ram(&outcome.read_result("iomem-after").unwrap());
    assert_eq!(dimm.iter().map(|r| r.end - r.start + 1).sum::<u64>(), 256 << 20, "{dimm:x?}");
    let online_cpus = cpu_count(&outcome.read_result("cpus-online").unwrap());
    assert_eq!(online_cpus, BOOT_CPUS as usize + 1);

    let base = outcome.result_path("crash");
    let dirs: Vec<_> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e}\nconsole:\n{}", base.display(), outcome.console))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let vmcore = dirs[0].join("vmcore");
    let mut dump = KdumpReader::open(File::open(&vmcore).unwrap()).unwrap();
    let mut page = vec![0u8; 4096];
    for range in &dimm {
        for pfn in [range.start / 4096, range.end / 4096] {
            let state = dump.read_page(pfn, &mut page).unwrap();
            // Without the reload, the headers loaded before the hotplug know nothing of the DIMM.
            assert_eq!(state != PageState::NotRam, reloads, "{name}: PFN {pfn:#x} of the DIMM: {state:?}");
        }
    }
    let kdump = static_tools().unwrap().kdump;
    let out = Command::new(&kdump).args(["info", "--json"]).arg(&vmcore).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["panic"], "sysrq triggered crash", "{info:#}");
    // 6.1 writes notes for the CPUs present at load time: without the reload the new one is missing too.
    let cpus = if reloads { online_cpus } else { BOOT_CPUS as usize };
    assert_eq!(info["cpus"].as_array().map(Vec::len), Some(cpus), "{name}: {}", info["cpus"]);
}

#[test]
fn bookworm_udev_reload_covers_the_new_memory_and_cpu() {
    bookworm_service("hotplug-bookworm-udev", true);
}

/// The contrast: without the reload the dump of a kernel without crash hotplug misses the DIMM
/// and the new CPU.
#[test]
fn bookworm_without_reload_misses_the_new_memory_and_cpu() {
    bookworm_service("hotplug-bookworm-no-reload", false);
}
