//! Every row of docs/OPTIONS.md (makedumpfile's whole command line) run through the
//! `makedumpfile` name on a small synthetic vmcore: each option is taken, and does what the
//! row's outcome says.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kdump_dumpfile::elf::{EM_X86_64, write_elf64_vmcore};
use kdump_dumpfile::notes::push_note;

const PAGES: u64 = 256;
/// The release of `mini_kernel.c`, the small debug vmlinux `-x` is given.
const INFO: &str = "OSRELEASE=6.1.0-mini\nPAGESIZE=4096\n";

/// kdump-debuginfo's test kernel (a few of the kernel's types, with DWARF), built by gcc.
fn mini_vmlinux(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kdump-debuginfo/tests/fixtures/mini_kernel.c");
    let out = dir.join("vmlinux");
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-nostdlib", "-static", "-no-pie", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("gcc (Debian: apt-get install gcc) builds the small vmlinux -x is given");
    assert!(status.success());
    out
}

/// 1 MiB of RAM: pages of a byte pattern, every 4th zero; a VMCOREINFO note without layouts.
fn vmcore(dir: &Path) -> PathBuf {
    let mut mem = vec![0u8; (PAGES * 4096) as usize];
    for (pfn, page) in mem.chunks_mut(4096).enumerate() {
        if pfn % 4 != 0 {
            page.iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + pfn) as u8);
        }
    }
    let mut notes = Vec::new();
    push_note(&mut notes, b"VMCOREINFO", 0, INFO.as_bytes());
    let mut out = Vec::new();
    write_elf64_vmcore(&mut out, EM_X86_64, &notes, &[(0, PAGES * 4096, &mem)]).unwrap();
    let path = dir.join("vmcore");
    std::fs::write(&path, out).unwrap();
    path
}

/// (option, test command line, outcome) of each table row.
fn rows(doc: &str) -> Vec<(String, String, String)> {
    let strip = |c: &str| c.trim().trim_matches('`').to_string();
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 5, "a row has 5 cells: {l}");
            (strip(cells[0]), strip(cells[3]), cells[4].trim().to_string())
        })
        .collect()
}

