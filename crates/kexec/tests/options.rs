//! Every row of docs/OPTIONS.md's kexec-tools table run through our `kexec` on a captured
//! machine description (`--sysroot`): nothing is loaded (the load rows carry `--dry-run`), and
//! each option is taken as the row's outcome says.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::fake_bzimage;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_kexec_tools_option_in_the_table_is_taken_as_the_table_says() {
    let doc = std::fs::read_to_string(workspace().join("docs/OPTIONS.md")).unwrap();
    let table = doc.split("# kexec-tools' command line here").nth(1).expect("the kexec-tools table");
    let strip = |c: &str| c.trim().trim_matches('`').to_string();
    let rows: Vec<(String, String, String)> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 5, "a row has 5 cells: {l}");
            (strip(cells[0]), strip(cells[3]), cells[4].trim().to_string())
        })
        .collect();
    assert!(rows.len() >= 35, "the table lists kexec-tools' options: {}", rows.len());
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("bzImage");
    let initrd = dir.path().join("initrd");
    std::fs::write(&kernel, fake_bzimage(1 << 20)).unwrap();
    std::fs::write(&initrd, vec![0x5a; 1 << 20]).unwrap();
    let sysroot = workspace().join("tests/fixtures/machines/qemu-1g-2cpu-crash256m-4level");
    for (option, line, outcome) in &rows {
        let args: Vec<String> = line
            .split_whitespace()
            .map(|w| match w {
                "KERNEL" => kernel.display().to_string(),
                "INITRD" => initrd.display().to_string(),
                other => other.to_string(),
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_kexec"))
            .args(&args)
            .arg("--sysroot")
            .arg(&sysroot)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("{option} (`kexec {line}`): exit {:?}\n{err}", out.status.code());
        assert_ne!(out.status.code(), Some(2), "clap's usage error: {what}");
        assert!(!err.contains("unexpected argument"), "{what}");
        match outcome.as_str() {
            "ok" => assert!(out.status.success(), "{what}"),
            "refused" => {
                assert_eq!(out.status.code(), Some(1), "{what}");
                assert!(err.contains("not supported"), "{what}");
            }
            "parsed" => {}
            other => panic!("{option}: unknown outcome {other:?}"),
        }
        if option.starts_with("--reuse-cmdline") {
            // The fixture's /proc/cmdline, without BOOT_IMAGE= and (for -p) crashkernel=.
            let plan = String::from_utf8_lossy(&out.stdout);
            assert!(plan.contains("root=/dev/nvme0n1p1 ro console=ttyS0"), "{what}\n{plan}");
            assert!(!plan.contains("BOOT_IMAGE=") && !plan.contains("crashkernel="), "{what}\n{plan}");
        }
        // A dry run decides and prints; it never says it loaded.
        assert!(!String::from_utf8_lossy(&out.stdout).contains("loaded with"), "{what}");
    }
}
