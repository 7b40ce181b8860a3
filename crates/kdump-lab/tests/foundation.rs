//! Lab tests of the foundation: the lab itself, and `kdump sysinfo` on a real kernel.

use kdump_lab::{LabError, Scenario, Vm};
use kdump_machine::MachineInfo;

#[test]
fn sysinfo_reports_crash_memory_notes_and_vmcoreinfo() {
    let script = "\
kdump --version
kdump sysinfo --json > /results/sysinfo.json
kdump sysinfo
for f in /proc/iomem /proc/sys/kernel/osrelease /proc/sys/kernel/kexec_load_disabled \
         /sys/kernel/vmcoreinfo /sys/kernel/kexec_loaded /sys/kernel/kexec_crash_loaded \
         /sys/kernel/kexec_crash_size /sys/kernel/security/lockdown \
         /sys/devices/system/cpu/possible /sys/devices/system/cpu/present \
         /sys/devices/system/cpu/cpu*/crash_notes /sys/devices/system/cpu/cpu*/crash_notes_size; do
  mkdir -p /results/sysroot$(dirname $f)
  cat $f > /results/sysroot$f
done
";
    let vm = Vm { cpus: 2, crashkernel: Some("256M".into()), ..Vm::default() };
    let outcome = Scenario::new("foundation-sysinfo", script).vm(vm).run().expect("scenario runs");
    let info: MachineInfo = serde_json::from_str(&outcome.read_result("sysinfo.json").unwrap()).unwrap();

    // The static binary ran inside a busybox-only initramfs.
    assert!(outcome.console.contains("kdump 0."), "kdump --version did not run:\n{}", outcome.console);

    // Crash region: exactly 256 MiB, inside one System RAM range.
    assert_eq!(info.crash_regions.len(), 1, "{info:#?}");
    let crash = info.crash_regions[0];
    assert_eq!(crash.len(), 256 << 20);
    assert!(info.system_ram.iter().any(|ram| ram.contains_range(&crash)), "{info:#?}");
    assert_eq!(info.kexec.crash_size, 256 << 20);

    // One crash-notes buffer per possible CPU, each inside RAM.
    assert_eq!(info.possible_cpus, vec![0, 1]);
    let cpus: Vec<u32> = info.crash_notes.iter().map(|n| n.cpu).collect();
    assert_eq!(cpus, info.possible_cpus);
    for note in &info.crash_notes {
        assert!(note.size > 0 && info.system_ram.iter().any(|r| r.contains(note.address)), "{note:?}");
    }

    // VMCOREINFO lives in RAM, outside the crash region.
    let vmcoreinfo = info.vmcoreinfo.expect("the Debian kernel exports VMCOREINFO");
    assert!(info.system_ram.iter().any(|r| r.contains(vmcoreinfo.address)), "{vmcoreinfo:?}");
    assert!(!crash.contains(vmcoreinfo.address));
    assert!(vmcoreinfo.size > 0);

    assert!(!info.kexec.loaded && !info.kexec.crash_loaded);
    assert!(info.kernel_release.as_deref().is_some_and(|r| r.contains("cloud-amd64")), "{info:#?}");
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);

    // The text report names the same crash memory.
    assert!(outcome.console.contains("crash memory:  256.0 MiB"), "{}", outcome.console);
    // The raw files came back too, so this machine can be replayed in unit tests.
    // (tests/fixtures/machines/ holds one such capture).
    assert!(outcome.read_result("sysroot/proc/iomem").unwrap().contains("Crash kernel"));
}

#[test]
fn failing_scenario_reports_the_serial_console() {
    let vm = Vm { crashkernel: None, ..Vm::default() };
    let err = Scenario::new("foundation-fails", "echo lab-marker-7e3f\nfalse\necho not-reached\n")
        .vm(vm)
        .run()
        .expect_err("a script that runs `false` fails");
    match &err {
        LabError::ScenarioFailed { reason, console, .. } => {
            assert!(reason.contains("status 1"), "{reason}");
            assert!(console.contains("lab-marker-7e3f"), "{console}");
            assert!(!console.contains("\nnot-reached"), "{console}");
            // The guest's kernel log is part of it: the Linux banner.
            assert!(console.contains("Linux version"), "{console}");
        }
        other => panic!("expected ScenarioFailed, got {other}"),
    }
    // The error message itself carries the console, so a failing test prints it.
    assert!(err.to_string().contains("lab-marker-7e3f"));
}
