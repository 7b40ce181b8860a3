//! The save pipeline: determinism across thread counts, a full disk, and
//! unreadable source pages.

use std::io::{self, Cursor};

use kdump_dumpfile::elf::write_elf64_vmcore;
use kdump_dumpfile::{
    Codec, ElfVmcore, KdumpConfig, KdumpReader, KdumpWriter, PageState, PfnRange, PhysMem, SeekSink, WriteAt,
};
use kdump_save::{SaveOptions, save_kdump};

const PAGE: usize = 4096;

/// 3 MiB of RAM in two ranges: text-like pages, zero pages and random pages.
fn source() -> ElfVmcore<Cursor<Vec<u8>>> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut page = |i: usize| -> Vec<u8> {
        match i % 3 {
            0 => vec![0u8; PAGE],
            1 => (0..PAGE).map(|b| (b / 16 + i) as u8).collect(),
            _ => (0..PAGE)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect(),
        }
    };
    let a: Vec<u8> = (0..256).flat_map(&mut page).collect();
    let b: Vec<u8> = (256..768).flat_map(&mut page).collect();
    let notes = b"\x0b\0\0\0\x0f\0\0\0\0\0\0\0VMCOREINFO\0\0OSRELEASE=6.1\n\0".to_vec();
    let mut file = Vec::new();
    write_elf64_vmcore(&mut file, 62, &notes, &[(0x10_0000, a.len() as u64, &a), (0x100_0000, b.len() as u64, &b)])
        .unwrap();
    ElfVmcore::open(Cursor::new(file)).unwrap()
}

fn config(src: &dyn PhysMem, codec: Codec) -> KdumpConfig {
    let mut cfg = KdumpConfig::new(PAGE as u32, src.max_pfn(), src.ram_ranges().to_vec(), codec);
    cfg.share_zero_pages = true;
    cfg.dump_level = 1;
    cfg.timestamp = (1_700_000_000, 0);
    cfg.vmcoreinfo = src.vmcoreinfo().map(<[u8]>::to_vec);
    cfg
}

fn save(threads: usize, codec: Codec) -> Vec<u8> {
    let mut src = source();
    let writer = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), config(&src, codec)).unwrap();
    let opts = SaveOptions { threads, ..SaveOptions::default() };
    let (sink, report) = save_kdump(&mut src, writer, &opts, |_| true, |_| {}).unwrap();
    assert_eq!(report.incomplete_reason, None);
    assert_eq!(report.pages_scanned, 768);
    assert_eq!(report.times.bytes_read, 768 * PAGE as u64, "every page read once");
    assert!(report.times.encoding > std::time::Duration::ZERO && report.times.writing > std::time::Duration::ZERO);
    sink.into_inner().into_inner()
}

#[test]
fn output_is_identical_whatever_the_thread_count_and_reads_back() {
    for codec in [Codec::Zstd, Codec::Zlib, Codec::None] {
        let one = save(1, codec);
        // 0: read, encode and write on the calling thread (one CPU).
        for threads in [0, 2, 3, 8] {
            assert!(save(threads, codec) == one, "{codec:?} with {threads} threads differs from 1 thread");
        }
        let mut reader = KdumpReader::open(Cursor::new(one)).unwrap();
        let mut src = source();
        let (mut a, mut b) = (vec![0u8; PAGE], vec![0u8; PAGE]);
        for range in src.ram_ranges().to_vec() {
            for pfn in range {
                src.read_page(pfn, &mut a).unwrap();
                let state = reader.read_page(pfn, &mut b).unwrap();
                assert_eq!(state, PageState::Present, "pfn {pfn:#x}");
                assert!(a == b, "pfn {pfn:#x} differs");
            }
        }
    }
}

/// A sink that fails with ENOSPC once `limit` bytes lie beyond offset 0.
struct FullDisk {
    inner: SeekSink<Cursor<Vec<u8>>>,
    limit: u64,
    /// A slow failure, so the reader fills the channels before it sees the stop.
    slow: bool,
}

