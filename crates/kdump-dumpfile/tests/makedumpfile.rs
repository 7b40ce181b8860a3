//! Compatibility with the real makedumpfile (Debian package `makedumpfile`, which has zlib
//! and LZO). These tests FAIL when makedumpfile is not installed.
//!
//! makedumpfile refuses a dump whose VMCOREINFO it cannot use: with VMCOREINFO present it
//! reads the kernel's `init_uts_ns` through the kernel page tables (`SYMBOL(init_top_pgt)`),
//! so the synthetic machine below carries a 4-level page table that maps the kernel text
//! window with one 1 GiB page, and a `struct uts_namespace` at `SYMBOL(init_uts_ns)`; it
//! also insists on knowing the memory model, so the VMCOREINFO declares FLATMEM
//! (`SYMBOL(mem_map)` pointing at a non-zero pointer, `SIZE(page)`, three `OFFSET(page.*)`).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kdump_dumpfile::kdump::KdumpConfig;
use kdump_dumpfile::{
    Codec, FlatReader, FlatWriter, KdumpReader, KdumpWriter, PageState, PhysMem, SeekSink, rebuild_flattened,
};

const PS: usize = 4096;
const MAX_PFN: u64 = 0x4000;
const RAM: [(u64, u64); 2] = [(1, 0xa0), (0x100, 0x3ff0)];
const PGD_PFN: u64 = 0x2001;
const PUD_PFN: u64 = 0x2002;
const UTS_PFN: u64 = 0x2003;
const MEMMAP_PFN: u64 = 0x2004;
const RELEASE: &str = "5.10.0-kdumptest";

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

