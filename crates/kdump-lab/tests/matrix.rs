//! The kernel matrix: one real sysrq crash per Debian cloud kernel (5.10,
//! 6.1, 6.12 and the newest), checked from what our tools read of it, with
//! no debug vmlinux and no System.map:
//! - `kdump dmesg` equals Debian makedumpfile's `--dump-dmesg` and what the
//!   capture kernel itself read from /proc/vmcore;
//! - `kdump info` names the release and host the first kernel reported, the
//!   panic message, the CPU that really crashed (the crash is pinned to CPU 1)
//!   and a backtrace through `sysrq_handle_crash`;
//! - `kdump dump -d 31` in the capture kernel keeps the log and the stack.

use std::path::Path;
use std::process::Command;

use kdump_lab::{LabKernel, Outcome, Scenario, Vm, static_tools};

mod common;
use common::run;

/// The CPU the crash is pinned to.
const CRASHING_CPU: u64 = 1;

/// Crashes `kernel` from CPU 1 after recording what the running kernel says
/// about itself; the capture kernel reads /proc/vmcore with our tools and
/// copies it raw.
fn crash(kernel: LabKernel) -> Outcome {
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), results_disk_mib: 768, ..Vm::on(kernel) };
    let first = format!(
        "{}hostname lab-{kernel}
uname -r > /results/uname-r.txt
hostname > /results/hostname.txt
date +%s > /results/before-crash.txt
sync
taskset -c {CRASHING_CPU} sh -c 'echo c > /proc/sysrq-trigger'
",
        kdump_lab::LOAD_CAPTURE_KERNEL
    );
    let capture = "\
kdump dmesg /proc/vmcore > /results/capture-dmesg.txt
kdump info --json /proc/vmcore > /results/capture-info.json
kdump dump -l -d 31 /proc/vmcore /results/capture-d31.kdump
cp /proc/vmcore /results/vmcore
";
    Scenario::new(&format!("matrix-{kernel}"), &first).capture(capture).vm(vm).run().expect("crash and save")
}

fn makedumpfile_dmesg(dump: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!("{}.makedumpfile-dmesg", dump.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::remove_file(&out);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(dump).arg(&out));
    std::fs::read(&out).unwrap()
}

/// `kdump info`'s time format, which sorts as text.
fn utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = kdump_service::naming::civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `kdump info --json` of `dump` names everything the first kernel knew.
fn check_info(kdump: &Path, dump: &Path, outcome: &Outcome) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&run(Command::new(kdump).args(["info", "--json"]).arg(dump))).unwrap();
    let what = format!("{}: {v:#}", dump.display());
    let release = outcome.read_result("uname-r.txt").unwrap();
    assert_eq!(v["kernel"]["release"].as_str(), Some(release.trim()), "release; {what}");
    let host = outcome.read_result("hostname.txt").unwrap();
    assert_eq!(v["kernel"]["nodename"].as_str(), Some(host.trim()), "host; {what}");
    assert_eq!(v["panic"], "sysrq triggered crash", "{what}");
    assert_eq!(v["crashing_cpu"].as_u64(), Some(CRASHING_CPU), "the crash ran on CPU {CRASHING_CPU}; {what}");
    assert_eq!(v["cpus"][CRASHING_CPU as usize]["crashing"], true, "{what}");
    let before: i64 = outcome.read_result("before-crash.txt").unwrap().trim().parse().unwrap();
    let crash_time = v["crash_time"].as_str().unwrap_or_else(|| panic!("no crash time; {what}"));
    let (before_utc, later_utc) = (utc(before), utc(before + 120));
    assert!(
        before_utc.as_str() <= crash_time && crash_time <= later_utc.as_str(),
        "crash time {crash_time} not just after {before_utc}; {what}"
    );
    let frames: Vec<&str> = v["backtrace"].as_array().unwrap().iter().filter_map(|f| f["symbol"].as_str()).collect();
    assert!(frames.iter().any(|f| f.starts_with("sysrq_handle_crash+")), "no sysrq_handle_crash in {frames:?}; {what}");
    v
}

kdump_lab::kernel_matrix! {
    fn dmesg_info_and_capture_dump_name_the_crash(kernel) {
        let outcome = crash(kernel);
        let kdump = static_tools().unwrap().kdump;
        let vmcore = outcome.result_path("vmcore");

        // The log: ours on the host = makedumpfile's = ours in the capture kernel.
        let ours = run(Command::new(&kdump).arg("dmesg").arg(&vmcore));
        assert!(String::from_utf8_lossy(&ours).contains("sysrq triggered crash"));
        assert!(ours == makedumpfile_dmesg(&vmcore, &outcome.run_dir), "{kernel}: kdump dmesg differs from makedumpfile's");
        assert!(
            ours == std::fs::read(outcome.result_path("capture-dmesg.txt")).unwrap(),
            "{kernel}: kdump dmesg in the capture kernel differs"
        );

        // The report, on the raw vmcore and in the capture kernel.
        check_info(&kdump, &vmcore, &outcome);
        let capture_info: serde_json::Value =
            serde_json::from_str(&outcome.read_result("capture-info.json").unwrap()).unwrap();
        assert_eq!(capture_info["panic"], "sysrq triggered crash");
        assert_eq!(capture_info["crashing_cpu"].as_u64(), Some(CRASHING_CPU));

        // The capture kernel's -d 31 dump keeps what analysis needs.
        let d31 = outcome.result_path("capture-d31.kdump");
        assert!(run(Command::new(&kdump).arg("dmesg").arg(&d31)) == ours, "{kernel}: the log of the -d 31 dump");
        let v = check_info(&kdump, &d31, &outcome);
        assert_eq!(v["format"]["dump_level"], 31);
    }
}
