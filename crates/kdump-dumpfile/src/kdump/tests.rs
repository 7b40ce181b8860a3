//! Round trips, layouts and damaged files.

use crate::codec::Codec;
use crate::error::Error;
use crate::physmem::{PageState, PfnRange, PhysMem};

use super::*;
use std::io::{self, Cursor};

fn cfg(codec: Codec) -> KdumpConfig {
    let mut c = KdumpConfig::new(4096, 0x120, vec![1..0xa0, 0x100..0x110], codec);
    c.share_zero_pages = true;
    c.dump_level = 1;
    c.vmcoreinfo = Some(b"OSRELEASE=6.1.0\nPAGESIZE=4096\n".to_vec());
    c.utsname.release = "6.1.0".into();
    c.utsname.machine = "x86_64".into();
    c
}

fn page(pfn: u64) -> Vec<u8> {
    (0..4096u64).map(|i| ((i * 7 + pfn * 13) % 251) as u8).collect()
}

fn write(codec: Codec) -> Vec<u8> {
    let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), cfg(codec)).unwrap();
    for pfn in (1..0xa0).chain(0x100..0x110) {
        if pfn % 5 == 0 {
            continue; // excluded
        }
        if pfn % 7 == 0 {
            w.append_page(pfn, &[0u8; 4096]).unwrap();
        } else {
            w.append_page(pfn, &page(pfn)).unwrap();
        }
    }
    let (s, sum) = w.finish().unwrap();
    assert!(!sum.incomplete);
    s.into_inner().into_inner()
}

#[test]
fn struct_offsets() {
    let mut h = DiskDumpHeader::parse(&[0u8; 464]);
    h.signature = *KDUMP_SIGNATURE;
    h.header_version = 6;
    h.timestamp_sec = 0x0102;
    h.status = 0x20;
    h.block_size = 4096;
    h.sub_hdr_size = 3;
    h.bitmap_blocks = 8;
    h.max_mapnr = 0x1234;
    h.nr_cpus = 4;
    h.utsname[4][..6].copy_from_slice(b"x86_64");
    let b = h.to_bytes();
    assert_eq!(&b[0..8], b"KDUMP   ");
    assert_eq!(b[8], 6);
    assert_eq!(&b[12 + 65 * 4..12 + 65 * 4 + 6], b"x86_64");
    assert_eq!(b[408..410], [2, 1]);
    assert_eq!(b[424], 0x20);
    assert_eq!(b[428..430], [0, 0x10]);
    assert_eq!(b[432], 3);
    assert_eq!(b[436], 8);
    assert_eq!(b[440..442], [0x34, 0x12]);
    assert_eq!(b[460], 4);
    assert_eq!(DiskDumpHeader::parse(&b), h);
    assert_eq!(h.utsname_field(4), "x86_64");

    let s = KdumpSubHeader {
        phys_base: 1,
        dump_level: 2,
        split: 3,
        start_pfn: 4,
        end_pfn: 5,
        offset_vmcoreinfo: 6,
        size_vmcoreinfo: 7,
        offset_note: 8,
        size_note: 9,
        offset_eraseinfo: 10,
        size_eraseinfo: 11,
        start_pfn_64: 12,
        end_pfn_64: 13,
        max_mapnr_64: 14,
    };
    let b = s.to_bytes();
    for (off, v) in [(0, 1), (8, 2), (12, 3), (16, 4), (24, 5), (32, 6), (40, 7), (48, 8), (56, 9), (64, 10)] {
        assert_eq!(b[off], v, "offset {off}");
    }
    for (off, v) in [(72, 11), (80, 12), (88, 13), (96, 14)] {
        assert_eq!(b[off], v, "offset {off}");
    }
    assert_eq!(KdumpSubHeader::parse(&b, 6), s);
    assert_eq!(KdumpSubHeader::parse(&b, 3).offset_note, 0);

    let d = PageDesc { offset: 0x1122, size: 0x33, flags: 0x4, page_flags: 0x55 };
    let b = d.to_bytes();
    assert_eq!((b[0], b[1], b[8], b[12], b[16]), (0x22, 0x11, 0x33, 0x4, 0x55));
    assert_eq!(PageDesc::parse(&b), d);
}

