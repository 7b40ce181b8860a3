//! Lab tests of `kdump dmesg` and `kdump info` on a real sysrq crash: on the
//! raw ELF vmcore (in the capture kernel and on the host), and on
//! makedumpfile's kdump-compressed and flattened dumps of the same crash.

use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_lab::{Vm, crash_and_save_vmcore, static_tools};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn makedumpfile_dmesg(dump: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!("{}.makedumpfile-dmesg", dump.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::remove_file(&out);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(dump).arg(&out));
    std::fs::read(&out).unwrap()
}

fn check_info(kdump: &Path, dump: &Path) {
    let json = run(Command::new(kdump).arg("info").arg("--json").arg(dump));
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["panic"], "sysrq triggered crash", "{}: {v:#}", dump.display());
    let cpu = v["crashing_cpu"].as_u64().expect("crashing CPU known") as usize;
    assert_eq!(v["cpus"][cpu]["crashing"], true);
    assert_ne!(v["cpus"][cpu]["pid"], 0, "the crashing CPU ran the task that wrote to sysrq-trigger");
    let frames: Vec<String> =
        v["backtrace"].as_array().unwrap().iter().map(|f| f["symbol"].as_str().unwrap_or("").to_string()).collect();
    for wanted in ["sysrq_handle_crash", "panic"] {
        assert!(
            frames.iter().any(|f| f.starts_with(&format!("{wanted}+"))),
            "{}: no {wanted} in {frames:?}",
            dump.display()
        );
    }
    assert_eq!(v["symbols"], "kallsyms tables in the dump");
    let text = String::from_utf8(run(Command::new(kdump).arg("info").arg(dump))).unwrap();
    assert!(text.contains("panic:       sysrq triggered crash") && text.contains("(crashing)"), "{text}");
}

#[test]
fn dmesg_and_info_on_raw_and_makedumpfile_dumps_of_a_sysrq_crash() {
    let in_capture = "\
kdump dmesg /proc/vmcore > /results/capture-dmesg.txt
kdump info /proc/vmcore > /results/capture-info.txt
";
    let outcome = crash_and_save_vmcore("analysis-sysrq", Vm::default(), "", in_capture).expect("crash and save");
    let kdump = static_tools().unwrap().kdump;
    let dir = outcome.run_dir.clone();
    let vmcore = outcome.result_path("vmcore");

    // makedumpfile's dumps of the same crash: kdump-compressed zlib -d 1, lzo -d 31, flattened.
    let zlib = dir.join("makedumpfile-zlib-d1.kdump");
    let lzo = dir.join("makedumpfile-lzo-d31.kdump");
    let flat = dir.join("makedumpfile-lzo-d31.flat");
    run(Command::new("makedumpfile").args(["-c", "-d", "1"]).arg(&vmcore).arg(&zlib));
    run(Command::new("makedumpfile").args(["-l", "-d", "31"]).arg(&vmcore).arg(&lzo));
    let stream = run(Command::new("makedumpfile").args(["-F", "-l", "-d", "31"]).arg(&vmcore));
    std::fs::write(&flat, stream).unwrap();

    let reference = makedumpfile_dmesg(&vmcore, &dir);
    assert!(String::from_utf8_lossy(&reference).contains("Kernel panic - not syncing: sysrq triggered crash"));
    let dumps: Vec<PathBuf> = vec![vmcore.clone(), zlib, lzo, flat];
    for dump in &dumps {
        let ours = run(Command::new(&kdump).arg("dmesg").arg(dump));
        let theirs = if dump.extension().is_some_and(|e| e == "flat") {
            reference.clone() // makedumpfile cannot read its own flattened format; the log is the same crash's
        } else {
            makedumpfile_dmesg(dump, &dir)
        };
        assert!(ours == theirs, "kdump dmesg differs from makedumpfile --dump-dmesg on {}", dump.display());
        check_info(&kdump, dump);
    }

    // Inside the capture kernel, straight from /proc/vmcore.
    assert_eq!(std::fs::read(outcome.result_path("capture-dmesg.txt")).unwrap(), reference);
    let info = outcome.read_result("capture-info.txt").unwrap();
    assert!(info.contains("panic:       sysrq triggered crash"), "{info}");
    assert!(info.contains("sysrq_handle_crash+"), "{info}");
}