#[test]
fn every_makedumpfile_option_in_the_table_is_taken_as_the_table_says() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPTIONS.md")).unwrap();
    // The first table: makedumpfile's (kexec-tools' follows, tested by crates/kexec).
    let rows = rows(doc.split("# kexec-tools' command line here").next().unwrap());
    assert!(rows.len() >= 40, "the table lists makedumpfile's options: {}", rows.len());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let makedumpfile = dir.join("makedumpfile");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kdump"), &makedumpfile).unwrap();
    let source = vmcore(dir);
    let info = dir.join("vmcoreinfo");
    std::fs::write(&info, INFO).unwrap();
    let any_file = dir.join("some-file");
    std::fs::write(&any_file, "x").unwrap();
    let vmlinux = mini_vmlinux(dir);
    let work = dir.join("work");
    std::fs::create_dir(&work).unwrap();
    // A flattened stream for -R.
    let flat = dir.join("flat");
    let out = Command::new(&makedumpfile).args(["-F", "-l", "-d", "1"]).arg(&source).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&flat, &out.stdout).unwrap();
    // A split set for --reassemble.
    let parts: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("part{i}"))).collect();
    let out =
        Command::new(&makedumpfile).args(["--split", "-l", "-d", "1"]).arg(&source).args(&parts).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for (i, (option, line, outcome)) in rows.iter().enumerate() {
        let case = dir.join(format!("case{i}"));
        std::fs::create_dir(&case).unwrap();
        let existing = case.join("existing");
        std::fs::write(&existing, "old").unwrap();
        let mut stdin = None;
        let mut args: Vec<String> = Vec::new();
        let mut written: Vec<PathBuf> = Vec::new();
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == "<" {
                stdin = Some(words.next().unwrap().to_string());
                continue;
            }
            let (prefix, token) = match w.split_once('=') {
                Some((p, t)) => (format!("{p}="), t),
                None => (String::new(), w),
            };
            let path = |p: &Path| p.display().to_string();
            let value = match token {
                "SOURCE" => path(&source),
                "DEST" => path(&case.join("dest")),
                "DEST2" => path(&case.join("dest2")),
                "DEST3" => path(&case.join("dest3")),
                "PART1" => path(&parts[0]),
                "PART2" => path(&parts[1]),
                "PART3" => path(&parts[2]),
                "OUT" => path(&case.join("out")),
                "EXISTING" => path(&existing),
                "INFO" => path(&info),
                "FILE" => path(&any_file),
                "VMLINUX" => path(&vmlinux),
                "TEXT" => path(&case.join("text")),
                "DIR" => path(&work),
                other => other.to_string(),
            };
            if token.starts_with("DEST") || token == "OUT" || token == "EXISTING" {
                written.push(PathBuf::from(&value));
            }
            args.push(format!("{prefix}{value}"));
        }
        let mut cmd = Command::new(&makedumpfile);
        cmd.args(&args).env("SOURCE_DATE_EPOCH", "1764547200");
        match stdin.as_deref() {
            Some("FLAT") => cmd.stdin(std::fs::File::open(&flat).unwrap()),
            Some(other) => panic!("{option}: unknown stdin {other}"),
            None => cmd.stdin(Stdio::null()),
        };
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("{option} (`makedumpfile {line}`): exit {:?}\n{err}", out.status.code());
        // Never clap's usage error: every option of the table is known.
        assert_ne!(out.status.code(), Some(2), "{what}");
        assert!(!err.contains("unexpected argument"), "{what}");
        match outcome.as_str() {
            "ok" => assert!(out.status.success(), "{what}"),
            "refused" => {
                assert_eq!(out.status.code(), Some(1), "{what}");
                assert!(err.contains("not supported") || err.contains("not built"), "{what}");
            }
            "incomplete" => {
                assert_eq!(out.status.code(), Some(1), "{what}");
                assert!(err.contains("INCOMPLETE"), "{what}");
                assert!(case.join("dest.incomplete").is_file() && !case.join("dest").exists(), "{what}");
            }
            "parsed" => {}
            other => panic!("{option}: unknown outcome {other:?}"),
        }
        // A text written (-g): a VMCOREINFO.
        if outcome == "ok" && line.contains("TEXT") {
            let text = std::fs::read_to_string(case.join("text")).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(text.starts_with("OSRELEASE=6.1.0-mini\n"), "{what}: {text}");
        }
        // What "same" rows write are dumps (every DEST and OUT), and -f replaced the old file.
        if outcome == "ok" {
            for dest in &written {
                if !line.contains("--dry-run") && !line.contains("--check-params") {
                    let bytes = std::fs::read(dest).unwrap_or_else(|e| panic!("{what}: {}: {e}", dest.display()));
                    assert!(bytes.starts_with(b"KDUMP   ") || bytes.starts_with(b"\x7fELF"), "{what}");
                } else {
                    assert!(!dest.exists() || dest == &existing, "{what}: wrote nothing");
                }
            }
        }
    }
}

/// `-x` checks the vmlinux against the dump: a dump without VMCOREINFO is refused with the fix
/// (`-i`), a VMCOREINFO of another release is refused naming both, and nothing is written.
#[test]
fn a_vmlinux_of_another_kernel_or_for_a_dump_without_vmcoreinfo_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let vmlinux = mini_vmlinux(dir);
    let bare = dir.join("bare");
    let mut out = Vec::new();
    write_elf64_vmcore(&mut out, EM_X86_64, &[], &[(0, 4096 * 4, &vec![1u8; 4096 * 4])]).unwrap();
    std::fs::write(&bare, out).unwrap();
    let other = dir.join("other-release");
    std::fs::write(&other, "OSRELEASE=5.10.0-32-cloud-amd64\nPAGESIZE=4096\n").unwrap();
    let dest = dir.join("dest");
    let run = |extra: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kdump"));
        cmd.args(["dump", "-d", "31", "-x"]).arg(&vmlinux);
        for p in extra {
            cmd.arg(p);
        }
        cmd.output().unwrap()
    };
    let out = run(&[&bare, &dest]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("has no VMCOREINFO") && err.contains("-i VMCOREINFO"), "{err}");
    let out = run(&[Path::new("-i"), &other, &bare, &dest]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("another kernel")
            && err.contains("5.10.0-32")
            && err.contains("6.1.0-mini"),
        "{err}"
    );
    assert!(!dest.exists() && !dir.join("dest.incomplete").exists(), "nothing written");
}
