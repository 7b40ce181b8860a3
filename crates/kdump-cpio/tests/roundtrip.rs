//! Property-style test: random entry sets are encoded and decoded again by
//! a small, strict newc parser written here, independently of the encoder
//! (it follows the arithmetic of the kernel's `init/initramfs.c`). The
//! decoded records are compared with a model of what was added, including
//! which additions must fail.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kdump_cpio::{Archive, Error};

/// SplitMix64: tiny, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
}

#[derive(Clone, Debug, PartialEq)]
struct Model {
    mode: u32,
    kind: Kind,
}

impl Model {
    fn st_mode(&self) -> u32 {
        match self.kind {
            Kind::File(_) => 0o100000 | self.mode,
            Kind::Dir => 0o040000 | self.mode,
            Kind::Symlink(_) => 0o120777,
            Kind::Char(..) => 0o020000 | self.mode,
            Kind::Block(..) => 0o060000 | self.mode,
        }
    }

    fn body(&self) -> &[u8] {
        match &self.kind {
            Kind::File(data) | Kind::Symlink(data) => data,
            _ => &[],
        }
    }

    fn rdev(&self) -> (u32, u32) {
        match self.kind {
            Kind::Char(ma, mi) | Kind::Block(ma, mi) => (ma, mi),
            _ => (0, 0),
        }
    }
}

/// One decoded record.
#[derive(Debug)]
struct Record {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    devmajor: u32,
    devminor: u32,
    rdevmajor: u32,
    rdevminor: u32,
    check: u32,
    name: Vec<u8>,
    body: Vec<u8>,
}

/// `N_ALIGN` from init/initramfs.c: bytes occupied by a name of
/// `name_len` bytes (NUL included) so the next field is 4-aligned, given
/// that the 110-byte header started 4-aligned.
fn n_align(name_len: usize) -> usize {
    ((name_len + 1) & !3) + 2
}

fn hex_field(header: &[u8], index: usize) -> u32 {
    let digits = &header[6 + 8 * index..6 + 8 * (index + 1)];
    assert!(digits.iter().all(u8::is_ascii_hexdigit), "field {index} is not hex: {digits:?}");
    u32::from_str_radix(std::str::from_utf8(digits).unwrap(), 16).unwrap()
}

/// Strict newc parser: every record must start 4-aligned, padding must be
/// NUL bytes of exactly the right length, and nothing may follow the
/// trailer.
fn parse(buf: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let mut this_header = 0usize;
    loop {
        assert_eq!(this_header % 4, 0);
        let header = &buf[this_header..this_header + 110];
        assert_eq!(&header[..6], b"070701", "magic at offset {this_header}");
        let name_len = hex_field(header, 11) as usize;
        let body_len = hex_field(header, 6) as usize;
        assert!(name_len >= 2, "namesize {name_len}");
        let name_area = &buf[this_header + 110..this_header + 110 + n_align(name_len)];
        let (name, name_pad) = name_area.split_at(name_len - 1);
        assert!(!name.contains(&0), "NUL inside name {name:?}");
        assert!(name_pad.iter().all(|&b| b == 0), "name padding {name_pad:?}");
        assert!(name_pad.len() <= 4);
        let body_start = this_header + 110 + n_align(name_len);
        assert_eq!(body_start % 4, 0);
        let body = &buf[body_start..body_start + body_len];
        let next_header = (body_start + body_len + 3) & !3;
        assert!(buf[body_start + body_len..next_header].iter().all(|&b| b == 0), "body padding");
        records.push(Record {
            ino: hex_field(header, 0),
            mode: hex_field(header, 1),
            uid: hex_field(header, 2),
            gid: hex_field(header, 3),
            nlink: hex_field(header, 4),
            mtime: hex_field(header, 5),
            devmajor: hex_field(header, 7),
            devminor: hex_field(header, 8),
            rdevmajor: hex_field(header, 9),
            rdevminor: hex_field(header, 10),
            check: hex_field(header, 12),
            name: name.to_vec(),
            body: body.to_vec(),
        });
        this_header = next_header;
        if name == b"TRAILER!!!" {
            assert_eq!(this_header, buf.len(), "bytes after the trailer");
            return records;
        }
    }
}