#[test]
fn file_layout() {
    let f = write(Codec::Zlib);
    let h = DiskDumpHeader::parse(&f);
    assert_eq!(h.status, 1);
    assert_eq!(h.block_size, 4096);
    assert_eq!(h.sub_hdr_size, 1);
    assert_eq!(h.bitmap_blocks, 2);
    assert_eq!(h.max_mapnr, 0x120);
    let s = KdumpSubHeader::parse(&f[4096..], 6);
    assert_eq!(s.offset_note, 4096 + 104);
    assert_eq!(s.max_mapnr_64, 0x120);
    assert_eq!(s.dump_level, 1);
    let vi = &f[s.offset_vmcoreinfo as usize..(s.offset_vmcoreinfo + s.size_vmcoreinfo) as usize];
    assert_eq!(vi, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
    // 1st bitmap at block 2: PFN 0 not RAM, 1..0xa0 RAM
    assert_eq!(f[8192], 0xfe);
    assert_eq!(f[8192 + 0x9f / 8] >> 7, 1);
    // 2nd bitmap at block 3: PFN 5 excluded, 7 (zero) present
    assert_eq!(f[12288] & (1 << 5), 0);
    assert_eq!(f[12288] & (1 << 6), 1 << 6);
    // descriptors at block 4; the first (PFN 1) points past the shared zero page
    let n_ram = 0x9f + 0x10;
    let data = 16384 + 24 * n_ram;
    let d0 = PageDesc::parse(&f[16384..]);
    assert_eq!(d0.offset as usize, data + 4096);
    assert_eq!(d0.flags, 1);
    // PFN 7 is the 6th dumpable page (1,2,3,4,6,7) -> index 5: shared zero page
    let d5 = PageDesc::parse(&f[16384 + 5 * 24..]);
    assert_eq!((d5.offset as usize, d5.size, d5.flags), (data, 4096, 0));
}

#[test]
fn roundtrip_each_codec() {
    for codec in Codec::ALL {
        let f = write(codec);
        let mut r = KdumpReader::open(Cursor::new(f)).unwrap();
        assert_eq!(r.ram_ranges(), &[1..0xa0, 0x100..0x110]);
        assert_eq!(r.vmcoreinfo().unwrap(), b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
        assert!(!r.is_incomplete());
        let mut buf = vec![0u8; 4096];
        for pfn in 0..0x130 {
            let st = r.read_page(pfn, &mut buf).unwrap();
            let ram = (1..0xa0).contains(&pfn) || (0x100..0x110).contains(&pfn);
            let want = if !ram {
                PageState::NotRam
            } else if pfn % 5 == 0 {
                PageState::Excluded
            } else {
                PageState::Present
            };
            assert_eq!(st, want, "{codec:?} pfn {pfn:#x}");
            if st == PageState::Present {
                let expect = if pfn % 7 == 0 { vec![0u8; 4096] } else { page(pfn) };
                assert_eq!(buf, expect, "{codec:?} pfn {pfn:#x}");
            } else {
                assert!(buf.iter().all(|&b| b == 0));
            }
        }
        assert_eq!(r.dumpable_pages(), (0x9f + 0x10) - (0x9f / 5 + 3));
    }
}

/// Descriptors are read in runs: any order of page reads sees the pages written.
#[test]
fn page_reads_in_any_order_see_the_pages_written() {
    let mut r = KdumpReader::open(Cursor::new(write(Codec::Zlib))).unwrap();
    let mut buf = vec![0u8; 4096];
    let order = (0..0x120u64).rev().chain((0..0x120).map(|i| (i * 97) % 0x120));
    for pfn in order {
        let ram = (1..0xa0).contains(&pfn) || (0x100..0x110).contains(&pfn);
        let st = r.read_page(pfn, &mut buf).unwrap();
        if !ram || pfn % 5 == 0 {
            assert_ne!(st, PageState::Present, "pfn {pfn:#x}");
            continue;
        }
        assert_eq!(st, PageState::Present, "pfn {pfn:#x}");
        let expect = if pfn % 7 == 0 { vec![0u8; 4096] } else { page(pfn) };
        assert_eq!(buf, expect, "pfn {pfn:#x}");
    }
}

#[test]
fn older_header_versions() {
    let f = write(Codec::Zlib);
    for v in 1..=6u8 {
        let mut g = f.clone();
        g[8] = v;
        let mut r = KdumpReader::open(Cursor::new(g)).unwrap();
        assert_eq!(r.max_pfn(), 0x120);
        assert_eq!(r.vmcoreinfo().is_some(), v >= 3, "v{v}");
        assert_eq!(r.notes().is_empty(), v < 4, "v{v}");
        let mut buf = vec![0u8; 4096];
        assert_eq!(r.read_page(0x101, &mut buf).unwrap(), PageState::Present);
        assert_eq!(buf, page(0x101));
    }
    for v in [0u8, 7] {
        let mut g = f.clone();
        g[8] = v;
        assert!(matches!(KdumpReader::open(Cursor::new(g)), Err(Error::Unsupported { .. })));
    }
}

#[test]
fn misuse_is_error() {
    let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), cfg(Codec::None)).unwrap();
    assert!(w.append_page(0, &page(0)).is_err()); // not RAM
    w.append_page(3, &page(3)).unwrap();
    assert!(w.append_page(3, &page(3)).is_err()); // repeated
    assert!(w.append_page(2, &page(2)).is_err()); // backwards
    assert!(w.append_page(0x200, &page(2)).is_err()); // beyond max_pfn
    assert!(w.append_page(4, &[0u8; 10]).is_err());
    assert!(KdumpWriter::new(1usize, cfg(Codec::None)).is_err());
}

