//! Kernel skew, the reason the 2005 design passes the crashed machine to the
//! capture kernel as ELF headers: the capture kernel may be another release.
//! Debian 12's 6.1 is captured by the newest kernel, and the newest by 5.10,
//! each loaded with kexec_file_load (`kexec -s -p`) and with kexec_load and our
//! own headers and purgatory (`kexec -c -p`). The capture kernel's `kdump`
//! reads the crashed kernel's /proc/vmcore: release, panic and backtrace are
//! the crashed kernel's, and a `-d 31` dump of it keeps the log.

use std::process::Command;

use kdump_lab::{LabKernel, Scenario, Vm, static_tools};

mod common;
use common::run;

/// Crashes `first` with `capture` loaded by `kexec LOADER -p`, and checks the capture side.
fn skew(first: LabKernel, capture: LabKernel, loader: &str) {
    let name = format!("skew-{first}-to-{capture}{}", loader.replace(' ', ""));
    // 5.10 boots only without 5-level paging: then neither kernel gets it.
    let cpu_model = if first.cpu_model() == "max" && capture.cpu_model() == "max" { "max" } else { "Haswell-v4" };
    let vm = Vm {
        capture_kernel: Some(capture),
        cpu_model: cpu_model.into(),
        memory_mib: 512,
        crashkernel: Some("192M".into()),
        ..Vm::on(first)
    };
    let first_script = format!(
        r#"uname -r > /results/first-release.txt
kexec {loader} -p /lab/vmlinuz --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline)"
[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ]
sync
echo c > /proc/sysrq-trigger
"#
    );
    let capture_script = "\
uname -r > /results/capture-release.txt
kdump info --json /proc/vmcore > /results/info.json
kdump dmesg /proc/vmcore > /results/dmesg.txt
kdump dump -l -d 31 /proc/vmcore /results/d31.kdump
";
    let outcome = Scenario::new(&name, &first_script).capture(capture_script).vm(vm).run().expect("scenario");
    let first_release = outcome.read_result("first-release.txt").unwrap();
    let capture_release = outcome.read_result("capture-release.txt").unwrap();
    assert_ne!(first_release, capture_release, "two different releases");

    let info: serde_json::Value = serde_json::from_str(&outcome.read_result("info.json").unwrap()).unwrap();
    assert_eq!(info["kernel"]["release"].as_str(), Some(first_release.trim()), "{info:#}");
    assert_eq!(info["panic"], "sysrq triggered crash", "{info:#}");
    let frames: Vec<&str> = info["backtrace"].as_array().unwrap().iter().filter_map(|f| f["symbol"].as_str()).collect();
    assert!(frames.iter().any(|f| f.starts_with("sysrq_handle_crash+")), "{name}: no sysrq_handle_crash in {frames:?}");

    let kdump = static_tools().unwrap().kdump;
    let d31 = outcome.result_path("d31.kdump");
    let log = run(Command::new(&kdump).arg("dmesg").arg(&d31));
    assert!(log == std::fs::read(outcome.result_path("dmesg.txt")).unwrap(), "{name}: the -d 31 dump keeps the log");
    assert!(String::from_utf8_lossy(&log).contains("sysrq triggered crash"));
}

#[test]
fn bookworm_captured_by_the_newest_kernel_with_kexec_file_load() {
    skew(LabKernel::Bookworm, LabKernel::Sid, "-s");
}

#[test]
fn bookworm_captured_by_the_newest_kernel_with_kexec_load() {
    skew(LabKernel::Bookworm, LabKernel::Sid, "-c");
}

#[test]
fn the_newest_kernel_captured_by_5_10_with_kexec_file_load() {
    skew(LabKernel::Sid, LabKernel::Bullseye, "-s");
}

#[test]
fn the_newest_kernel_captured_by_5_10_with_kexec_load() {
    skew(LabKernel::Sid, LabKernel::Bullseye, "-c");
}
