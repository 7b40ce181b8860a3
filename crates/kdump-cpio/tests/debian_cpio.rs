//! Cross-checks the encoder against Debian's GNU `cpio` (package `cpio`).
//!
//! These tests need `/usr/bin/cpio` and root privileges (device nodes and
//! ownership are restored on extraction). They fail, rather than skip, when
//! either is missing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kdump_cpio::Archive;

const CPIO: &str = "/usr/bin/cpio";
const MTIME: u32 = 1_700_000_000;

/// What an entry should look like after extraction.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    File { mode: u32, data: Vec<u8> },
    Dir { mode: u32 },
    Symlink { target: &'static str },
    Char { mode: u32, major: u32, minor: u32 },
    Block { mode: u32, major: u32, minor: u32 },
}

/// Deterministic bytes covering every value.
fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The archive used by most tests, and the entries it must produce
/// (implicit parent directories included), keyed by archive name.
fn sample() -> (Archive, BTreeMap<&'static str, Expect>) {
    let mut archive = Archive::new().mtime(MTIME);
    let mut expect = BTreeMap::new();
    let files: [(&'static str, u32, Vec<u8>); 8] = [
        ("/init", 0o755, b"#!/bin/sh\nexec /bin/sh\n".to_vec()),
        ("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
        ("etc/with space", 0o640, b"spaced".to_vec()),
        ("./empty", 0o600, Vec::new()),
        ("bin/suid", 0o4755, blob(13, 1)),
        ("data/blob", 0o640, blob(1001, 7)),
        ("data/aligned", 0o444, b"1234".to_vec()),
        ("usr/share/doc/x/README", 0o644, blob(4096, 3)),
    ];
    for (path, mode, data) in files {
        archive.add_file(path, mode, data.clone()).unwrap();
        let name = path.trim_start_matches('/').trim_start_matches("./");
        expect.insert(name, Expect::File { mode, data });
    }
    for (path, mode) in [("etc", 0o755), ("tmp", 0o1777), ("root", 0o700)] {
        archive.add_dir(path, mode).unwrap();
        expect.insert(path, Expect::Dir { mode });
    }
    for (path, target) in [("bin/sh", "busybox"), ("lib", "/usr/lib"), ("data/up", "../etc/passwd")] {
        archive.add_symlink(path, target).unwrap();
        expect.insert(path, Expect::Symlink { target });
    }
    for (path, mode, major, minor) in
        [("dev/console", 0o600, 5, 1), ("dev/null", 0o666, 1, 3), ("dev/big", 0o620, 511, 70_000)]
    {
        archive.add_char_device(path, mode, major, minor).unwrap();
        expect.insert(path, Expect::Char { mode, major, minor });
    }
    for (path, mode, major, minor) in [("dev/vda1", 0o660, 253, 1), ("dev/sda", 0o600, 8, 0)] {
        archive.add_block_device(path, mode, major, minor).unwrap();
        expect.insert(path, Expect::Block { mode, major, minor });
    }
    for implicit in ["bin", "data", "dev", "usr", "usr/share", "usr/share/doc", "usr/share/doc/x"] {
        expect.insert(implicit, Expect::Dir { mode: 0o755 });
    }
    (archive, expect)
}

/// Runs cpio with `args`, feeding `input` on stdin, in directory `cwd`.
/// Panics unless it exits successfully with nothing but the block count on
/// stderr. Returns stdout.
fn cpio(args: &[&str], input: &[u8], cwd: &Path) -> String {
    let mut child = Command::new(CPIO)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {CPIO} ({e}); install the Debian package `cpio`"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "cpio {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    for line in stderr.lines() {
        let is_block_count = line
            .strip_suffix(" blocks")
            .or_else(|| line.strip_suffix(" block"))
            .is_some_and(|n| n.parse::<u64>().is_ok());
        assert!(is_block_count, "unexpected cpio {args:?} diagnostic: {line}");
    }
    stdout
}

fn write_archive(dir: &Path, archive: &Archive) -> Vec<u8> {
    let path = dir.join("archive.cpio");
    let mut file = fs::File::create(&path).unwrap();
    let written = archive.write_to(&mut file).unwrap();
    drop(file);
    let bytes = fs::read(&path).unwrap();
    assert_eq!(written, bytes.len() as u64);
    assert_eq!(bytes, archive.encode().unwrap());
    bytes
}

fn mode_string(expect: &Expect) -> String {
    let (kind, mode) = match expect {
        Expect::File { mode, .. } => ('-', *mode),
        Expect::Dir { mode } => ('d', *mode),
        Expect::Symlink { .. } => ('l', 0o777),
        Expect::Char { mode, .. } => ('c', *mode),
        Expect::Block { mode, .. } => ('b', *mode),
    };
    let mut s = String::from(kind);
    for (shift, special, set_exec, set_noexec) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')]
    {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set_exec,
            (false, true) => set_noexec,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Splits off `n` whitespace-separated fields and returns them with the
/// rest of the line (which may contain spaces).
fn split_fields(line: &str, n: usize) -> (Vec<&str>, &str) {
    let mut fields = Vec::new();
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or_else(|| panic!("short line {line:?}"));
        fields.push(&rest[..end]);
        rest = &rest[end..];
    }
    (fields, rest.trim_start())
}

#[test]
fn cpio_lists_names_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, expect) = sample();
    let bytes = write_archive(dir.path(), &archive);
    let listing = cpio(&["-i", "-t"], &bytes, dir.path());
    let names: Vec<&str> = listing.lines().collect();
    let expected: Vec<&str> = expect.keys().copied().collect();
    assert_eq!(names, expected);
}

#[test]
fn cpio_verbose_listing_shows_modes_owners_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, expect) = sample();
    let bytes = write_archive(dir.path(), &archive);
    let listing = cpio(&["-i", "-t", "-v"], &bytes, dir.path());
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), expect.len(), "{listing}");
    for (line, (name, want)) in lines.iter().zip(&expect) {
        let is_device = matches!(want, Expect::Char { .. } | Expect::Block { .. });
        // mode nlink user group (size | major, minor) month day year/time
        let count = if is_device { 9 } else { 8 };
        let (fields, rest) = split_fields(line, count);
        assert_eq!(fields[0], mode_string(want), "{line}");
        let nlink = if matches!(want, Expect::Dir { .. }) { "2" } else { "1" };
        assert_eq!(fields[1], nlink, "{line}");
        assert_eq!(&fields[2..4], ["root", "root"], "{line}");
        match want {
            Expect::File { data, .. } => {
                assert_eq!(fields[4], data.len().to_string(), "{line}");
                assert_eq!(rest, *name, "{line}");
            }
            Expect::Dir { .. } => {
                assert_eq!(fields[4], "0", "{line}");
                assert_eq!(rest, *name, "{line}");
            }
            Expect::Symlink { target } => {
                assert_eq!(fields[4], target.len().to_string(), "{line}");
                assert_eq!(rest, format!("{name} -> {target}"), "{line}");
            }
            Expect::Char { major, minor, .. } | Expect::Block { major, minor, .. } => {
                assert_eq!(fields[4], format!("{major},"), "{line}");
                assert_eq!(fields[5], minor.to_string(), "{line}");
                assert_eq!(rest, *name, "{line}");
            }
        }
    }
}