impl WriteAt for usize {
    fn write_at(&mut self, _: u64, _: &[u8]) -> io::Result<()> {
        Err(io::Error::other("no space left on device"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that fails once `limit` bytes have been written past `fail_from`.
struct Limited {
    file: Cursor<Vec<u8>>,
    limit: u64,
}
impl WriteAt for Limited {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset + data.len() as u64 > self.limit {
            return Err(io::Error::other("ENOSPC"));
        }
        SeekSink::new(&mut self.file).write_at(offset, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn incomplete_after_enospc() {
    // Large max_pfn so the data flushes several times.
    let mut c = KdumpConfig::new(4096, 2048, std::iter::once(0..2048).collect(), Codec::None);
    c.share_zero_pages = true;
    let sink = Limited { file: Cursor::new(Vec::new()), limit: 3 << 20 };
    let mut w = KdumpWriter::new(sink, c).unwrap();
    let mut failed_at = None;
    for pfn in 0..2048 {
        if let Err(e) = w.append_page(pfn, &page(pfn)) {
            assert!(matches!(e, Error::Io(_)));
            failed_at = Some(pfn);
            break;
        }
    }
    let failed_at = failed_at.expect("the sink fills up");
    assert!(w.append_page(failed_at + 1, &page(0)).is_err());
    let (mut sink, sum) = w.finish_incomplete().unwrap();
    assert!(sum.incomplete);
    sink.limit = u64::MAX;
    let f = sink.file.into_inner();
    let mut r = KdumpReader::open(Cursor::new(f)).unwrap();
    assert!(r.is_incomplete());
    let mut buf = vec![0u8; 4096];
    let (mut present, mut lost) = (0, 0);
    for pfn in 0..2048 {
        match r.read_page(pfn, &mut buf).unwrap() {
            PageState::Present => {
                assert_eq!(buf, page(pfn));
                assert_eq!(lost, 0, "present after lost at {pfn}");
                present += 1;
            }
            PageState::Lost => lost += 1,
            s => panic!("pfn {pfn}: {s:?}"),
        }
    }
    assert!(present > 0 && lost > 0, "{present} {lost}");
    assert_eq!(present + lost, 2048);
}

/// `data_alignment` moves the page data (shared zero page first) to the next multiple after
/// the descriptor table; the gap is zeros and the pages read back as without it.
#[test]
fn data_alignment_starts_page_data_at_a_multiple() {
    const ALIGN: u64 = 1 << 20;
    let mut c = cfg(Codec::Zstd);
    c.data_alignment = Some(ALIGN);
    let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), c).unwrap();
    let metadata = w.metadata_len();
    assert!(metadata < ALIGN);
    for pfn in (1..0xa0).chain(0x100..0x110) {
        let p = if pfn % 7 == 0 { vec![0u8; 4096] } else { page(pfn) };
        w.append_page(pfn, &p).unwrap();
    }
    let (s, sum) = w.finish().unwrap();
    let f = s.into_inner().into_inner();
    assert_eq!(sum.file_size, f.len() as u64);
    // The first descriptor (PFN 1) points past the shared zero page, which sits at ALIGN.
    let d0 = PageDesc::parse(&f[16384..]);
    assert_eq!(d0.offset as u64, ALIGN + 4096);
    let d6 = PageDesc::parse(&f[16384 + 6 * 24..]); // PFN 7: zero
    assert_eq!(d6.offset as u64, ALIGN);
    assert!(f[metadata as usize..ALIGN as usize].iter().all(|&b| b == 0));
    let mut r = KdumpReader::open(Cursor::new(f)).unwrap();
    let mut buf = vec![0u8; 4096];
    for pfn in (1..0xa0).chain(0x100..0x110) {
        assert_eq!(r.read_page(pfn, &mut buf).unwrap(), PageState::Present);
        let want = if pfn % 7 == 0 { vec![0u8; 4096] } else { page(pfn) };
        assert_eq!(buf, want, "pfn {pfn:#x}");
    }
    let mut bad = cfg(Codec::Zstd);
    bad.data_alignment = Some(0);
    assert!(KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), bad).is_err());
}

/// The pages [`write`] appends, in order: (pfn, contents).
fn written_pages() -> Vec<(u64, Vec<u8>)> {
    (1..0xa0)
        .chain(0x100..0x110)
        .filter(|pfn| pfn % 5 != 0)
        .map(|pfn| (pfn, if pfn % 7 == 0 { vec![0u8; 4096] } else { page(pfn) }))
        .collect()
}

/// Writes the parts of [`write`]'s dump cut at `ranges`, leaving out the pages `skip` names
/// (as unreadable ones would be).
fn write_parts(codec: Codec, ranges: &[PfnRange], skip: &[u64]) -> Vec<Vec<u8>> {
    let mut pages = PfnSet::new(0x120);
    for (pfn, _) in written_pages() {
        pages.insert(pfn).unwrap();
    }
    let pages = std::sync::Arc::new(pages);
    ranges
        .iter()
        .map(|range| {
            let mut c = cfg(codec);
            c.split = Some(SplitPart { range: range.clone(), pages: pages.clone() });
            let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), c).unwrap();
            for (pfn, data) in written_pages() {
                if range.contains(&pfn) && !skip.contains(&pfn) {
                    w.append_page(pfn, &data).unwrap();
                }
            }
            let (s, sum) = w.finish().unwrap();
            assert_eq!(sum.lost_pages, skip.iter().filter(|p| range.contains(p)).count() as u64);
            s.into_inner().into_inner()
        })
        .collect()
}