impl WriteAt for FullDisk {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset + data.len() as u64 > self.limit {
            if self.slow {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            return Err(io::Error::from_raw_os_error(28));
        }
        self.inner.write_at(offset, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_full_disk_leaves_an_incomplete_but_readable_file() {
    let mut src = source();
    let sink = FullDisk { inner: SeekSink::new(Cursor::new(Vec::new())), limit: 900 << 10, slow: false };
    let writer = KdumpWriter::new(sink, config(&src, Codec::None)).unwrap();
    let opts = SaveOptions { threads: 2, ..SaveOptions::default() };
    let (sink, report) = save_kdump(&mut src, writer, &opts, |_| true, |_| {}).unwrap();
    // The same on one thread: the same pages reach the file before the disk is full.
    let mut src0 = source();
    let sink0 = FullDisk { inner: SeekSink::new(Cursor::new(Vec::new())), limit: 900 << 10, slow: false };
    let writer0 = KdumpWriter::new(sink0, config(&src0, Codec::None)).unwrap();
    let opts0 = SaveOptions { threads: 0, ..SaveOptions::default() };
    let (sink0, report0) = save_kdump(&mut src0, writer0, &opts0, |_| true, |_| {}).unwrap();
    assert_eq!(report0.written, report.written, "one thread and a pipeline stop at the same page");
    assert!(sink0.inner.into_inner().into_inner().len() > 1000);
    let reason = report.incomplete_reason.expect("the dump is incomplete");
    assert!(reason.contains("No space left") || reason.contains("os error 28"), "{reason}");
    let bytes = sink.inner.into_inner().into_inner();
    let mut reader = KdumpReader::open(Cursor::new(bytes)).unwrap();
    assert!(reader.is_incomplete());
    let (mut a, mut b) = (vec![0u8; PAGE], vec![0u8; PAGE]);
    let mut present = 0;
    let mut lost = 0;
    for pfn in 0x100..0x200 {
        src.read_page(pfn, &mut a).unwrap();
        match reader.read_page(pfn, &mut b).unwrap() {
            PageState::Present => {
                present += 1;
                assert!(a == b, "pfn {pfn:#x} differs");
            }
            PageState::Lost => lost += 1,
            other => panic!("pfn {pfn:#x}: {other:?}"),
        }
    }
    assert!(present > 0 && lost > 0, "present {present}, lost {lost}");
}

/// A source whose page 0x105 cannot be read.
struct Flaky(ElfVmcore<Cursor<Vec<u8>>>);

impl PhysMem for Flaky {
    fn page_size(&self) -> u64 {
        self.0.page_size()
    }
    fn max_pfn(&self) -> u64 {
        self.0.max_pfn()
    }
    fn ram_ranges(&self) -> &[PfnRange] {
        self.0.ram_ranges()
    }
    fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> kdump_dumpfile::Result<PageState> {
        if pfn == 0x105 {
            return Err(kdump_dumpfile::Error::Io(io::Error::from_raw_os_error(5)));
        }
        self.0.read_page(pfn, buf)
    }
    fn notes(&self) -> &[u8] {
        self.0.notes()
    }
    fn vmcoreinfo(&self) -> Option<&[u8]> {
        self.0.vmcoreinfo()
    }
}

#[test]
fn unreadable_source_pages_are_recorded_and_left_out() {
    let mut src = Flaky(source());
    let writer = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), config(&src, Codec::Zstd)).unwrap();
    let (sink, report) = save_kdump(&mut src, writer, &SaveOptions::default(), |_| true, |_| {}).unwrap();
    assert_eq!(report.unreadable, vec![0x105]);
    assert_eq!(report.unreadable_count, 1);
    assert_eq!(report.incomplete_reason, None);
    let mut reader = KdumpReader::open(Cursor::new(sink.into_inner().into_inner())).unwrap();
    let mut b = vec![0u8; PAGE];
    assert_eq!(reader.read_page(0x105, &mut b).unwrap(), PageState::Excluded);
    assert_eq!(reader.read_page(0x106, &mut b).unwrap(), PageState::Present);
}

/// 4096 pages of incompressible data, so the channels fill up.
fn big_source() -> ElfVmcore<Cursor<Vec<u8>>> {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let ram: Vec<u8> = (0..4096 * PAGE)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let mut file = Vec::new();
    write_elf64_vmcore(&mut file, 62, b"", &[(0x10_0000, ram.len() as u64, &ram)]).unwrap();
    ElfVmcore::open(Cursor::new(file)).unwrap()
}

#[test]
fn a_full_disk_early_in_a_long_dump_does_not_hang() {
    for threads in [0, 1, 2] {
        let mut src = big_source();
        let sink = FullDisk { inner: SeekSink::new(Cursor::new(Vec::new())), limit: 512 << 10, slow: true };
        let writer = KdumpWriter::new(sink, config(&src, Codec::None)).unwrap();
        let opts = SaveOptions { threads, ..SaveOptions::default() };
        let (_, report) = save_kdump(&mut src, writer, &opts, |_| true, |_| {}).unwrap();
        assert!(report.incomplete_reason.is_some(), "{threads} threads");
        assert!(report.pages_scanned < 4096, "the reader stopped early");
    }
}

#[test]
fn a_table_sized_for_the_kept_pages_is_smaller_and_still_marks_lost_pages() {
    let keep_even = |pfn: u64| pfn.is_multiple_of(2);
    let kept = 384u64; // half of the 768 RAM pages
    let full = save(1, Codec::None);

    // Complete: descriptors only for kept pages.
    let mut src = source();
    let mut cfg = config(&src, Codec::None);
    cfg.descriptor_slots = Some(kept);
    let writer = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), cfg.clone()).unwrap();
    let (sink, report) = save_kdump(&mut src, writer, &SaveOptions::default(), keep_even, |_| {}).unwrap();
    assert_eq!(report.written.pages, kept);
    let bytes = sink.into_inner().into_inner();
    let mut reader = KdumpReader::open(Cursor::new(bytes)).unwrap();
    let mut b = vec![0u8; PAGE];
    assert_eq!(reader.read_page(0x100, &mut b).unwrap(), PageState::Present);
    assert_eq!(reader.read_page(0x101, &mut b).unwrap(), PageState::Excluded);

    // Too many pages for the table: refused, not overflowed.
    let mut src = source();
    let writer = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), cfg.clone()).unwrap();
    let (_, report) = save_kdump(&mut src, writer, &SaveOptions::default(), |_| true, |_| {}).unwrap();
    assert!(report.incomplete_reason.unwrap().contains("descriptor table"));

    // A full disk: kept pages never written are lost, the others excluded.
    let mut src = source();
    let sink = FullDisk { inner: SeekSink::new(Cursor::new(Vec::new())), limit: 600 << 10, slow: false };
    let writer = KdumpWriter::new(sink, cfg).unwrap();
    let (sink, report) = save_kdump(&mut src, writer, &SaveOptions::default(), keep_even, |_| {}).unwrap();
    assert!(report.incomplete_reason.is_some());
    let bytes = sink.inner.into_inner().into_inner();
    assert!(bytes.len() < full.len());
    let mut reader = KdumpReader::open(Cursor::new(bytes)).unwrap();
    let (mut lost, mut excluded_odd) = (0, 0);
    for pfn in 0x1000..0x1200 {
        match reader.read_page(pfn, &mut b).unwrap() {
            PageState::Lost => {
                assert_eq!(pfn % 2, 0, "only kept pages are lost");
                lost += 1;
            }
            PageState::Excluded => excluded_odd += u64::from(pfn % 2 == 1),
            _ => {}
        }
    }
    assert!(lost > 0 && excluded_odd == 256, "lost {lost}, excluded odd {excluded_odd}");
}
