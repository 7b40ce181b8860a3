//! ELF output: pages read back identically, long dropped runs split
//! segments, and a full disk leaves an honest, incomplete file.

use std::io::{self, Cursor};

use kdump_dumpfile::elf::write_elf64_vmcore;
use kdump_dumpfile::{ElfVmcore, PageState, PhysMem, SeekSink, WriteAt};
use kdump_save::elf::{ELF_FLAG_INCOMPLETE, ElfSegment, save_elf};

const PAGE: usize = 4096;

/// 1024 pages at 1 MiB: data, then 300 zero pages, data, 10 zero pages, data, zero tail.
fn source() -> ElfVmcore<Cursor<Vec<u8>>> {
    let kind = |i: usize| -> u8 {
        match i {
            100..400 | 500..510 | 1000.. => 0,
            _ => (i % 251) as u8 + 1,
        }
    };
    let ram: Vec<u8> = (0..1024).flat_map(|i| vec![kind(i); PAGE]).collect();
    let notes = b"\x0b\0\0\0\x0f\0\0\0\0\0\0\0VMCOREINFO\0\0OSRELEASE=6.1\n\0".to_vec();
    let mut file = Vec::new();
    write_elf64_vmcore(&mut file, 62, &notes, &[(0x10_0000, ram.len() as u64, &ram)]).unwrap();
    ElfVmcore::open(Cursor::new(file)).unwrap()
}

fn segments() -> Vec<ElfSegment> {
    vec![ElfSegment { paddr: 0x10_0000, vaddr: 0xffff_8880_0010_0000, len: 1024 * PAGE as u64 }]
}

#[test]
fn pages_read_back_and_long_zero_runs_split_segments() {
    let mut src = source();
    let mut sink = SeekSink::new(Cursor::new(Vec::new()));
    let report = save_elf(&mut src, &mut sink, &segments(), &[], true, |_| true).unwrap();
    assert_eq!(report.incomplete_reason, None);
    assert_eq!(report.segments, 2, "the 300-page zero run splits; the 10-page one does not");
    assert_eq!(report.pages_dropped, 300 + 24, "the long run and the zero tail");
    let out = ElfVmcore::open(Cursor::new(sink.into_inner().into_inner())).unwrap();
    assert_eq!(out.e_flags() & ELF_FLAG_INCOMPLETE, 0);
    let segs = out.segments().to_vec();
    assert_eq!(segs[0].vaddr, 0xffff_8880_0010_0000);
    assert_eq!(segs[1].memsz - segs[1].filesz, 24 * PAGE as u64, "the zero tail is memsz beyond filesz");
    let mut out = out;
    let (mut a, mut b) = (vec![0u8; PAGE], vec![0u8; PAGE]);
    for pfn in 0x100..0x100 + 1024 {
        src.read_page(pfn, &mut a).unwrap();
        let state = out.read_page(pfn, &mut b).unwrap();
        assert!(a == b, "pfn {pfn:#x} differs ({state:?})");
    }
    assert_eq!(out.vmcoreinfo(), src.vmcoreinfo());
}

struct FullDisk {
    inner: SeekSink<Cursor<Vec<u8>>>,
    limit: u64,
}

