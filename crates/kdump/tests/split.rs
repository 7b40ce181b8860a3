//! `kdump dump --split` and `--reassemble` (also under the `makedumpfile` name) on a small
//! synthetic machine: each part's headers, bitmaps and range are makedumpfile's, every page of
//! the single-file dump is in exactly one part, the parts read together and joined give that
//! dump back, and sets that are not whole are refused with the cause. The last two tests
//! take Debian's makedumpfile as the oracle (they FAIL when it is not installed): it joins
//! our parts into the single-file dump, and we join its parts.
//!
//! The machine is one makedumpfile accepts (see kdump-dumpfile/tests/makedumpfile.rs): a
//! page table mapping the kernel window with a 1 GiB page, a `struct uts_namespace`, and a
//! FLATMEM `mem_map` pointer, so it runs at dump level 1 (zero pages shared).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kdump_dumpfile::elf::{EM_X86_64, write_elf64_vmcore};
use kdump_dumpfile::notes::push_note;
use kdump_dumpfile::{KdumpReader, PageState, PhysMem, SetUse, SplitReader};

const PS: usize = 4096;
const RAM: [(u64, u64); 2] = [(1, 0xa0), (0x100, 0xff0)];
/// One past the last RAM page: an ELF vmcore's `max_mapnr`.
const MAX_PFN: u64 = 0xff0;
/// The other machine: the same but for a shorter first RAM range.
const RAM_B: [(u64, u64); 2] = [(1, 0x90), (0x100, 0xff0)];
const PGD_PFN: u64 = 0x801;
const PUD_PFN: u64 = 0x802;
const UTS_PFN: u64 = 0x803;
const MEMMAP_PFN: u64 = 0x804;
const RELEASE: &str = "6.1.0-splittest";
const EPOCH: &str = "1764547200";

fn vmcoreinfo() -> String {
    format!(
        "OSRELEASE={RELEASE}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)={:x}\nOFFSET(uts_namespace.name)=4\n\
         SYMBOL(init_top_pgt)={:x}\nNUMBER(phys_base)=0\nSYMBOL(mem_map)={:x}\nSIZE(page)=64\n\
         OFFSET(page.flags)=0\nOFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\n",
        0xffff_ffff_8000_0000u64 + UTS_PFN * PS as u64,
        0xffff_ffff_8000_0000u64 + PGD_PFN * PS as u64,
        0xffff_ffff_8000_0000u64 + MEMMAP_PFN * PS as u64,
    )
}

