//! Lab tests of `kdump dmesg` and `kdump info` on a real sysrq crash: on the
//! raw ELF vmcore (in the capture kernel and on the host), and on
//! makedumpfile's kdump-compressed and flattened dumps of the same crash.

use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_lab::{Vm, crash_and_save_vmcore, static_tools};

mod common;
use common::check_info_names_everything;
use common::run;

fn makedumpfile_dmesg(dump: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!("{}.makedumpfile-dmesg", dump.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::remove_file(&out);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(dump).arg(&out));
    std::fs::read(&out).unwrap()
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
        check_info_names_everything(&kdump, dump);
    }

    // Inside the capture kernel, straight from /proc/vmcore.
    assert_eq!(std::fs::read(outcome.result_path("capture-dmesg.txt")).unwrap(), reference);
    let info = outcome.read_result("capture-info.txt").unwrap();
    assert!(info.contains("panic:       sysrq triggered crash"), "{info}");
    assert!(info.contains("sysrq_handle_crash+"), "{info}");
    // The signature names the bug by what called panic, not by the crash machinery.
    assert!(info.contains("signature:   ") && info.contains("| sysrq_handle_crash < "), "{info}");
}

/// The same checks on vmcores saved beforehand, one per kernel (e.g. the
/// matrix's 5.10, 6.1, 6.12 and 7.2): `KDUMP_LAB_VMCORES=/dir cargo test -p
/// kdump-lab --test analysis -- --ignored` checks every `*.vmcore` in `/dir`.
#[test]
#[ignore = "needs KDUMP_LAB_VMCORES=<directory of saved vmcores>"]
fn info_names_everything_on_saved_vmcores() {
    let dir = std::env::var_os("KDUMP_LAB_VMCORES").expect("KDUMP_LAB_VMCORES names a directory of *.vmcore files");
    let kdump = static_tools().unwrap().kdump;
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "vmcore") {
            let v = check_info_names_everything(&kdump, &path);
            eprintln!(
                "{}: {} crashing CPU {} found by {}",
                path.display(),
                v["kernel"]["release"],
                v["crashing_cpu"],
                v["crashing_cpu_found_by"]
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no *.vmcore in {}", PathBuf::from(dir).display());
}