fn states(m: &mut dyn PhysMem) -> Vec<(PageState, Vec<u8>)> {
    let mut buf = vec![0u8; 4096];
    (0..m.max_pfn()).map(|pfn| (m.read_page(pfn, &mut buf).unwrap(), buf.clone())).collect()
}

fn reader_set(parts: &[Vec<u8>], to: SetUse) -> Result<SplitReader<Cursor<Vec<u8>>>, Error> {
    let named = parts
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("part{i}"), KdumpReader::open(Cursor::new(b.clone())).unwrap()))
        .collect();
    SplitReader::new(named, to)
}

#[test]
fn split_parts_read_as_one_and_join_into_the_single_file() {
    let single = write(Codec::Zlib);
    let want = states(&mut KdumpReader::open(Cursor::new(single.clone())).unwrap());
    let ranges = [0..0x40, 0x40..0x40, 0x40..0x105, 0x105..0x120];
    let parts = write_parts(Codec::Zlib, &ranges, &[]);
    for (bytes, range) in parts.iter().zip(&ranges) {
        let r = KdumpReader::open(Cursor::new(bytes.clone())).unwrap();
        assert_eq!(r.split_range(), Some(range.clone()));
        assert_eq!(r.sub_header().split, 1);
        assert_eq!((r.sub_header().start_pfn, r.sub_header().end_pfn), (range.start, range.end));
        assert_eq!(r.dumpable_pages(), written_pages().len() as u64);
        // Headers are the single file's: the set's identity.
        assert_eq!(bytes[..DiskDumpHeader::SIZE], single[..DiskDumpHeader::SIZE]);
    }
    // Any order; the empty part is part of the set.
    let mut shuffled = parts.clone();
    shuffled.reverse();
    let mut set = reader_set(&shuffled, SetUse::Reassemble).unwrap();
    assert_eq!(set.names(), ["part3", "part2", "part1", "part0"]);
    assert!(states(&mut set) == want);
    let mut calls = 0;
    let (joined, sum) = reassemble(&mut set, SeekSink::new(Cursor::new(Vec::new())), |_, _| calls += 1).unwrap();
    assert_eq!((sum.pages, sum.lost_pages, calls), (written_pages().len() as u64, 0, 1));
    let joined = joined.into_inner().into_inner();
    let mut r = KdumpReader::open(Cursor::new(joined.clone())).unwrap();
    assert_eq!((r.sub_header().split, r.split_range()), (0, None));
    assert!(states(&mut r) == want);
    // The single file's header; its table was sized for every RAM page, the join's for the pages.
    assert_eq!(joined[..DiskDumpHeader::SIZE], single[..DiskDumpHeader::SIZE]);
}