/// glibc's `gnu_dev_major`/`gnu_dev_minor`.
fn major(rdev: u64) -> u32 {
    (((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)) as u32
}

fn minor(rdev: u64) -> u32 {
    ((rdev & 0xff) | ((rdev >> 12) & !0xff)) as u32
}

/// Every path below `root`, relative to it, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().to_owned());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                visit(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(root, root, &mut out);
    out.sort();
    out
}

fn extract(bytes: &[u8], scratch: &Path) -> PathBuf {
    let out = scratch.join("root");
    fs::create_dir(&out).unwrap();
    cpio(&["-i", "-d", "-m", "--no-absolute-filenames", "--quiet"], bytes, &out);
    out
}

#[test]
fn cpio_extracts_identical_tree() {
    assert_eq!(fs::metadata("/proc/self").unwrap().uid(), 0, "this test must run as root (device nodes, ownership)");
    let dir = tempfile::tempdir().unwrap();
    let (archive, expect) = sample();
    let bytes = write_archive(dir.path(), &archive);
    let root = extract(&bytes, dir.path());

    let found = walk(&root);
    let wanted: Vec<PathBuf> = expect.keys().map(PathBuf::from).collect();
    assert_eq!(found, wanted);

    for (name, want) in &expect {
        let path = root.join(name);
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let perm = meta.mode() & 0o7777;
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{name}");
        match want {
            Expect::File { mode, data } => {
                assert!(ft.is_file(), "{name}: {ft:?}");
                assert_eq!(perm, *mode, "{name}");
                assert_eq!(&fs::read(&path).unwrap(), data, "{name}");
                assert_eq!(meta.mtime(), i64::from(MTIME), "{name}");
            }
            Expect::Dir { mode } => {
                assert!(ft.is_dir(), "{name}: {ft:?}");
                assert_eq!(perm, *mode, "{name}");
            }
            Expect::Symlink { target } => {
                assert!(ft.is_symlink(), "{name}: {ft:?}");
                assert_eq!(fs::read_link(&path).unwrap(), Path::new(target), "{name}");
            }
            Expect::Char { mode, major: ma, minor: mi } => {
                assert!(ft.is_char_device(), "{name}: {ft:?}");
                assert_eq!(perm, *mode, "{name}");
                assert_eq!((major(meta.rdev()), minor(meta.rdev())), (*ma, *mi), "{name}");
            }
            Expect::Block { mode, major: ma, minor: mi } => {
                assert!(ft.is_block_device(), "{name}: {ft:?}");
                assert_eq!(perm, *mode, "{name}");
                assert_eq!((major(meta.rdev()), minor(meta.rdev())), (*ma, *mi), "{name}");
            }
        }
    }
}

#[test]
fn cpio_restores_configured_owner() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = Archive::new().owner(1234, 5678);
    archive.add_file("a/b/file", 0o640, "owned").unwrap().add_symlink("a/link", "b/file").unwrap();
    let bytes = write_archive(dir.path(), &archive);
    let root = extract(&bytes, dir.path());
    for name in ["a", "a/b", "a/b/file", "a/link"] {
        let meta = fs::symlink_metadata(root.join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "{name}");
    }
}

#[test]
fn cpio_extracts_many_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = Archive::new();
    let mut expect = BTreeMap::new();
    for i in 0..300usize {
        let path = format!("d{}/s{}/f{i:03}", i % 7, i % 3);
        let data = blob(i * 37 % 1500, i as u8);
        archive.add_file(&path, 0o600 + (i as u32 % 0o100), data.clone()).unwrap();
        expect.insert(path, data);
    }
    let bytes = write_archive(dir.path(), &archive);
    let root = extract(&bytes, dir.path());
    for (path, data) in &expect {
        assert_eq!(&fs::read(root.join(path)).unwrap(), data, "{path}");
    }
    let files = walk(&root).into_iter().filter(|p| root.join(p).is_file()).count();
    assert_eq!(files, expect.len());
}
