//! `kdump dump -d` on a synthetic vmcore whose struct pages sit in the kernel
//! image mapping: the filter drops exactly the classified pages, records the
//! level it applied, and names the VMCOREINFO keys it lacks instead of
//! pretending to filter.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};

use kdump_dumpfile::elf::{EM_X86_64, write_elf64_vmcore};
use kdump_dumpfile::notes::push_note;
use kdump_dumpfile::{KdumpReader, PhysMem};

const PAGES: u64 = 64;
const K: u64 = 0xffff_ffff_8000_0000;

const INFO: &str = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff80000000\nNUMBER(phys_base)=0\n\
SYMBOL(mem_section)=ffffffff80001000\nLENGTH(mem_section)=8388608\nSIZE(mem_section)=16\n\
OFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=15\nNUMBER(MAX_PHYSMEM_BITS)=46\n\
SIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page.mapping)=24\nOFFSET(page._mapcount)=48\nOFFSET(page.private)=40\n\
OFFSET(page.compound_head)=8\nOFFSET(page.compound_dtor)=16\nOFFSET(page.compound_order)=17\nNUMBER(PG_lru)=4\n\
NUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\nNUMBER(PG_swapbacked)=19\nNUMBER(PG_slab)=9\n\
NUMBER(PG_head_mask)=65536\nNUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\n\
NUMBER(HUGETLB_PAGE_DTOR)=2\nLENGTH(zone.free_area)=11\n";

/// 64 pages of RAM: mem_section roots at 0x1000, sections at 0x2000, struct pages at 0x8000
/// (all reached through the kernel-image mapping). PFN 20 is page cache, 21 anonymous,
/// 24..28 a free block of order 2, 33 cache with PG_private; every other page is kernel data.
fn vmcore(dir: &Path, info: &str) -> std::path::PathBuf {
    let mut mem = vec![0x5au8; (PAGES * 4096) as usize];
    mem[0x1000..0x5000].fill(0);
    mem[0x8000..0x9000].fill(0);
    mem[0x1000..0x1008].copy_from_slice(&(K + 0x2000).to_le_bytes());
    for nr in 0..PAGES / 8 {
        let at = 0x2000 + nr as usize * 16;
        mem[at..at + 8].copy_from_slice(&((K + 0x8000) | 5).to_le_bytes());
    }
    let mut page = |pfn: usize, flags: u64, mapping: u64, mapcount: i32, private: u64| {
        let at = 0x8000 + pfn * 64;
        mem[at..at + 8].copy_from_slice(&flags.to_le_bytes());
        mem[at + 24..at + 32].copy_from_slice(&mapping.to_le_bytes());
        mem[at + 40..at + 48].copy_from_slice(&private.to_le_bytes());
        mem[at + 48..at + 52].copy_from_slice(&mapcount.to_le_bytes());
    };
    for pfn in 0..PAGES as usize {
        page(pfn, 0, 0, -1, 0);
    }
    page(20, 1 << 4, 0xffff_8880_0000_1000, -1, 0);
    page(21, 1 << 4, 0xffff_8880_0000_2001, -1, 0);
    page(24, 0, 0, -129, 2);
    page(33, 1 << 4 | 1 << 13, 0xffff_8880_0000_1000, -1, 0);
    let mut notes = Vec::new();
    // An empty `info`: no VMCOREINFO note at all (as in QEMU's dumps).
    if !info.is_empty() {
        push_note(&mut notes, b"VMCOREINFO", 0, info.as_bytes());
    }
    let mut out = Vec::new();
    write_elf64_vmcore(&mut out, EM_X86_64, &notes, &[(0, PAGES * 4096, &mem)]).unwrap();
    let path = dir.join("vmcore");
    std::fs::write(&path, out).unwrap();
    path
}

fn kdump(args: &[&str], files: &[&Path]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kdump"))
        .env("SOURCE_DATE_EPOCH", "1764547200")
        .args(args)
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "kdump {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn described(path: &Path) -> (Vec<u64>, i32) {
    let mut r = KdumpReader::open(File::open(path).unwrap()).unwrap();
    let pfns = (0..r.max_pfn()).filter(|&p| r.page_desc(p).unwrap().is_some()).collect();
    (pfns, r.sub_header().dump_level)
}