/// Page `pfn` of the machine: kernel structures, every 5th zero, every 7th incompressible.
fn page(pfn: u64) -> Vec<u8> {
    let mut p = vec![0u8; PS];
    match pfn {
        PGD_PFN => p[511 * 8..512 * 8].copy_from_slice(&((PUD_PFN * PS as u64) | 0x63).to_le_bytes()),
        // PUD entry 510 (0xffffffff80000000): 1 GiB page at physical 0, present|rw|PSE.
        PUD_PFN => p[510 * 8..511 * 8].copy_from_slice(&0x83u64.to_le_bytes()),
        UTS_PFN => {
            for (i, s) in ["Linux", "splithost", RELEASE, "#1 SMP", "x86_64", "(none)"].iter().enumerate() {
                p[4 + 65 * i..4 + 65 * i + s.len()].copy_from_slice(s.as_bytes());
            }
        }
        MEMMAP_PFN => p[..8].copy_from_slice(&0xffff_ea00_0000_0000u64.to_le_bytes()),
        _ if pfn.is_multiple_of(5) => {}
        _ if pfn.is_multiple_of(7) => {
            let mut x = pfn | 1;
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
        _ => p.iter_mut().enumerate().for_each(|(i, b)| *b = ((i / 16) as u64 ^ pfn) as u8),
    }
    p
}

/// The machine as an ELF vmcore (what /proc/vmcore is), at `dir/name`.
fn vmcore(dir: &Path, name: &str, ram: &[(u64, u64)]) -> PathBuf {
    let mut notes = Vec::new();
    push_note(&mut notes, b"CORE", 1, &[0; 336]);
    push_note(&mut notes, b"VMCOREINFO", 0, vmcoreinfo().as_bytes());
    let segs: Vec<Vec<u8>> = ram.iter().map(|&(s, e)| (s..e).flat_map(page).collect()).collect();
    let refs: Vec<(u64, u64, &[u8])> =
        ram.iter().zip(&segs).map(|(&(s, e), b)| (s * PS as u64, (e - s) * PS as u64, b.as_slice())).collect();
    let path = dir.join(name);
    write_elf64_vmcore(&mut File::create(&path).unwrap(), EM_X86_64, &notes, &refs).unwrap();
    path
}

fn kdump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kdump")).env("SOURCE_DATE_EPOCH", EPOCH).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = kdump(args);
    assert!(out.status.success(), "kdump {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `args`, which must fail with exit 1 saying every one of `said`.
fn refused(args: &[&str], said: &[&str]) -> String {
    let out = kdump(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "kdump {args:?} should fail: {err}");
    for s in said {
        assert!(err.contains(s), "kdump {args:?}: no {s:?} in: {err}");
    }
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn open(p: &Path) -> KdumpReader<File> {
    KdumpReader::open(File::open(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn set(parts: &[PathBuf]) -> SplitReader<File> {
    let named = parts.iter().map(|p| (p.display().to_string(), open(p))).collect();
    SplitReader::new(named, SetUse::Read).unwrap()
}

/// What a reader holds: every PFN's state, and the contents of the pages it has.
fn contents(m: &mut dyn PhysMem) -> BTreeMap<u64, (PageState, Option<Vec<u8>>)> {
    let mut buf = vec![0u8; PS];
    (0..m.max_pfn())
        .map(|pfn| {
            let st = m.read_page(pfn, &mut buf).unwrap();
            (pfn, (st, st.is_present().then(|| buf.clone())))
        })
        .collect()
}

/// The PFNs with a descriptor in a file.
fn described(r: &mut KdumpReader<File>) -> Vec<u64> {
    (0..r.max_pfn()).filter(|&p| r.page_desc(p).unwrap().is_some()).collect()
}

/// Bytes `[at, at + len)` of a file.
fn bytes(p: &Path, at: u64, len: u64) -> Vec<u8> {
    std::fs::read(p).unwrap()[at as usize..(at + len) as usize].to_vec()
}

/// A split set and the single-file dump of the same source at the same level.
struct Dumps {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    source: PathBuf,
    parts: Vec<PathBuf>,
    one: PathBuf,
}

fn split_and_single(level: &str, codec: &str) -> Dumps {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let source = vmcore(&dir, "vmcore", &RAM);
    let parts: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("s{i}"))).collect();
    let one = dir.join("one");
    let mut args = vec!["dump", "--split", codec, "-d", level, s(&source)];
    args.extend(parts.iter().map(|p| s(p)));
    let out = ok(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    for p in &parts {
        assert!(err.contains(&format!("{}: PFNs", p.display())), "each part is reported: {err}");
        assert!(!dir.join(format!("{}.incomplete", p.display())).exists());
    }
    ok(&["dump", codec, "-d", level, s(&source), s(&one)]);
    Dumps { _dir: tmp, dir, source, parts, one }
}

#[test]
fn each_part_has_makedumpfiles_headers_bitmaps_and_its_share_of_the_pages() {
    let d = split_and_single("1", "-l");
    let mut one = open(&d.one);
    let h = one.header().clone();
    let block = u64::from(h.block_size as u32);
    let (sub_blocks, bitmap_blocks) = (h.sub_hdr_size as u64, u64::from(h.bitmap_blocks));
    let bitmaps = |p: &Path| bytes(p, block * (1 + sub_blocks), block * bitmap_blocks);
    let one_pages = described(&mut one);
    let mut next = 0u64;
    let mut shares = Vec::new();
    for p in &d.parts {
        let mut r = open(p);
        // The same disk_dump_header as the single file (same source, level and pinned time).
        assert!(bytes(p, 0, 464) == bytes(&d.one, 0, 464), "{}: disk_dump_header", p.display());
        let sub = r.sub_header().clone();
        assert_eq!(sub.split, 1, "{}", p.display());
        assert_eq!(sub.start_pfn_64, next, "{}: ranges are contiguous", p.display());
        assert!(sub.end_pfn_64 >= sub.start_pfn_64);
        assert_eq!((sub.start_pfn, sub.end_pfn), (sub.start_pfn_64, sub.end_pfn_64), "32-bit fields");
        assert_eq!(sub.max_mapnr_64, MAX_PFN, "max_mapnr is the whole dump's");
        assert_eq!(sub.dump_level, 1);
        assert_eq!(r.split_range(), Some(sub.start_pfn_64..sub.end_pfn_64));
        // Both bitmaps whole: the single file's, byte for byte.
        assert!(bitmaps(p) == bitmaps(&d.one), "{}: bitmaps differ from the single file's", p.display());
        assert_eq!(r.dumpable_pages(), one.dumpable_pages());
        // Descriptors only for its own range.
        let own: Vec<u64> =
            one_pages.iter().copied().filter(|pfn| (sub.start_pfn_64..sub.end_pfn_64).contains(pfn)).collect();
        assert_eq!(described(&mut r), own, "{}", p.display());
        assert_eq!(r.descriptor_count(), own.len() as u64);
        shares.push(own.len());
        next = sub.end_pfn_64;
    }
    assert_eq!(next, MAX_PFN, "the parts cover every PFN");
    // Balanced by pages: boundaries on 64-page multiples, each within 32 pages of an even cut.
    let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
    assert!(hi - lo <= 129, "shares {shares:?}");

    // Every page of the single file is in exactly one part, with the same contents; alone,
    // a part reads the others' pages as missing.
    let whole = contents(&mut one);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &d.parts {
        let mut r = open(p);
        let range = r.split_range().unwrap();
        for (pfn, (st, data)) in contents(&mut r) {
            let (want_st, want) = &whole[&pfn];
            if range.contains(&pfn) {
                assert_eq!((st, &data), (*want_st, want), "{}: pfn {pfn:#x}", p.display());
                if st.is_present() {
                    *seen.entry(pfn).or_default() += 1;
                }
            } else if want_st.is_present() {
                assert_eq!(st, PageState::Lost, "{}: pfn {pfn:#x} is in another part", p.display());
            }
        }
    }
    let present: Vec<u64> = whole.iter().filter(|(_, (st, _))| st.is_present()).map(|(&p, _)| p).collect();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), present);
    assert!(seen.values().all(|&n| n == 1));
    // Read together (in any order), the parts are the single file.
    let mut shuffled = d.parts.clone();
    shuffled.rotate_left(1);
    assert!(contents(&mut set(&shuffled)) == whole, "the set read as one differs from the single file");
}

#[test]
fn reassembling_gives_back_the_single_file_dump() {
    for (level, codec) in [("1", "-l"), ("31", "-c"), ("0", "-z")] {
        let d = split_and_single(level, codec);
        let out = d.dir.join("joined");
        // Parts in any order.
        let (a, b, c) = (s(&d.parts[0]), s(&d.parts[1]), s(&d.parts[2]));
        ok(&["dump", "--reassemble", c, a, b, s(&out)]);
        let mut joined = open(&out);
        assert_eq!(joined.sub_header().split, 0);
        assert_eq!(joined.split_range(), None);
        assert!(contents(&mut joined) == contents(&mut open(&d.one)), "-d {level} {codec}: pages differ");
        // Same pages in the same order with the same header: the very same file.
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&d.one).unwrap(), "-d {level} {codec}: bytes differ");
        // An existing OUT needs -f.
        refused(&["dump", "--reassemble", a, b, c, s(&out)], &["exists", "-f"]);
        ok(&["dump", "-f", "--reassemble", a, b, c, s(&out)]);
        // The set without --reassemble: what kdump info and dmesg read.
        let info = ok(&["info", "--json", a, b, c]);
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["format"]["split"]["files"], 3, "{v}");
        assert_eq!(v["kernel"]["release"], RELEASE, "{v}");
        let lone: serde_json::Value = serde_json::from_slice(&ok(&["info", "--json", b]).stdout).unwrap();
        let warned = lone["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("--reassemble"));
        assert!(warned, "a lone part says to give every part or --reassemble: {lone}");
    }
}

#[test]
fn sets_that_are_not_whole_are_refused_with_the_cause() {
    let d = split_and_single("1", "-l");
    let (a, b, c) = (s(&d.parts[0]), s(&d.parts[1]), s(&d.parts[2]));
    let out = d.dir.join("out");
    let o = s(&out);
    // A missing middle part.
    refused(&["dump", "--reassemble", a, c, o], &["no part holds PFNs", "missing", a, c]);
    // A missing last part.
    refused(&["dump", "--reassemble", a, b, o], &["no part holds PFNs", "missing"]);
    // A part given twice.
    refused(&["dump", "--reassemble", a, b, b, c, o], &["both hold", "once"]);
    // A single-file dump among the parts.
    refused(&["dump", "--reassemble", a, s(&d.one), c, o], &["not part of a split dump", s(&d.one)]);
    // Parts of another dump: another time, another level, another machine.
    let other = |name: &str, level: &str, epoch: &str, ram: &[(u64, u64)]| {
        let src = if ram == RAM { d.source.clone() } else { vmcore(&d.dir, &format!("{name}.vmcore"), ram) };
        let parts: Vec<PathBuf> = (1..=3).map(|i| d.dir.join(format!("{name}{i}"))).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_kdump"))
            .env("SOURCE_DATE_EPOCH", epoch)
            .args(["dump", "--split", "-l", "-d", level, s(&src)])
            .args(&parts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        parts
    };
    let later = other("later", "1", "1764550000", &RAM);
    refused(&["dump", "--reassemble", a, s(&later[1]), c, o], &["different dumps", "dump times"]);
    let level0 = other("level0", "0", EPOCH, &RAM);
    refused(&["dump", "--reassemble", a, s(&level0[1]), c, o], &["different dumps"]);
    let machine_b = other("b", "1", EPOCH, &RAM_B);
    refused(&["dump", "--reassemble", a, s(&machine_b[1]), c, o], &["different dumps", "page bitmaps"]);
    // The readers refuse such sets too, with the same cause.
    refused(&["info", a, s(&later[1]), c], &["different dumps"]);
    refused(&["dmesg", a, c], &["missing"]);
    assert!(!out.exists() && !d.dir.join("out.incomplete").exists(), "nothing written");

    // A set whose writing stopped early (-L: each file at most 300 KiB, about half a part):
    // no part gets its name, and the incomplete parts cannot be joined.
    let cut: Vec<PathBuf> = (1..=3).map(|i| d.dir.join(format!("cut{i}"))).collect();
    let mut args = vec!["dump", "--split", "-l", "-d", "1", "-L", "300K", s(&d.source)];
    args.extend(cut.iter().map(|p| s(p)));
    refused(&args, &["INCOMPLETE"]);
    assert!(cut.iter().all(|p| !p.exists()), "no part of an incomplete set gets its name");
    let partial: Vec<PathBuf> = cut.iter().map(|p| PathBuf::from(format!("{}.incomplete", p.display()))).collect();
    assert!(partial.iter().all(|p| p.exists()));
    let mut args = vec!["dump", "--reassemble"];
    args.extend(partial.iter().map(|p| s(p)));
    args.push(o);
    refused(&args, &["marked incomplete"]);
    // One incomplete part among complete ones (its header's status differs).
    refused(&["dump", "--reassemble", a, s(&partial[1]), c, o], &["incomplete"]);
}

#[test]
fn split_options_are_checked_before_anything_is_written() {
    let d = split_and_single("1", "-l");
    let src = s(&d.source);
    let x = d.dir.join("x");
    let y = d.dir.join("y");
    refused(&["dump", "--split", "-d", "1", src, s(&x)], &["at least two"]);
    refused(&["dump", "--split", "-F", src, s(&x), s(&y)], &["-F"]);
    refused(&["dump", "--split", "-E", src, s(&x), s(&y)], &["-E"]);
    refused(&["dump", "--split", "--splitblock-size", "3", src, s(&x), s(&y)], &["multiple of the page size"]);
    refused(&["dump", "--split", src, s(&x), s(&x)], &["twice"]);
    refused(&["dump", "--split", src, s(&x), s(&d.one)], &["exists", "-f"]);
    refused(&["dump", "--reassemble", "-d", "31", s(&d.parts[0]), s(&d.parts[1]), s(&x)], &["-d"]);
    assert!(!x.exists() && !y.exists() && !d.dir.join("x.incomplete").exists());
    // Boundaries fall on multiples of 64 pages (crash reads a part's bitmap in 64-bit words
    // from its first PFN); with --splitblock-size, on multiples of that too (64 KiB = 16 pages).
    for p in &d.parts {
        let r = open(p).split_range().unwrap();
        assert!(r.start.is_multiple_of(64) && (r.end.is_multiple_of(64) || r.end == MAX_PFN), "{}: {r:?}", p.display());
    }
    let parts: Vec<PathBuf> = (1..=4).map(|i| d.dir.join(format!("b{i}"))).collect();
    let mut args = vec!["dump", "--split", "-l", "-d", "1", "--splitblock-size", "64", src];
    args.extend(parts.iter().map(|p| s(p)));
    ok(&args);
    for p in &parts {
        let r = open(p).split_range().unwrap();
        assert!(r.start.is_multiple_of(16) && (r.end.is_multiple_of(16) || r.end == MAX_PFN), "{}: {r:?}", p.display());
    }
}

fn makedumpfile() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/sbin"]) {
        let p = Path::new(dir).join("makedumpfile");
        if p.is_file() {
            return p;
        }
    }
    panic!("makedumpfile is not installed; install it (Debian: apt-get install -y makedumpfile) to run this test");
}