#[test]
fn a_page_a_split_part_never_got_is_lost_in_the_part_the_set_and_the_join() {
    let ranges = [0..0x50, 0x50..0x120];
    let skipped = [0x51, 0x10f];
    let parts = write_parts(Codec::Lzo, &ranges, &skipped);
    let mut set = reader_set(&parts, SetUse::Read).unwrap();
    let got = states(&mut set);
    let (joined, sum) = reassemble(&mut set, SeekSink::new(Cursor::new(Vec::new())), |_, _| {}).unwrap();
    assert_eq!(sum.lost_pages, 2);
    let mut joined = KdumpReader::open(Cursor::new(joined.into_inner().into_inner())).unwrap();
    let want = states(&mut KdumpReader::open(Cursor::new(write(Codec::Lzo))).unwrap());
    for (pfn, ((st, data), (want_st, want_data))) in got.iter().zip(&want).enumerate() {
        let pfn = pfn as u64;
        if skipped.contains(&pfn) {
            assert_eq!(*st, PageState::Lost, "pfn {pfn:#x}");
        } else {
            assert_eq!((st, data), (want_st, want_data), "pfn {pfn:#x}");
        }
    }
    assert!(states(&mut joined) == got, "the join reads as the set");
}

#[test]
fn a_split_part_stopped_early_is_incomplete_and_reads_what_it_has() {
    let mut pages = PfnSet::new(0x120);
    for (pfn, _) in written_pages() {
        pages.insert(pfn).unwrap();
    }
    let mut c = cfg(Codec::Zstd);
    c.split = Some(SplitPart { range: 0x20..0x110, pages: std::sync::Arc::new(pages) });
    let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), c).unwrap();
    // Out of the range, and not a page of the set: refused.
    assert!(matches!(w.append_page(0x11, &page(0x11)), Err(Error::Usage(_))));
    w.append_page(0x22, &page(0x22)).unwrap();
    assert!(matches!(w.append_page(0x23, &page(0x23)), Err(Error::Usage(_))));
    w.append_page(0x26, &page(0x26)).unwrap();
    let (s, sum) = w.finish_incomplete().unwrap();
    assert!(sum.incomplete);
    let mut r = KdumpReader::open(Cursor::new(s.into_inner().into_inner())).unwrap();
    assert!(r.is_incomplete());
    let mut buf = vec![0u8; 4096];
    for pfn in 0..0x120u64 {
        let st = r.read_page(pfn, &mut buf).unwrap();
        let want = match pfn {
            0x22 | 0x26 => PageState::Present,
            // Pages of the set skipped (0x21, 0x24, 0x25), never reached, or in other parts: lost.
            _ if pfn % 5 == 0 && ((1..0xa0).contains(&pfn) || (0x100..0x110).contains(&pfn)) => PageState::Excluded,
            _ if (1..0xa0).contains(&pfn) || (0x100..0x110).contains(&pfn) => PageState::Lost,
            _ => PageState::NotRam,
        };
        assert_eq!(st, want, "pfn {pfn:#x}");
    }
    // Incomplete: read, but never joined.
    let mut others = write_parts(Codec::Zstd, &[0..0x20, 0x110..0x120], &[]);
    let set = [others.remove(0), r.into_inner().into_inner(), others.remove(0)];
    assert!(reader_set(&set, SetUse::Read).unwrap().is_incomplete());
    assert!(
        matches!(reader_set(&set, SetUse::Reassemble), Err(Error::SplitSet(m)) if m.contains("part1 is marked incomplete"))
    );
}