fn all_but(excluded: &[u64]) -> Vec<u64> {
    (0..PAGES).filter(|p| !excluded.contains(p)).collect()
}

#[test]
fn each_level_drops_its_classes_and_records_itself() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore(dir.path(), INFO);
    for (level, excluded) in [
        (0u32, vec![]),
        (2, vec![20]),
        (4, vec![20, 33]),
        (8, vec![21]),
        (16, vec![24, 25, 26, 27]),
        (31, vec![20, 21, 24, 25, 26, 27, 33]),
    ] {
        let dest = dir.path().join(format!("d{level}"));
        let out = kdump(&["dump", "-z", "-d", &level.to_string()], &[&src, &dest]);
        assert_eq!(described(&dest), (all_but(&excluded), level as i32), "level {level}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("are kept: VMCOREINFO has no") || level == 0, "{stderr}");
    }
    // -F and -E use the same filter.
    let flat = kdump(&["dump", "-F", "-d", "31", "--message-level", "0"], &[&src]).stdout;
    let flat_path = dir.path().join("d31.flat");
    std::fs::write(&flat_path, flat).unwrap();
    let mut r = kdump_dumpfile::open_dump(File::open(&flat_path).unwrap()).unwrap();
    let mut buf = vec![0u8; 4096];
    let kept: Vec<u64> = (0..PAGES).filter(|&p| r.read_page(p, &mut buf).unwrap().is_present()).collect();
    assert_eq!(kept, all_but(&[20, 21, 24, 25, 26, 27, 33]));
    let elf = dir.path().join("d31.elf");
    kdump(&["dump", "-E", "-d", "30"], &[&src, &elf]);
    let mut e = kdump_dumpfile::ElfVmcore::open(File::open(&elf).unwrap()).unwrap();
    // ELF writes short excluded runs with their contents (as makedumpfile does): the
    // file still describes every page, and the excluded ones are there only as filler.
    assert!((0..PAGES).all(|p| e.read_page(p, &mut buf).is_ok()));
}

#[test]
fn a_missing_key_is_named_its_class_kept_and_the_header_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let info = INFO.replace("NUMBER(PG_lru)=4\n", "");
    let src = vmcore(dir.path(), &info);
    let dest = dir.path().join("d31");
    let out = kdump(&["dump", "-z", "-d", "31"], &[&src, &dest]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("page-cache pages are kept: VMCOREINFO has no NUMBER(PG_lru)"), "{stderr}");
    assert!(stderr.contains("dump level 31 is applied as 25"), "{stderr}");
    // Cache pages (20, 33) kept; anonymous (21: mapping & 1) and free pages still dropped.
    assert_eq!(described(&dest), (all_but(&[21, 24, 25, 26, 27]), 25));

    let info = INFO.replace("SYMBOL(mem_section)=ffffffff80001000\n", "");
    let src = vmcore(dir.path(), &info);
    let dest = dir.path().join("d31-no-sections");
    let out = kdump(&["dump", "-z", "-d", "31"], &[&src, &dest]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SYMBOL(mem_section)") && stderr.contains("effective level 1"), "{stderr}");
    assert_eq!(described(&dest), (all_but(&[]), 1));
}