fn run_makedumpfile(args: &[&str]) {
    let out = Command::new(makedumpfile()).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "makedumpfile {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// makedumpfile --reassemble joins our parts into a file with the single-file dump's pages.
#[test]
fn makedumpfile_reassembles_our_split_set_into_our_single_file_dump() {
    for (level, codec) in [("1", "-l"), ("1", "-c"), ("0", "-l")] {
        let d = split_and_single(level, codec);
        let theirs = d.dir.join("joined-by-makedumpfile");
        let mut args = vec!["--reassemble"];
        args.extend(d.parts.iter().map(|p| s(p)));
        args.push(s(&theirs));
        run_makedumpfile(&args);
        let (mut t, mut one) = (open(&theirs), open(&d.one));
        assert_eq!(described(&mut t), described(&mut one), "-d {level} {codec}: page sets differ");
        assert!(contents(&mut t) == contents(&mut one), "-d {level} {codec}: page contents differ");
        // Zero pages stay shared: makedumpfile found our zero page where it looks for it.
        if level == "1" {
            let (tl, ol) = (std::fs::metadata(&theirs).unwrap().len(), std::fs::metadata(&d.one).unwrap().len());
            assert!(tl <= ol + PS as u64, "makedumpfile's join is {tl} bytes, ours {ol}: zero pages were copied");
        }
    }
}

/// Our --reassemble joins the parts makedumpfile --split wrote from the same ELF vmcore, and
/// our readers read them as one dump, the same as makedumpfile's single-file dump.
#[test]
fn we_reassemble_and_read_a_split_set_written_by_makedumpfile() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let source = vmcore(dir, "vmcore", &RAM);
    let theirs_one = dir.join("mdf-one");
    run_makedumpfile(&["-l", "-d", "1", s(&source), s(&theirs_one)]);
    // makedumpfile's default split block is 1 GiB, all of this machine: 64 KiB blocks make
    // it cut the 16 MiB machine into three parts with pages.
    let parts: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("m{i}"))).collect();
    let mut args = vec!["--split", "-l", "-d", "1", "--splitblock-size", "64", s(&source)];
    args.extend(parts.iter().map(|p| s(p)));
    run_makedumpfile(&args);
    for p in &parts {
        let mut r = open(p);
        assert!(r.split_range().is_some_and(|r| !r.is_empty()), "{}: {:?}", p.display(), r.split_range());
        assert!(r.descriptor_count() > 0 && !described(&mut r).is_empty());
    }
    let want = contents(&mut open(&theirs_one));
    assert!(contents(&mut set(&parts)) == want, "makedumpfile's parts read as one differ from its single file");
    let ours = dir.join("joined-by-kdump");
    ok(&["dump", "--reassemble", s(&parts[2]), s(&parts[0]), s(&parts[1]), s(&ours)]);
    let mut joined = open(&ours);
    assert_eq!(described(&mut joined), described(&mut open(&theirs_one)));
    assert!(contents(&mut joined) == want, "our join of makedumpfile's parts differs from its single file");
    // And makedumpfile's own join agrees.
    let theirs_joined = dir.join("joined-by-makedumpfile");
    let mut args = vec!["--reassemble"];
    args.extend(parts.iter().map(|p| s(p)));
    args.push(s(&theirs_joined));
    run_makedumpfile(&args);
    assert!(contents(&mut open(&theirs_joined)) == want);
    let v: serde_json::Value =
        serde_json::from_slice(&ok(&["info", "--json", s(&parts[0]), s(&parts[1]), s(&parts[2])]).stdout).unwrap();
    assert_eq!(v["kernel"]["release"], RELEASE, "{v}");
}