/// A random name component; never `.`, `..` or empty.
fn component(rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcxyzABC0129-_.~+=, #";
    loop {
        let len = 1 + rng.below(12) as usize;
        let mut name: Vec<u8> = (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize]).collect();
        if rng.chance(10) {
            // Non-UTF-8 byte: names are bytes, not strings.
            name.push(0x80 | rng.next() as u8);
        }
        if name != b"." && name != b".." {
            return name;
        }
    }
}

fn data(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => rng.below(4) as usize,
        1 => 4 * rng.below(8) as usize,
        2 => rng.below(100) as usize,
        _ => rng.below(5000) as usize,
    };
    rng.bytes(len)
}

fn random_kind(rng: &mut Rng) -> Kind {
    match rng.below(6) {
        0 | 1 => Kind::File(data(rng)),
        2 => Kind::Dir,
        3 => {
            let len = 1 + rng.below(60) as usize;
            let target = rng.bytes(len).into_iter().map(|b| if b == 0 { b'/' } else { b }).collect();
            Kind::Symlink(target)
        }
        4 => Kind::Char(rng.below(4096) as u32, rng.below(1 << 20) as u32),
        _ => Kind::Block(rng.below(4096) as u32, rng.below(1 << 20) as u32),
    }
}

/// Spells the canonical `name` in one of the equivalent ways the archive
/// must normalise.
fn spelling(rng: &mut Rng, name: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match rng.below(4) {
        0 => out.push(b'/'),
        1 => out.extend_from_slice(b"./"),
        2 => out.extend_from_slice(b"//./"),
        _ => {}
    }
    for (i, part) in name.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            out.extend_from_slice(if rng.chance(20) { b"/./" } else { b"/" });
        }
        out.extend_from_slice(part);
    }
    if rng.chance(10) {
        out.push(b'/');
    }
    out
}

enum Outcome {
    Ok,
    Duplicate,
    ParentNotDirectory,
}

/// What adding `name` as `kind` to `model` must do.
fn predict(model: &BTreeMap<Vec<u8>, Model>, name: &[u8], kind: &Kind) -> Outcome {
    if model.contains_key(name) {
        return Outcome::Duplicate;
    }
    for (i, &b) in name.iter().enumerate() {
        if b == b'/' && model.get(&name[..i]).is_some_and(|m| m.kind != Kind::Dir) {
            return Outcome::ParentNotDirectory;
        }
    }
    if *kind != Kind::Dir {
        let has_descendant = model.keys().any(|k| k.len() > name.len() && k.starts_with(name) && k[name.len()] == b'/');
        if has_descendant {
            return Outcome::ParentNotDirectory;
        }
    }
    Outcome::Ok
}

fn add(archive: &mut Archive, path: &Path, model: &Model) -> Result<(), Error> {
    match &model.kind {
        Kind::File(data) => archive.add_file(path, model.mode, data.clone()),
        Kind::Dir => archive.add_dir(path, model.mode),
        Kind::Symlink(target) => archive.add_symlink(path, OsStr::from_bytes(target)),
        Kind::Char(ma, mi) => archive.add_char_device(path, model.mode, *ma, *mi),
        Kind::Block(ma, mi) => archive.add_block_device(path, model.mode, *ma, *mi),
    }
    .map(|_| ())
}

