use super::*;

/// Minimal view of one record, decoded independently of the encoder.
#[derive(Debug, PartialEq)]
struct Parsed {
    fields: [u32; 13],
    name: Vec<u8>,
    body: Vec<u8>,
}

const INO: usize = 0;
const MODE: usize = 1;
const UID: usize = 2;
const GID: usize = 3;
const NLINK: usize = 4;
const MTIME: usize = 5;
const RDEVMAJOR: usize = 9;
const RDEVMINOR: usize = 10;

fn parse(mut buf: &[u8]) -> Vec<Parsed> {
    let total = buf.len();
    let mut out = Vec::new();
    loop {
        assert_eq!((total - buf.len()) % 4, 0, "record not 4-aligned");
        assert_eq!(&buf[..6], b"070701");
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&buf[6 + 8 * i..14 + 8 * i]).unwrap();
            *field = u32::from_str_radix(hex, 16).unwrap();
        }
        let namesize = fields[11] as usize;
        let filesize = fields[6] as usize;
        let name_end = 110 + namesize;
        assert_eq!(buf[name_end - 1], 0, "name not NUL-terminated");
        let name = buf[110..name_end - 1].to_vec();
        let body_start = name_end.next_multiple_of(4);
        assert!(buf[name_end..body_start].iter().all(|&b| b == 0));
        let body_end = body_start + filesize;
        let body = buf[body_start..body_end].to_vec();
        let next = body_end.next_multiple_of(4);
        assert!(buf[body_end..next].iter().all(|&b| b == 0));
        buf = &buf[next..];
        let done = name == b"TRAILER!!!";
        out.push(Parsed { fields, name, body });
        if done {
            assert!(buf.is_empty(), "data after trailer");
            return out;
        }
    }
}

fn names(archive: &Archive) -> Vec<String> {
    parse(&archive.encode().unwrap()).into_iter().map(|p| String::from_utf8(p.name).unwrap()).collect()
}

#[test]
fn tiny_archive_exact_bytes() {
    let mut archive = Archive::new().mtime(0x05f5_e100);
    archive.add_file("/a", 0o644, "hi").unwrap();
    let expected = concat!(
        "070701",
        "00000001", // ino
        "000081a4", // mode: S_IFREG | 0644
        "00000000", // uid
        "00000000", // gid
        "00000001", // nlink
        "05f5e100", // mtime
        "00000002", // filesize
        "00000000", // devmajor
        "00000000", // devminor
        "00000000", // rdevmajor
        "00000000", // rdevminor
        "00000002", // namesize ("a\0")
        "00000000", // check
        "a\0",      // 110 + 2 = 112: no name padding
        "hi\0\0",   // data padded to 4
        "070701",
        "00000000",
        "00000000",
        "00000000",
        "00000000",
        "00000001",
        "00000000",
        "00000000",
        "00000000",
        "00000000",
        "00000000",
        "00000000",
        "0000000b",
        "00000000",
        "TRAILER!!!\0\0\0\0", // 110 + 11 = 121, padded to 124
    );
    let bytes = archive.encode().unwrap();
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
    assert_eq!(bytes.len(), 240);
    assert_eq!(archive.encoded_len(), 240);
}

