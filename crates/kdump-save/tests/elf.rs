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
    let report = save_elf(&mut src, &mut sink, &segments(), true, |_| true).unwrap();
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
    let report = save_elf(&mut src, &mut sink, &segments(), true, |_| true).unwrap();
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
