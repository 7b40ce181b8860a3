//! `kdump sysinfo` on captured machines.

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/machines").join(name)
}

fn kdump(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kdump")).args(args).output().unwrap()
}

#[test]
fn json_of_a_captured_qemu_machine() {
    let root = fixture("qemu-1g-2cpu-crash256m");
    let out = kdump(&["sysinfo", "--json", "--sysroot", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["crash_regions"][0]["start"], 0x2300_0000u64);
    assert_eq!(v["crash_regions"][0]["end"], 0x32ff_ffffu64);
    assert_eq!(v["crash_notes"].as_array().unwrap().len(), 2);
    assert_eq!(v["kexec"]["crash_size"], 256u64 << 20);
    assert_eq!(v["lockdown"], "none");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0);
}

#[test]
fn text_names_the_crash_memory() {
    let root = fixture("qemu-1g-2cpu-crash256m");
    let out = kdump(&["sysinfo", "--sysroot", root.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("crash memory:  256.0 MiB"), "{text}");
    assert!(text.contains("2 possible, 2 present, 2 with crash notes"), "{text}");
}

#[test]
fn missing_sysroot_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = kdump(&["sysinfo", "--sysroot", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /proc/iomem"), "{err}");
}