/// Contents of page `pfn` of the synthetic machine, or `None` when it is filtered out.
fn page(pfn: u64) -> Option<Vec<u8>> {
    let mut p = vec![0u8; PS];
    match pfn {
        PGD_PFN => p[511 * 8..512 * 8].copy_from_slice(&((PUD_PFN * PS as u64) | 0x63).to_le_bytes()),
        // PUD entry 510 (0xffffffff80000000): 1 GiB page at physical 0, present|rw|PSE.
        PUD_PFN => p[510 * 8..511 * 8].copy_from_slice(&0x83u64.to_le_bytes()),
        UTS_PFN => {
            for (i, s) in ["Linux", "lab", RELEASE, "#1 SMP", "x86_64", "(none)"].iter().enumerate() {
                p[4 + 65 * i..4 + 65 * i + s.len()].copy_from_slice(s.as_bytes());
            }
        }
        // FLATMEM `mem_map` pointer (never dereferenced at dump level 1).
        MEMMAP_PFN => p[..8].copy_from_slice(&0xffff_ea00_0000_0000u64.to_le_bytes()),
        _ if pfn.is_multiple_of(3) => return None,
        _ if pfn.is_multiple_of(11) => {}
        _ if pfn.is_multiple_of(17) => {
            let mut x = pfn | 1;
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
        _ => {
            for (i, b) in p.iter_mut().enumerate() {
                *b = ((i / 16) as u64 ^ pfn) as u8;
            }
        }
    }
    Some(p)
}

fn config(codec: Codec) -> KdumpConfig {
    let mut c = KdumpConfig::new(PS as u32, MAX_PFN, RAM.iter().map(|&(s, e)| s..e).collect(), codec);
    c.share_zero_pages = true;
    c.dump_level = 1;
    c.utsname.sysname = "Linux".into();
    c.utsname.release = RELEASE.into();
    c.utsname.machine = "x86_64".into();
    c.vmcoreinfo = Some(vmcoreinfo().into_bytes());
    c
}

fn write_ours<S: kdump_dumpfile::WriteAt>(sink: S, codec: Codec) -> S {
    write_ours_with(sink, config(codec))
}

fn write_ours_with<S: kdump_dumpfile::WriteAt>(sink: S, cfg: KdumpConfig) -> S {
    let mut w = KdumpWriter::new(sink, cfg).unwrap();
    for &(s, e) in &RAM {
        for pfn in s..e {
            if let Some(p) = page(pfn) {
                w.append_page(pfn, &p).unwrap();
            }
        }
    }
    w.finish().unwrap().0
}

/// Checks that `m` holds exactly the synthetic machine.
fn check<M: PhysMem>(m: &mut M, what: &str) {
    assert_eq!(m.page_size(), PS as u64, "{what}");
    let want: Vec<_> = RAM.iter().map(|&(s, e)| s..e).collect();
    assert_eq!(m.ram_ranges(), want.as_slice(), "{what}");
    let mut buf = vec![0u8; PS];
    for pfn in 0..MAX_PFN {
        let ram = RAM.iter().any(|&(s, e)| (s..e).contains(&pfn));
        let st = m.read_page(pfn, &mut buf).unwrap_or_else(|e| panic!("{what}: pfn {pfn:#x}: {e}"));
        match (ram, page(pfn)) {
            (false, _) => assert_eq!(st, PageState::NotRam, "{what}: pfn {pfn:#x}"),
            (true, None) => assert_eq!(st, PageState::Excluded, "{what}: pfn {pfn:#x}"),
            (true, Some(p)) => {
                assert_eq!(st, PageState::Present, "{what}: pfn {pfn:#x}");
                assert!(buf == p, "{what}: pfn {pfn:#x} contents differ");
            }
        }
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

fn run(args: &[&str], stdin: Option<&Path>, stdout: Option<&Path>) {
    let mut cmd = Command::new(makedumpfile());
    cmd.args(args);
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    if let Some(p) = stdout {
        cmd.stdout(Stdio::from(std::fs::File::create(p).unwrap()));
    }
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    assert!(
        out.status.success(),
        "makedumpfile {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn open_kdump(p: &Path) -> KdumpReader<std::fs::File> {
    KdumpReader::open(std::fs::File::open(p).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn compat(codec: Codec, mdf_codec_flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ours = d.join("ours.kdump");
    write_ours(SeekSink::new(std::fs::File::create(&ours).unwrap()), codec);
    check(&mut open_kdump(&ours), "ours");

    // 1. makedumpfile -F reads our file and writes a flattened stream; -R rebuilds it.
    let flat = d.join("mdf.flat");
    run(&["-F", "-d", "1", s(&ours)], None, Some(&flat));
    check(&mut KdumpReader::open(FlatReader::open(std::fs::File::open(&flat).unwrap()).unwrap()).unwrap(), "mdf -F");
    let rebuilt = d.join("mdf-R.kdump");
    run(&["-R", s(&rebuilt)], Some(&flat), None);
    check(&mut open_kdump(&rebuilt), "mdf -F | mdf -R");
    // Our -R produces the same bytes as makedumpfile's.
    let mut mine = Cursor::new(Vec::new());
    rebuild_flattened(std::fs::File::open(&flat).unwrap(), &mut mine).unwrap();
    assert!(mine.into_inner() == std::fs::read(&rebuilt).unwrap(), "our -R differs from makedumpfile -R");

    // 2. makedumpfile re-compresses our file with its own codec library; we read it.
    let theirs = d.join("theirs.kdump");
    run(&[mdf_codec_flag, "-d", "1", s(&ours), s(&theirs)], None, None);
    let mut r = open_kdump(&theirs);
    assert_eq!(r.header().status & 0x27, codec.flag(), "makedumpfile used another codec");
    check(&mut r, "mdf re-compressed");

    // 3. Our flattened stream, rebuilt by makedumpfile -R.
    let our_flat = d.join("ours.flat");
    write_ours(FlatWriter::new(std::fs::File::create(&our_flat).unwrap()).unwrap(), codec).finish().unwrap();
    let rebuilt2 = d.join("ours-R.kdump");
    run(&["-R", s(&rebuilt2)], Some(&our_flat), None);
    check(&mut open_kdump(&rebuilt2), "ours -F | mdf -R");
}

#[test]
fn makedumpfile_reads_our_zlib_dump() {
    compat(Codec::Zlib, "-c");
}

#[test]
fn makedumpfile_reads_our_lzo_dump() {
    compat(Codec::Lzo, "-l");
}

/// A dump whose page data starts at a 5 MiB multiple (`data_alignment`, as uploaded to S3 in
/// parts) is an ordinary kdump file to makedumpfile: it re-compresses and flattens it.
#[test]
fn makedumpfile_reads_our_dump_with_aligned_page_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ours = d.join("aligned.kdump");
    let mut cfg = config(Codec::Zlib);
    cfg.data_alignment = Some(5 << 20);
    write_ours_with(SeekSink::new(std::fs::File::create(&ours).unwrap()), cfg);
    assert!(std::fs::metadata(&ours).unwrap().len() > 5 << 20);
    check(&mut open_kdump(&ours), "aligned");
    let theirs = d.join("theirs.kdump");
    run(&["-l", "-d", "1", s(&ours), s(&theirs)], None, None);
    check(&mut open_kdump(&theirs), "aligned, re-compressed by makedumpfile");
    let flat = d.join("theirs.flat");
    run(&["-F", "-d", "1", s(&ours)], None, Some(&flat));
    check(
        &mut KdumpReader::open(FlatReader::open(std::fs::File::open(&flat).unwrap()).unwrap()).unwrap(),
        "aligned, mdf -F",
    );
}

/// Every RAM page of the synthetic machine as a full ELF vmcore would hold it.
fn elf_page(pfn: u64) -> Vec<u8> {
    page(pfn).unwrap_or_else(|| vec![0x33; PS])
}

/// makedumpfile reads our ELF vmcore (like /proc/vmcore) and writes kdump-compressed (zlib,
/// lzo) and ELF output; our readers read those back.
#[test]
fn makedumpfile_converts_our_elf_vmcore() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut notes = Vec::new();
    kdump_dumpfile::notes::push_note(&mut notes, b"CORE", 1, &[0; 336]);
    kdump_dumpfile::notes::push_note(&mut notes, b"VMCOREINFO", 0, vmcoreinfo().as_bytes());
    let segs: Vec<Vec<u8>> = RAM.iter().map(|&(s, e)| (s..e).flat_map(elf_page).collect()).collect();
    let seg_refs: Vec<(u64, u64, &[u8])> =
        RAM.iter().zip(&segs).map(|(&(s, e), b)| (s * PS as u64, (e - s) * PS as u64, b.as_slice())).collect();
    let elf = d.join("ours.elf");
    let mut f = std::fs::File::create(&elf).unwrap();
    kdump_dumpfile::elf::write_elf64_vmcore(&mut f, kdump_dumpfile::elf::EM_X86_64, &notes, &seg_refs).unwrap();
    drop(f);

    for (flag, codec) in [("-c", Codec::Zlib), ("-l", Codec::Lzo)] {
        let out = d.join(format!("theirs{flag}.kdump"));
        run(&[flag, "-d", "1", s(&elf), s(&out)], None, None);
        let mut r = open_kdump(&out);
        assert_eq!(r.header().status & 0x27, codec.flag());
        assert_eq!(r.vmcoreinfo().unwrap(), vmcoreinfo().as_bytes());
        let mut buf = vec![0u8; PS];
        for pfn in 0..MAX_PFN {
            let ram = RAM.iter().any(|&(s, e)| (s..e).contains(&pfn));
            let st = r.read_page(pfn, &mut buf).unwrap();
            if ram {
                assert_eq!(st, PageState::Present, "{flag}: pfn {pfn:#x}");
                assert!(buf == elf_page(pfn), "{flag}: pfn {pfn:#x} differs");
            } else {
                assert_ne!(st, PageState::Present, "{flag}: pfn {pfn:#x}");
            }
        }
    }

    let out = d.join("theirs.elf");
    run(&["-E", "-d", "1", s(&elf), s(&out)], None, None);
    let mut e = kdump_dumpfile::ElfVmcore::open(std::fs::File::open(&out).unwrap()).unwrap();
    let mut buf = vec![0u8; PS];
    for &(s, e_) in &RAM {
        for pfn in s..e_ {
            let st = e.read_page(pfn, &mut buf).unwrap();
            assert!(matches!(st, PageState::Present | PageState::ZeroFilled), "-E: pfn {pfn:#x}: {st:?}");
            assert!(buf == elf_page(pfn), "-E: pfn {pfn:#x} differs");
        }
    }
}