#[test]
fn every_kind_exact_headers() {
    let mut archive = Archive::new().owner(1000, 100);
    archive
        .add_dir("d", 0o1777)
        .unwrap()
        .add_symlink("d/l", "../t")
        .unwrap()
        .add_char_device("c", 0o620, 4, 0x12345)
        .unwrap()
        .add_block_device("b", 0o660, 0xfff, 0xfffff)
        .unwrap();
    let bytes = archive.encode().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let expected = concat!(
        // b: S_IFBLK | 0660, rdev fff:fffff
        "070701",
        "00000001", // ino
        "000061b0", // mode
        "000003e8", // uid
        "00000064", // gid
        "00000001", // nlink
        "00000000", // mtime
        "00000000", // filesize
        "00000000", // devmajor
        "00000000", // devminor
        "00000fff", // rdevmajor
        "000fffff", // rdevminor
        "00000002", // namesize
        "00000000", // check
        "b\0",
        // c: S_IFCHR | 0620, rdev 4:12345
        "070701",
        "00000002", // ino
        "00002190", // mode
        "000003e8", // uid
        "00000064", // gid
        "00000001", // nlink
        "00000000", // mtime
        "00000000", // filesize
        "00000000", // devmajor
        "00000000", // devminor
        "00000004", // rdevmajor
        "00012345", // rdevminor
        "00000002", // namesize
        "00000000", // check
        "c\0",
        // d: S_IFDIR | 01777, nlink 2
        "070701",
        "00000003", // ino
        "000043ff", // mode
        "000003e8", // uid
        "00000064", // gid
        "00000002", // nlink
        "00000000", // mtime
        "00000000", // filesize
        "00000000", // devmajor
        "00000000", // devminor
        "00000000", // rdevmajor
        "00000000", // rdevminor
        "00000002", // namesize
        "00000000", // check
        "d\0",
        // d/l: S_IFLNK | 0777, body "../t"
        "070701",
        "00000004", // ino
        "0000a1ff", // mode
        "000003e8", // uid
        "00000064", // gid
        "00000001", // nlink
        "00000000", // mtime
        "00000004", // filesize
        "00000000", // devmajor
        "00000000", // devminor
        "00000000", // rdevmajor
        "00000000", // rdevminor
        "00000004", // namesize
        "00000000", // check
        "d/l\0\0\0../t",
    );
    assert!(text.starts_with(expected), "{text:?}");
    // The trailer carries no owner.
    let trailer = &parse(&bytes)[4];
    assert_eq!(trailer.name, b"TRAILER!!!");
    assert_eq!(trailer.fields[UID], 0);
    assert_eq!(trailer.fields[GID], 0);
}

#[test]
fn empty_archive_is_just_the_trailer() {
    let archive = Archive::new();
    let bytes = archive.encode().unwrap();
    assert_eq!(bytes.len(), 124);
    assert_eq!(archive.encoded_len(), 124);
    assert_eq!(parse(&bytes).len(), 1);
}

#[test]
fn padding_for_all_name_and_body_lengths() {
    for name_len in 1..=9 {
        for body_len in 0..=9 {
            let name = "n".repeat(name_len);
            let body = vec![0xa5u8; body_len];
            let mut archive = Archive::new();
            archive.add_file(&name, 0o600, body.clone()).unwrap();
            let bytes = archive.encode().unwrap();
            assert_eq!(bytes.len() % 4, 0);
            assert_eq!(bytes.len() as u64, archive.encoded_len());
            let records = parse(&bytes);
            assert_eq!(records[0].name, name.as_bytes());
            assert_eq!(records[0].body, body);
            assert_eq!(records[0].fields[11] as usize, name_len + 1);
            let head = 110 + name_len + 1;
            let expected = head.next_multiple_of(4) + body_len.next_multiple_of(4) + 124;
            assert_eq!(bytes.len(), expected, "name {name_len}, body {body_len}");
        }
    }
}

#[test]
fn sorted_with_implicit_parents_and_sequential_inodes() {
    let mut archive = Archive::new().mtime(7);
    archive
        .add_file("z", 0o644, "z")
        .unwrap()
        .add_file("/a/b/c", 0o600, "c")
        .unwrap()
        .add_symlink("a/x", "b/c")
        .unwrap()
        .add_file("a-b", 0o644, "")
        .unwrap()
        .add_dir("a/b", 0o700)
        .unwrap();
    let records = parse(&archive.encode().unwrap());
    let got: Vec<(&[u8], u32, u32)> =
        records.iter().map(|r| (r.name.as_slice(), r.fields[INO], r.fields[MODE])).collect();
    assert_eq!(
        got,
        [
            (&b"a"[..], 1, 0o40755), // implicit
            (b"a-b", 2, 0o100644),
            (b"a/b", 3, 0o40700), // explicit mode wins
            (b"a/b/c", 4, 0o100600),
            (b"a/x", 5, 0o120777),
            (b"z", 6, 0o100644),
            (b"TRAILER!!!", 0, 0),
        ]
    );
    for r in &records[..6] {
        assert_eq!(r.fields[MTIME], 7);
        assert_eq!(r.fields[UID], 0);
        assert_eq!(r.fields[GID], 0);
        let is_dir = r.fields[MODE] & 0o170000 == 0o040000;
        assert_eq!(r.fields[NLINK], if is_dir { 2 } else { 1 });
    }
    assert_eq!(records[4].body, b"b/c");
}

#[test]
fn output_is_independent_of_insertion_order() {
    let mut one = Archive::new();
    one.add_file("x/y", 0o644, "1").unwrap();
    one.add_dir("x", 0o711).unwrap();
    one.add_block_device("dev/sda", 0o660, 8, 0).unwrap();
    let mut two = Archive::new();
    two.add_block_device("./dev//sda", 0o660, 8, 0).unwrap();
    two.add_dir("/x/", 0o711).unwrap();
    two.add_file("x/./y", 0o644, "1").unwrap();
    assert_eq!(one.encode().unwrap(), two.encode().unwrap());
}