impl WriteAt for FullDisk {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset + data.len() as u64 > self.limit {
            return Err(io::Error::from_raw_os_error(28));
        }
        self.inner.write_at(offset, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_full_disk_marks_the_file_incomplete_and_describes_only_written_data() {
    let mut src = source();
    let mut sink = FullDisk { inner: SeekSink::new(Cursor::new(Vec::new())), limit: 2 << 20 };
    let report = save_elf(&mut src, &mut sink, &segments(), &[], true, |_| true).unwrap();
    assert!(report.incomplete_reason.is_some());
    let mut out = ElfVmcore::open(Cursor::new(sink.inner.into_inner().into_inner())).unwrap();
    assert_eq!(out.e_flags() & ELF_FLAG_INCOMPLETE, ELF_FLAG_INCOMPLETE);
    let (mut a, mut b) = (vec![0u8; PAGE], vec![0u8; PAGE]);
    let mut present = 0;
    for pfn in 0x100..0x100 + 1024 {
        if out.read_page(pfn, &mut b).unwrap() == PageState::Present {
            src.read_page(pfn, &mut a).unwrap();
            assert!(a == b, "pfn {pfn:#x}");
            present += 1;
        }
    }
    assert!(present > 0 && present < 700, "{present} pages present");
    assert_eq!(report.pages_written, present);
}

/// The stored bytes at kernel virtual address `vaddr`, found by `p_vaddr` as gdb finds them.
fn read_virtual(file: &[u8], vaddr: u64, len: usize) -> Option<Vec<u8>> {
    let out = ElfVmcore::open(Cursor::new(file.to_vec())).unwrap();
    let s = out.segments().iter().find(|s| s.vaddr <= vaddr && vaddr + len as u64 <= s.vaddr + s.filesz)?;
    let at = (s.offset + vaddr - s.vaddr) as usize;
    Some(file[at..at + len].to_vec())
}

#[test]
fn virtual_aliases_point_at_the_stored_pages_and_skip_what_is_not_stored() {
    let vmalloc = 0xffff_c900_0000_0000u64;
    let aliases = [
        // Three pages of data.
        ElfSegment { vaddr: vmalloc, paddr: 0x10_0000 + 10 * PAGE as u64, len: 3 * PAGE as u64 },
        // Pages 90..420: the 300-page zero run in the middle is not stored, so two pieces.
        ElfSegment { vaddr: vmalloc + 0x10_0000, paddr: 0x10_0000 + 90 * PAGE as u64, len: 330 * PAGE as u64 },
        // Memory that is not in the dump at all.
        ElfSegment { vaddr: vmalloc + 0x100_0000, paddr: 0x5000_0000, len: PAGE as u64 },
    ];
    let mut src = source();
    let mut sink = SeekSink::new(Cursor::new(Vec::new()));
    let report = save_elf(&mut src, &mut sink, &segments(), &aliases, true, |_| true).unwrap();
    assert_eq!((report.segments, report.virtual_segments, report.virtual_left_out), (5, 3, 0));
    let file = sink.into_inner().into_inner();
    // Physical first and last (crash and makedumpfile read those two), aliases between.
    let order: Vec<u64> =
        ElfVmcore::open(Cursor::new(file.clone())).unwrap().segments().iter().map(|s| s.vaddr).collect();
    assert_eq!(order[0], 0xffff_8880_0010_0000);
    assert!(order[1..4].iter().all(|&v| v >= vmalloc), "{order:x?}");
    assert!(order[4] < vmalloc, "the last PT_LOAD is the direct map's: {order:x?}");
    let mut page = vec![0u8; PAGE];
    for (vaddr, pfn) in [(vmalloc, 0x10a), (vmalloc + 2 * PAGE as u64, 0x10c), (vmalloc + 0x10_0000, 0x100 + 90)] {
        src.read_page(pfn, &mut page).unwrap();
        assert_eq!(read_virtual(&file, vaddr, PAGE).as_deref(), Some(&page[..]), "{vaddr:#x}");
    }
    let after_gap = vmalloc + 0x10_0000 + (400 - 90) * PAGE as u64;
    src.read_page(0x100 + 400, &mut page).unwrap();
    assert_eq!(read_virtual(&file, after_gap, PAGE).as_deref(), Some(&page[..]));
    assert_eq!(read_virtual(&file, after_gap - PAGE as u64, 8), None, "a dropped page has no virtual address");
    assert_eq!(read_virtual(&file, vmalloc + 0x100_0000, 8), None);
    // Physical reads are as before: the aliases repeat no data.
    let mut out = ElfVmcore::open(Cursor::new(file.clone())).unwrap();
    for pfn in [0x100, 0x10a, 0x100 + 400] {
        let mut a = vec![0u8; PAGE];
        src.read_page(pfn, &mut page).unwrap();
        out.read_page(pfn, &mut a).unwrap();
        assert!(a == page);
    }
    let without = {
        let mut sink = SeekSink::new(Cursor::new(Vec::new()));
        save_elf(&mut source(), &mut sink, &segments(), &[], true, |_| true).unwrap();
        sink.into_inner().into_inner().len()
    };
    // Only headers are added: the aliases' and room for splitting them.
    assert!(file.len() <= without + (256 << 10), "{} bytes against {without}", file.len());
}

#[test]
fn more_than_65535_program_headers_use_extended_numbering() {
    // 70 000 one-page aliases (the first 90 pages, many times over): 70 000 more PT_LOADs.
    let vmalloc = 0xffff_c900_0000_0000u64;
    let aliases: Vec<ElfSegment> = (0..70_000u64)
        .map(|i| ElfSegment {
            vaddr: vmalloc + i * 2 * PAGE as u64,
            paddr: 0x10_0000 + (i % 90) * PAGE as u64,
            len: PAGE as u64,
        })
        .collect();
    let mut src = source();
    let mut sink = SeekSink::new(Cursor::new(Vec::new()));
    let report = save_elf(&mut src, &mut sink, &segments(), &aliases, true, |_| true).unwrap();
    assert_eq!(report.virtual_segments, 70_000);
    let file = sink.into_inner().into_inner();
    assert_eq!(u16::from_le_bytes([file[56], file[57]]), 0xffff, "e_phnum is PN_XNUM");
    let out = ElfVmcore::open(Cursor::new(file.clone())).unwrap();
    assert_eq!(out.segments().len(), 2 + 70_000);
    let last = vmalloc + 69_999 * 2 * PAGE as u64;
    src.read_page(0x100 + 69_999 % 90, &mut vec![0u8; PAGE]).unwrap();
    let mut page = vec![0u8; PAGE];
    src.read_page(0x100 + 69_999 % 90, &mut page).unwrap();
    assert_eq!(read_virtual(&file, last, PAGE).as_deref(), Some(&page[..]));
    // gdb reads the extended count too (BFD takes it from section header 0).
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core");
    std::fs::write(&core, &file).unwrap();
    let out = std::process::Command::new("gdb")
        .args(["-nx", "-batch", "-c"])
        .arg(&core)
        .args(["-ex", &format!("x/8xb {last:#x}")])
        .output()
        .expect("gdb runs (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let want: Vec<String> = page[..8].iter().map(|b| format!("{b:#04x}")).collect();
    let got: Vec<&str> = text.split_once(':').map(|(_, b)| b.split_whitespace().collect()).unwrap_or_default();
    assert_eq!(got, want, "gdb: {text} {}", String::from_utf8_lossy(&out.stderr));
}
