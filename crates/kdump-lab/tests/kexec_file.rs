//! Lab tests of `kexec` with kexec_file_load on Debian's kernel: panic load,
//! crash into the capture kernel, unload, reload, `-l` + `-e`, and refusals.

mod common;

use common::{Phdr, START_KERNEL_MAP, check_vmcore_notes, minus, phys_ranges, program_headers, ram_loads};
use kdump_lab::{LabKernel, Scenario, Vm};
use kdump_machine::{MachineInfo, PhysRange};

/// Loads the lab's capture kernel with our kexec; `$1` adds options.
const LOAD: &str = r#"load() { kexec "$@" /lab/vmlinuz --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline)"; }
"#;

/// Runs a command that must fail; saves its exit code and stderr as /results/<name>.{rc,err}.
const REFUSE: &str = r#"refuse() { name=$1; shift; set +e; "$@" 2>/results/$name.err; echo $? >/results/$name.rc; set -e; cat /results/$name.err; }
"#;

kdump_lab::kernel_matrix! {
    fn panic_load_crash_boots_capture_kernel_with_vmcore(kernel) {
        panic_load_crash(kernel);
    }
}

fn panic_load_crash(kernel: LabKernel) {
    let first = format!(
        "{LOAD}load -s -p --append=lab.load=first
# Loading again replaces the capture kernel: the crash must boot this one.
load -s -p --append=lab.load=second
set +e; kexec -S; echo $? > /results/status.rc; set -e
cat /sys/kernel/kexec_crash_loaded > /results/crash_loaded
kdump sysinfo --json > /results/first-sysinfo.json
sync
echo c > /proc/sysrq-trigger
"
    );
    let capture = "\
cat /proc/cmdline > /results/capture-cmdline
ls -l /proc/vmcore
dd if=/proc/vmcore of=/results/vmcore-head bs=4096 count=64
";
    let outcome = Scenario::new(&format!("kexec-panic-crash-{kernel}"), &first)
        .capture(capture)
        .vm(Vm::on(kernel))
        .run()
        .expect("scenario");

    assert_eq!(outcome.read_result("status.rc").unwrap().trim(), "1", "kexec -S exits 1 when loaded");
    assert_eq!(outcome.read_result("crash_loaded").unwrap().trim(), "1");
    assert!(outcome.console.contains("Kernel panic - not syncing: sysrq triggered crash"), "{}", outcome.console);

    let cmdline = outcome.read_result("capture-cmdline").unwrap();
    assert!(cmdline.contains("irqpoll nr_cpus=1 reset_devices"), "{cmdline}");
    assert!(cmdline.contains("lab.load=second") && !cmdline.contains("lab.load=first"), "{cmdline}");
    assert!(cmdline.contains("elfcorehdr="), "the kernel passes elfcorehdr=: {cmdline}");

    let info: MachineInfo = serde_json::from_str(&outcome.read_result("first-sysinfo.json").unwrap()).unwrap();
    let head = std::fs::read(outcome.result_path("vmcore-head")).unwrap();
    let phdrs = program_headers(&head);

    check_vmcore_notes(&head, &phdrs, &info);

    // PT_LOADs: one for the kernel text (mapped at __START_KERNEL_map), and
    // the first kernel's RAM minus the crash region (the kernel also leaves
    // out the low 1 MiB).
    let text: Vec<&Phdr> = phdrs.iter().filter(|p| p.p_type == 1 && p.vaddr >= START_KERNEL_MAP).collect();
    assert_eq!(text.len(), 1, "one kernel-text PT_LOAD");
    assert_eq!(text[0].paddr, info.kernel_code.unwrap().start, "kernel text starts at Kernel code");
    let loads = phys_ranges(&ram_loads(&phdrs));
    let low_mib = PhysRange { start: 0, end: (1 << 20) - 1 };
    let mut holes = info.crash_regions.clone();
    holes.push(low_mib);
    let expected = minus(&info.system_ram, &holes);
    assert_eq!(loads, expected, "PT_LOADs vs System RAM minus crash region and low 1 MiB");
}