#[test]
fn mem_usage_counts_pages_per_class_and_sizes_every_level() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore(dir.path(), INFO);
    let out = String::from_utf8(kdump(&["dump", "--mem-usage"], &[&src]).stdout).unwrap();
    let pages = |row: &str| -> u64 {
        let line = out.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("{row}:\n{out}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(pages("NON_PRI_CACHE"), 1, "{out}");
    assert_eq!(pages("PRI_CACHE"), 1);
    assert_eq!(pages("USER"), 1);
    assert_eq!(pages("FREE"), 4);
    // PFNs 3 and 4 are all zero.
    assert_eq!(pages("ZERO"), 2);
    assert_eq!(pages("KERN_DATA"), 64 - 7 - 2);
    let level = |l: u32| -> u64 {
        let line = out.lines().find(|x| x.split_whitespace().next() == Some(&l.to_string())).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(level(0), 64);
    assert_eq!(level(1), 62);
    assert_eq!(level(16), 60);
    assert_eq!(level(31), 64 - 7 - 2);
}

/// 192 pages, struct pages at 0x8000..0xb000 (PFNs 8, 9 and 10, 64 struct pages each); PFNs
/// 64..128 are one free block of order 6, so the vmemmap page at PFN 9 describes only free pages.
fn vmcore_with_a_free_block(dir: &Path) -> std::path::PathBuf {
    const N: u64 = 192;
    let mut mem = vec![0x5au8; (N * 4096) as usize];
    mem[0x1000..0x3000].fill(0);
    mem[0x8000..0xb000].fill(0);
    mem[0x1000..0x1008].copy_from_slice(&(K + 0x2000).to_le_bytes());
    for nr in 0..N / 8 {
        let at = 0x2000 + nr as usize * 16;
        mem[at..at + 8].copy_from_slice(&((K + 0x8000) | 5).to_le_bytes());
    }
    for pfn in 0..N as usize {
        let at = 0x8000 + pfn * 64;
        mem[at + 48..at + 52].copy_from_slice(&(-1i32).to_le_bytes());
    }
    let head = 0x8000 + 64 * 64;
    mem[head + 48..head + 52].copy_from_slice(&(-129i32).to_le_bytes());
    mem[head + 40..head + 48].copy_from_slice(&6u64.to_le_bytes());
    let mut notes = Vec::new();
    push_note(&mut notes, b"VMCOREINFO", 0, INFO.as_bytes());
    let mut out = Vec::new();
    write_elf64_vmcore(&mut out, EM_X86_64, &notes, &[(0, N * 4096, &mem)]).unwrap();
    let path = dir.join("vmcore-free-block");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn exclude_vmemmap_leaves_out_the_struct_pages_of_only_left_out_pages_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore_with_a_free_block(dir.path());
    let free: Vec<u64> = (64..128).collect();
    let kept = |extra: &[u64]| -> Vec<u64> { (0..192).filter(|p| !free.contains(p) && !extra.contains(p)).collect() };
    let status = |path: &Path| KdumpReader::open(File::open(path).unwrap()).unwrap().header().status;

    let plain = dir.path().join("d16");
    kdump(&["dump", "-l", "-d", "16"], &[&src, &plain]);
    let pfns = |path: &Path| {
        let mut r = KdumpReader::open(File::open(path).unwrap()).unwrap();
        (0..r.max_pfn()).filter(|&p| r.page_desc(p).unwrap().is_some()).collect::<Vec<u64>>()
    };
    assert_eq!(pfns(&plain), kept(&[]));
    assert_eq!(status(&plain) & kdump_dumpfile::codec::FLAG_EXCLUDED_VMEMMAP, 0);

    let e = dir.path().join("d16e");
    let out = kdump(&["dump", "-l", "-e", "-d", "16"], &[&src, &e]);
    // PFN 9 holds the struct pages of PFNs 64..128, all free; PFNs 8 and 10 describe kept pages.
    assert_eq!(pfns(&e), kept(&[9]));
    assert_ne!(status(&e) & kdump_dumpfile::codec::FLAG_EXCLUDED_VMEMMAP, 0, "the header says -e");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("-e left out 1 pages of struct pages"), "{stderr}");

    // At a level that leaves nothing out by struct page, -e says it has nothing to do.
    let out = kdump(&["dump", "-l", "-e", "-d", "1"], &[&src, &dir.path().join("d1e")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-e has no effect here"));
}

/// `core_collector` lines from distributions' defaults and documentation, run through the
/// `makedumpfile` name (argv[0]) with `--check-params`: each parses and is checked, none is
/// refused. Then `--dry-run` does the whole work, writes nothing and says what it left out.
#[test]
fn makedumpfile_command_lines_of_distributions_parse_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore(dir.path(), INFO);
    let makedumpfile = dir.path().join("makedumpfile");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kdump"), &makedumpfile).unwrap();
    let dest = dir.path().join("vmcore.out");
    for line in [
        "-c -d 31",                      // Debian kdump-tools' MAKEDUMP_ARGS
        "-l --message-level 7 -d 31",    // kdump-utils' default core_collector
        "-l --message-level 1 -d 31",    // its documentation
        "-c --message-level 1 -d 31",    // Red Hat documentation
        "-d 31 -z --num-threads 2",      // makedumpfile(8)
        "--cyclic-buffer 1024 -l -d 31", // older kdump.conf examples
        "--non-cyclic -l -d 31",
        "--work-dir /var/tmp -l -d 31",
        "--non-mmap -l -d 31",
        "-D -b 8 -l -d 31",
        "--splitblock-size 1048576 -l -d 31",
        "--show-stats -E -d 31",
    ] {
        let out = Command::new(&makedumpfile)
            .args(line.split_whitespace())
            .arg("--check-params")
            .arg(&src)
            .arg(&dest)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "makedumpfile {line}: {err}");
        assert!(!dest.exists(), "--check-params wrote {}", dest.display());
    }
    // The flattened form for ssh takes SOURCE only.
    let out = Command::new(&makedumpfile).args(["-F", "-l", "-d", "31", "--check-params"]).arg(&src).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A bad line is still refused.
    let out = Command::new(&makedumpfile).args(["-d", "32", "--check-params"]).arg(&src).arg(&dest).output().unwrap();
    assert!(!out.status.success());

    let out = Command::new(&makedumpfile)
        .args(["-l", "-d", "31", "--dry-run", "--cyclic-buffer", "4096"])
        .arg(&src)
        .arg(&dest)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!dest.exists() && !dir.path().join("vmcore.out.incomplete").exists(), "--dry-run wrote a file");
    assert!(err.contains("--cyclic-buffer/--non-cyclic have no effect"), "{err}");
    assert!(err.contains("left out") && err.contains("nowhere (--dry-run)"), "the work was done: {err}");
}