#[test]
fn sets_that_are_not_whole_are_refused() {
    let ranges = [0..0x40, 0x40..0x100, 0x100..0x120];
    let parts = write_parts(Codec::None, &ranges, &[]);
    let err = |parts: &[Vec<u8>]| match reader_set(parts, SetUse::Read) {
        Err(Error::SplitSet(m)) => m,
        other => panic!("not refused: {other:?}"),
    };
    let m = err(&[parts[0].clone(), parts[2].clone()]);
    assert!(m.contains("no part holds PFNs 0x40-0x100 (between part0 and part1)"), "{m}");
    let m = err(&[parts[1].clone(), parts[2].clone()]);
    assert!(m.contains("no part holds PFNs 0x0-0x40 (before part0)"), "{m}");
    let m = err(&[parts[0].clone(), parts[1].clone()]);
    assert!(m.contains("no part holds PFNs 0x100-0x120 (after part1)"), "{m}");
    let m = err(&[parts[0].clone(), parts[1].clone(), parts[1].clone(), parts[2].clone()]);
    assert!(m.contains("both hold"), "{m}");
    let m = err(&[parts[0].clone(), write(Codec::None)]);
    assert!(m.contains("part1 is not part of a split dump"), "{m}");
    // Another dump: the same but a page less.
    let mut other_cfg = cfg(Codec::None);
    let mut pages = PfnSet::new(0x120);
    for (pfn, _) in written_pages().into_iter().filter(|(p, _)| *p != 0x42) {
        pages.insert(pfn).unwrap();
    }
    other_cfg.split = Some(SplitPart { range: 0x40..0x100, pages: std::sync::Arc::new(pages) });
    let w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), other_cfg).unwrap();
    let other = w.finish().unwrap().0.into_inner().into_inner();
    let m = err(&[parts[0].clone(), other, parts[2].clone()]);
    assert!(m.contains("part0 and part1 are parts of different dumps (their page bitmaps differ)"), "{m}");
    assert!(matches!(reader_set(&[], SetUse::Read), Err(Error::SplitSet(_))));
}