#[test]
fn write_to_matches_encode() {
    let mut archive = Archive::new();
    archive.add_file("bin/busybox", 0o755, vec![1, 2, 3, 4, 5]).unwrap().add_symlink("bin/sh", "busybox").unwrap();
    let mut out = Vec::new();
    let n = archive.write_to(&mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    assert_eq!(out, archive.encode().unwrap());
    // Works through a trait object too.
    let mut dynamic: Vec<u8> = Vec::new();
    let w: &mut dyn Write = &mut dynamic;
    archive.write_to(w).unwrap();
    assert_eq!(dynamic, out);
}

#[test]
fn write_errors_are_reported() {
    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let err = Archive::new().write_to(&mut Failing).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
}

#[test]
fn path_normalisation() {
    let cases = [
        ("/init", "init"),
        ("./init", "init"),
        ("//usr///bin/", "usr/bin"),
        ("./././a/./b/.", "a/b"),
        ("a b/ü", "a b/ü"),
    ];
    for (input, want) in cases {
        assert_eq!(normalize(Path::new(input)).unwrap(), want.as_bytes());
    }
}

#[test]
fn invalid_paths_are_rejected() {
    let mut archive = Archive::new();
    for empty in ["", "/", ".", "./", "//./"] {
        let err = archive.add_dir(empty, 0o755).unwrap_err();
        assert!(matches!(err, Error::EmptyPath(_)), "{empty:?}: {err:?}");
    }
    for dotdot in ["..", "../a", "a/../b", "/a/.."] {
        let err = archive.add_file(dotdot, 0o644, "").unwrap_err();
        assert!(matches!(err, Error::ParentComponent(_)), "{dotdot:?}: {err:?}");
    }
    // `..` inside a component is an ordinary name.
    archive.add_file("a..b/..c", 0o644, "").unwrap();
    let err = archive.add_file("a\0b", 0o644, "").unwrap_err();
    assert!(matches!(err, Error::NulInPath(_)), "{err:?}");
    let err = archive.add_file("/TRAILER!!!", 0o644, "").unwrap_err();
    assert!(matches!(err, Error::ReservedName(_)), "{err:?}");
    archive.add_file("x/TRAILER!!!", 0o644, "").unwrap();

    let longest = "a/".repeat(MAX_NAME_LEN / 2) + "b"; // exactly MAX_NAME_LEN
    assert_eq!(longest.len(), MAX_NAME_LEN);
    archive.add_file(&longest, 0o644, "").unwrap();
    let err = archive.add_file(format!("/{longest}c"), 0o644, "").unwrap_err();
    assert!(matches!(err, Error::PathTooLong { len, .. } if len == MAX_NAME_LEN + 1), "{err:?}");
}

#[test]
fn duplicates_are_rejected() {
    let mut archive = Archive::new();
    archive.add_file("/etc/passwd", 0o644, "root").unwrap();
    for dup in ["etc/passwd", "./etc//passwd", "/etc/passwd/"] {
        let err = archive.add_symlink(dup, "x").unwrap_err();
        assert!(matches!(err, Error::Duplicate(ref p) if p == Path::new(dup)), "{err:?}");
    }
    // An implicit parent can still be added explicitly, but only once.
    archive.add_dir("etc", 0o755).unwrap();
    let err = archive.add_dir("/etc", 0o700).unwrap_err();
    assert!(matches!(err, Error::Duplicate(_)), "{err:?}");
}

#[test]
fn non_directory_parents_are_rejected() {
    let mut archive = Archive::new();
    archive.add_file("bin/sh", 0o755, "").unwrap();
    let err = archive.add_file("bin/sh/x", 0o644, "").unwrap_err();
    match err {
        Error::ParentNotDirectory { path, parent } => {
            assert_eq!(path, Path::new("bin/sh/x"));
            assert_eq!(parent, Path::new("bin/sh"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Other order: the child exists first, then its parent is added as a
    // non-directory.
    archive.add_file("lib/modules/x.ko", 0o644, "").unwrap();
    archive.add_file("lib/modules-extra", 0o644, "").unwrap();
    let err = archive.add_symlink("/lib/modules", "/usr/lib").unwrap_err();
    match err {
        Error::ParentNotDirectory { path, parent } => {
            assert_eq!(path, Path::new("lib/modules/x.ko"));
            assert_eq!(parent, Path::new("lib/modules"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = archive.add_char_device("lib", 0o600, 1, 1).unwrap_err();
    assert!(matches!(err, Error::ParentNotDirectory { .. }), "{err:?}");
    // A sibling sharing a prefix is not a descendant.
    archive.add_file("lib/mod", 0o644, "").unwrap();
}

#[test]
fn invalid_modes_are_rejected() {
    let mut archive = Archive::new();
    archive.add_file("suid", 0o4755, "").unwrap();
    archive.add_dir("tmp", 0o1777).unwrap();
    let err = archive.add_file("f", 0o100644, "").unwrap_err();
    assert!(matches!(err, Error::InvalidMode { mode: 0o100644, .. }), "{err:?}");
    let err = archive.add_dir("d", 0o10000).unwrap_err();
    assert!(matches!(err, Error::InvalidMode { .. }), "{err:?}");
    let err = archive.add_block_device("b", u32::MAX, 1, 1).unwrap_err();
    assert!(matches!(err, Error::InvalidMode { .. }), "{err:?}");
}

#[test]
fn device_numbers_are_range_checked() {
    let mut archive = Archive::new();
    archive.add_char_device("max", 0o600, MAX_DEVICE_MAJOR, MAX_DEVICE_MINOR).unwrap();
    let err = archive.add_char_device("major", 0o600, MAX_DEVICE_MAJOR + 1, 0).unwrap_err();
    assert!(matches!(err, Error::DeviceNumberOutOfRange { major: 4096, minor: 0, .. }), "{err:?}");
    let err = archive.add_block_device("minor", 0o600, 0, MAX_DEVICE_MINOR + 1).unwrap_err();
    assert!(matches!(err, Error::DeviceNumberOutOfRange { .. }), "{err:?}");
}

#[test]
fn symlink_targets_are_checked() {
    let mut archive = Archive::new();
    let longest = "t".repeat(MAX_SYMLINK_TARGET_LEN);
    archive.add_symlink("ok", &longest).unwrap();
    for bad in ["", "a\0b"] {
        let err = archive.add_symlink("bad", bad).unwrap_err();
        assert!(matches!(err, Error::InvalidSymlinkTarget { .. }), "{err:?}");
    }
    let err = archive.add_symlink("bad", format!("{longest}t")).unwrap_err();
    assert!(matches!(err, Error::InvalidSymlinkTarget { .. }), "{err:?}");
    let records = parse(&archive.encode().unwrap());
    assert_eq!(records[0].body, longest.as_bytes());
}

#[test]
fn file_size_limit() {
    let path = Path::new("big");
    check_file_size(path, MAX_FILE_SIZE).unwrap();
    let err = check_file_size(path, MAX_FILE_SIZE + 1).unwrap_err();
    assert!(matches!(err, Error::FileTooLarge { size, .. } if size == 1 << 32), "{err:?}");
    assert!(err.to_string().contains("4294967296"), "{err}");
}

#[test]
fn device_records_carry_rdev_only() {
    let mut archive = Archive::new();
    archive.add_block_device("dev/vda1", 0o600, 253, 1).unwrap();
    let records = parse(&archive.encode().unwrap());
    let dev = &records[1];
    assert_eq!(dev.name, b"dev/vda1");
    assert_eq!(dev.fields[MODE], 0o060600);
    assert_eq!(dev.fields[RDEVMAJOR], 253);
    assert_eq!(dev.fields[RDEVMINOR], 1);
    assert_eq!(dev.fields[6], 0, "filesize");
    assert_eq!(dev.fields[7], 0, "devmajor");
    assert_eq!(dev.fields[8], 0, "devminor");
    assert!(dev.body.is_empty());
}

#[test]
fn deep_path_gets_every_ancestor() {
    let mut archive = Archive::new();
    archive.add_file("/x/y/z", 0o644, "").unwrap();
    assert_eq!(names(&archive), ["x", "x/y", "x/y/z", "TRAILER!!!"]);
}

#[test]
fn debug_does_not_dump_contents() {
    let mut archive = Archive::new();
    archive.add_file("f", 0o644, vec![0x42; 1000]).unwrap();
    let debug = format!("{archive:?}");
    assert!(debug.contains("len: 1000"), "{debug}");
    assert!(!debug.contains("66, 66"), "{debug}");
}