#[test]
fn unload_and_reload_replace_the_capture_kernel() {
    let first = format!(
        "{LOAD}load -p
[ \"$(cat /sys/kernel/kexec_crash_loaded)\" = 1 ]
kexec -p -u
cat /sys/kernel/kexec_crash_loaded > /results/after-unload
set +e; kexec -S; echo $? > /results/status-after-unload.rc; set -e
load -p
load -p --no-capture-defaults
cat /sys/kernel/kexec_crash_loaded > /results/after-reload
kexec -p -u
kexec -p -u
cat /sys/kernel/kexec_crash_loaded > /results/after-second-unload
"
    );
    let outcome = Scenario::new("kexec-unload-reload", &first).carry_capture_kernel("true").run().expect("scenario");
    assert_eq!(outcome.read_result("after-unload").unwrap().trim(), "0");
    assert_eq!(outcome.read_result("status-after-unload.rc").unwrap().trim(), "0");
    assert_eq!(outcome.read_result("after-reload").unwrap().trim(), "1");
    assert_eq!(outcome.read_result("after-second-unload").unwrap().trim(), "0", "unloading twice is harmless");
}

#[test]
fn load_and_exec_boots_the_new_kernel_with_its_command_line() {
    let first = "\
kexec -s -l /lab/vmlinuz --initrd=/lab/capture.img --append='console=ttyS0 panic=-1 lab.marker=second-boot'
cat /sys/kernel/kexec_loaded > /results/loaded
sync
kexec -e
";
    let second = "cat /proc/cmdline > /results/second-cmdline\ngrep -q lab.marker=second-boot /proc/cmdline\n";
    let vm = Vm { crashkernel: None, ..Vm::default() };
    let outcome = Scenario::new("kexec-load-exec", first).capture(second).vm(vm).run().expect("scenario");
    assert_eq!(outcome.read_result("loaded").unwrap().trim(), "1");
    let cmdline = outcome.read_result("second-cmdline").unwrap();
    assert_eq!(cmdline.trim(), "console=ttyS0 panic=-1 lab.marker=second-boot", "-l adds no capture defaults");
}

#[test]
fn bad_input_is_refused_and_nothing_is_loaded() {
    let first = format!(
        "{REFUSE}refuse not-a-kernel kexec -p /bin/busybox --initrd=/lab/capture.img
refuse missing-initrd kexec -p /lab/vmlinuz --initrd=/lab/no-such-initrd
refuse window kexec -c -p --mem-max=0x1000000 /lab/vmlinuz --initrd=/lab/capture.img
cat /sys/kernel/kexec_crash_loaded > /results/crash_loaded
"
    );
    let outcome = Scenario::new("kexec-bad-input", &first).carry_capture_kernel("true").run().expect("scenario");
    for (name, needle) in [
        ("not-a-kernel", "a program, not a Linux kernel"),
        ("missing-initrd", "cannot open the initrd /lab/no-such-initrd"),
        ("window", "leave nothing of the load region"),
    ] {
        assert_eq!(outcome.read_result(&format!("{name}.rc")).unwrap().trim(), "1", "{name}");
        let err = outcome.read_result(&format!("{name}.err")).unwrap();
        assert!(err.contains(needle), "{name}: {err}");
    }
    assert_eq!(outcome.read_result("crash_loaded").unwrap().trim(), "0");
}

#[test]
fn too_small_crash_region_is_refused_with_the_shortfall() {
    let first = format!(
        "{REFUSE}refuse small kexec -p /lab/vmlinuz --initrd=/lab/capture.img
cat /sys/kernel/kexec_crash_loaded > /results/crash_loaded
"
    );
    let vm = Vm { crashkernel: Some("16M".into()), ..Vm::default() };
    let outcome = Scenario::new("kexec-crash-16m", &first).carry_capture_kernel("true").vm(vm).run().expect("scenario");
    assert_eq!(outcome.read_result("small.rc").unwrap().trim(), "1");
    let err = outcome.read_result("small.err").unwrap();
    assert!(err.contains("crashkernel= reserved 16 MiB") && err.contains("MiB short"), "{err}");
    assert_eq!(outcome.read_result("crash_loaded").unwrap().trim(), "0");
}

#[test]
fn no_crash_region_is_refused_with_how_to_reserve_one() {
    let first = format!(
        "{REFUSE}refuse none kexec -p /lab/vmlinuz --initrd=/lab/capture.img
"
    );
    let vm = Vm { crashkernel: None, ..Vm::default() };
    let outcome =
        Scenario::new("kexec-no-crashkernel", &first).carry_capture_kernel("true").vm(vm).run().expect("scenario");
    assert_eq!(outcome.read_result("none.rc").unwrap().trim(), "1");
    let err = outcome.read_result("none.err").unwrap();
    assert!(err.contains("no memory is reserved") && err.contains("crashkernel="), "{err}");
}