fn check_seed(seed: u64) {
    let mut rng = Rng(seed);
    let mtime = if rng.chance(50) { 0 } else { rng.next() as u32 };
    let (uid, gid) = if rng.chance(50) { (0, 0) } else { (rng.next() as u32, rng.next() as u32) };
    let mut archive = Archive::new().mtime(mtime).owner(uid, gid);
    let mut model: BTreeMap<Vec<u8>, Model> = BTreeMap::new();

    // A small pool of components makes collisions and type conflicts common.
    let pool: Vec<Vec<u8>> = (0..2 + rng.below(6)).map(|_| component(&mut rng)).collect();
    let attempts = rng.below(60);
    let (mut ok, mut rejected) = (0, 0);
    for _ in 0..attempts {
        let depth = 1 + rng.below(4) as usize;
        let name =
            (0..depth).map(|_| pool[rng.below(pool.len() as u64) as usize].clone()).collect::<Vec<_>>().join(&b'/');
        let entry = Model { mode: rng.below(0o10000) as u32, kind: random_kind(&mut rng) };
        let spelled = spelling(&mut rng, &name);
        let path = Path::new(OsStr::from_bytes(&spelled));
        let result = add(&mut archive, path, &entry);
        match (predict(&model, &name, &entry.kind), result) {
            (Outcome::Ok, Ok(())) => {
                ok += 1;
                model.insert(name, entry);
            }
            (Outcome::Duplicate, Err(Error::Duplicate(p))) => {
                rejected += 1;
                assert_eq!(p, path);
            }
            (Outcome::ParentNotDirectory, Err(Error::ParentNotDirectory { .. })) => {
                rejected += 1;
            }
            (_, other) => {
                panic!("seed {seed}: adding {:?} as {:?} gave {other:?}", String::from_utf8_lossy(&spelled), entry.kind)
            }
        }
    }
    assert!(ok + rejected == attempts);

    // Expected output: explicit entries plus implicit 0755 parents, sorted
    // by name bytes.
    let mut expected = model.clone();
    for name in model.keys() {
        let parts: Vec<&[u8]> = name.split(|&b| b == b'/').collect();
        for depth in 1..parts.len() {
            expected.entry(parts[..depth].join(&b'/')).or_insert(Model { mode: 0o755, kind: Kind::Dir });
        }
    }

    let bytes = archive.encode().unwrap();
    assert_eq!(bytes.len() as u64, archive.encoded_len(), "seed {seed}");
    let mut streamed = Vec::new();
    assert_eq!(archive.write_to(&mut streamed).unwrap(), bytes.len() as u64);
    assert_eq!(streamed, bytes, "seed {seed}");

    let records = parse(&bytes);
    assert_eq!(records.len(), expected.len() + 1, "seed {seed}");
    for (i, (record, (name, want))) in records.iter().zip(&expected).enumerate() {
        let ctx = format!("seed {seed}, entry {:?}", String::from_utf8_lossy(name));
        assert_eq!(&record.name, name, "{ctx}");
        assert_eq!(record.ino as usize, i + 1, "{ctx}");
        assert_eq!(record.mode, want.st_mode(), "{ctx}");
        assert_eq!((record.uid, record.gid), (uid, gid), "{ctx}");
        let nlink = if want.kind == Kind::Dir { 2 } else { 1 };
        assert_eq!(record.nlink, nlink, "{ctx}");
        assert_eq!(record.mtime, mtime, "{ctx}");
        assert_eq!((record.devmajor, record.devminor), (0, 0), "{ctx}");
        assert_eq!((record.rdevmajor, record.rdevminor), want.rdev(), "{ctx}");
        assert_eq!(record.check, 0, "{ctx}");
        assert_eq!(record.body, want.body(), "{ctx}");
    }
    let trailer = records.last().unwrap();
    assert_eq!(trailer.name, b"TRAILER!!!");
    assert_eq!((trailer.ino, trailer.mode, trailer.nlink), (0, 0, 1));
    assert!(trailer.body.is_empty());
}

#[test]
fn random_archives_round_trip() {
    for seed in 0..500 {
        check_seed(seed);
    }
}

#[test]
fn output_does_not_depend_on_insertion_order() {
    for seed in 0..50 {
        let mut rng = Rng(seed ^ 0xdead_beef);
        let entries: Vec<(Vec<u8>, Model)> = (0..1 + rng.below(30))
            .map(|i| {
                // Distinct leaf names, so every insertion order succeeds.
                let mut name = component(&mut rng);
                name.extend_from_slice(format!("/f{i}").as_bytes());
                let kind = match random_kind(&mut rng) {
                    Kind::Dir => Kind::File(Vec::new()),
                    other => other,
                };
                let mode = rng.below(0o10000) as u32;
                (name, Model { mode, kind })
            })
            .collect();
        let build = |order: &[usize]| {
            let mut archive = Archive::new();
            for &i in order {
                let (name, model) = &entries[i];
                add(&mut archive, Path::new(OsStr::from_bytes(name)), model).unwrap();
            }
            archive.encode().unwrap()
        };
        let forward: Vec<usize> = (0..entries.len()).collect();
        let mut shuffled = forward.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let reversed: Vec<usize> = forward.iter().rev().copied().collect();
        let reference = build(&forward);
        assert_eq!(build(&shuffled), reference, "seed {seed}");
        assert_eq!(build(&reversed), reference, "seed {seed}");
    }
}