/// `makedumpfile -i VMCOREINFO`: a dump without a note is filtered with the VMCOREINFO of a
/// file, and the output carries it; without `-i` the same dump cannot be filtered and says why.
#[test]
fn a_vmcoreinfo_file_stands_in_for_a_missing_note() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore(dir.path(), "");
    let info_file = dir.path().join("vmcoreinfo");
    std::fs::write(&info_file, INFO).unwrap();
    let dest = dir.path().join("with-i");
    kdump(&["dump", "-z", "-d", "31", "-i", info_file.to_str().unwrap()], &[&src, &dest]);
    assert_eq!(described(&dest), (all_but(&[20, 21, 24, 25, 26, 27, 33]), 31));
    let r = KdumpReader::open(File::open(&dest).unwrap()).unwrap();
    assert_eq!(r.vmcoreinfo(), Some(INFO.as_bytes()), "the output carries the given VMCOREINFO");

    let without = dir.path().join("without-i");
    let out = kdump(&["dump", "-z", "-d", "31"], &[&src, &without]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(described(&without).1, 1, "nothing but zero pages can be left out: {stderr}");
    assert!(stderr.contains("no VMCOREINFO"), "{stderr}");
}

/// The bytes `kdump dump` writes for this vmcore, per codec and format, as recorded before the
/// save API moved out of the binary: a refactor must not change a single byte.
#[test]
fn dumps_are_byte_identical_to_the_recorded_ones() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore(dir.path(), INFO);
    let cases: [(&str, &[&str]); 12] = [
        ("d0-none", &["-d", "0"]),
        ("d31-none", &["-d", "31"]),
        ("d31-zlib", &["-c", "-d", "31"]),
        ("d31-lzo", &["-l", "-d", "31"]),
        ("d31-snappy", &["-p", "-d", "31"]),
        ("d31-zstd", &["-z", "-d", "31"]),
        ("d0-zstd", &["-z", "-d", "0"]),
        ("d31-flat-lzo", &["-F", "-l", "-d", "31"]),
        ("d31-flat-zstd", &["-F", "-z", "-d", "31"]),
        ("d31-elf", &["-E", "-d", "31"]),
        ("d0-elf", &["-E", "-d", "0"]),
        ("d0-flat-none", &["-F", "-d", "0"]),
    ];
    let mut got = String::new();
    for (name, args) in cases {
        let bytes = if args.contains(&"-F") {
            let mut a = vec!["dump", "--message-level", "0"];
            a.extend_from_slice(args);
            kdump(&a, &[&src]).stdout
        } else {
            let dest = dir.path().join(name);
            let mut a = vec!["dump"];
            a.extend_from_slice(args);
            kdump(&a, &[&src, &dest]);
            std::fs::read(&dest).unwrap()
        };
        let hex: String = kdump_sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        got.push_str(&format!("{name} {hex}\n"));
    }
    let want = include_str!("golden/dumps.sha256");
    assert_eq!(got, want, "dump bytes changed; if on purpose, update tests/golden/dumps.sha256");
}
