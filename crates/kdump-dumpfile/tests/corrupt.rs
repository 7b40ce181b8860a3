//! Truncated and corrupted inputs give errors, never panics.

use std::io::Cursor;

use kdump_dumpfile::elf::{EM_X86_64, write_elf64_vmcore};
use kdump_dumpfile::kdump::KdumpConfig;
use kdump_dumpfile::notes::push_note;
use kdump_dumpfile::{
    Codec, ElfVmcore, Error, FlatReader, FlatWriter, KdumpReader, KdumpWriter, PhysMem, SeekSink, rebuild_flattened,
};
use proptest::prelude::*;

fn kdump(codec: Codec) -> Vec<u8> {
    let mut c = KdumpConfig::new(4096, 0x50, vec![1..0x20, 0x30..0x50], codec);
    c.share_zero_pages = true;
    c.vmcoreinfo = Some(b"OSRELEASE=6.1.0\nPAGESIZE=4096\n".to_vec());
    let mut notes = Vec::new();
    push_note(&mut notes, b"CORE", 1, &[3; 336]);
    c.notes = notes;
    let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), c).unwrap();
    for pfn in (1..0x20).chain(0x30..0x50) {
        let p: Vec<u8> = (0..4096u64).map(|i| ((i / 32) * pfn) as u8).collect();
        w.append_page(pfn, if pfn % 4 == 0 { &[0; 4096] } else { &p }).unwrap();
    }
    w.finish().unwrap().0.into_inner().into_inner()
}

/// A `Write + Seek` that keeps nothing (a corrupt offset may point terabytes away).
struct NullSink(u64);

impl std::io::Write for NullSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for NullSink {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        if let std::io::SeekFrom::Start(o) = to {
            self.0 = o;
        }
        Ok(self.0)
    }
}

/// Opens and reads every page; returns whether anything failed.
fn exercise<M: PhysMem>(m: Result<M, Error>) -> bool {
    let Ok(mut m) = m else { return true };
    let mut buf = vec![0u8; m.page_size() as usize];
    let mut failed = false;
    for pfn in 0..m.max_pfn().min(1 << 16) + 2 {
        failed |= m.read_page(pfn, &mut buf).is_err();
    }
    let _ = m.vmcoreinfo();
    failed
}

#[test]
fn kdump_truncated_at_every_boundary() {
    for codec in [Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd, Codec::None] {
        let f = kdump(codec);
        let desc = 4096 * 4;
        let mut cuts: Vec<usize> = vec![0, 7, 8, 12, 407, 408, 424, 428, 440, 460, 463, 464, 4095, 4096];
        cuts.extend([4096 + 8, 4096 + 16, 4096 + 48, 4096 + 103, 4096 + 104, 4096 + 200, 8191, 8192, 12288, 16383]);
        cuts.extend((desc..desc + 24 * 0x40 + 4096).step_by(12));
        cuts.extend((desc + 24 * 0x3f..f.len()).step_by(301));
        for cut in cuts.into_iter().filter(|&c| c < f.len()) {
            let failed = exercise(KdumpReader::open(Cursor::new(f[..cut].to_vec())));
            assert!(failed, "{codec:?}: cut at {cut} of {} went unnoticed", f.len());
        }
    }
}

#[test]
fn kdump_incomplete_flag_turns_truncation_into_lost_pages() {
    let mut f = kdump(Codec::Zlib);
    f[424] |= 0x8;
    let len = f.len();
    let mut r = KdumpReader::open(Cursor::new(f[..len - 5000].to_vec())).unwrap();
    assert!(r.is_incomplete());
    let mut buf = vec![0u8; 4096];
    let states: Vec<_> = (0..0x50).map(|p| r.read_page(p, &mut buf).unwrap()).collect();
    assert!(states.contains(&kdump_dumpfile::PageState::Lost));
    assert!(states.contains(&kdump_dumpfile::PageState::Present));
}

#[test]
fn kdump_garbage_header_fields() {
    let f = kdump(Codec::Zlib);
    // (offset, bytes) pokes at every header field
    let pokes: &[(usize, &[u8])] = &[
        (0, b"DISKDUMP"),
        (0, b"XXXXXXXX"),
        (8, &[0, 0, 0, 0]),
        (8, &[7, 0, 0, 0]),
        (424, &[0x40, 0, 0, 0]),
        (428, &[0, 0, 0, 0]),
        (428, &[1, 0x10, 0, 0]),
        (428, &[0, 0, 0, 0x80]),
        (432, &[0xff, 0xff, 0xff, 0x7f]),
        (432, &[0xff, 0xff, 0xff, 0xff]),
        (436, &[0, 0, 0, 0]),
        (436, &[3, 0, 0, 0]),
        (436, &[0xfe, 0xff, 0xff, 0xff]),
        (440, &[0xff, 0xff, 0xff, 0xff]),
        (4096 + 32, &[0xff; 8]),
        (4096 + 40, &[0xff; 8]),
        (4096 + 48, &[0xf0; 8]),
        (4096 + 56, &[0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0]),
        (4096 + 96, &[0xff; 8]),
        (4096 + 96, &[0, 0, 0, 0, 0, 0, 1, 0]),
        (16384, &[0xff; 8]),
        (16384 + 8, &[0xff; 4]),
        (16384 + 8, &[0, 0, 0, 0]),
        (16384 + 12, &[0x3, 0, 0, 0]),
        (16384 + 12, &[0x1, 0, 0, 0]),
        (12288, &[0xff; 64]),
        (8192, &[0xff; 64]),
    ];
    for (off, bytes) in pokes {
        let mut g = f.clone();
        g[*off..off + bytes.len()].copy_from_slice(bytes);
        let _ = exercise(KdumpReader::open(Cursor::new(g)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn kdump_random_corruption_never_panics(pokes in prop::collection::vec((0usize..20480, any::<u8>()), 1..8), codec in 0usize..5) {
        let mut f = kdump(Codec::ALL[codec]);
        for (off, v) in pokes {
            let off = off % f.len();
            f[off] = v;
        }
        let _ = exercise(KdumpReader::open(Cursor::new(f)));
    }

    #[test]
    fn elf_random_corruption_never_panics(pokes in prop::collection::vec((0usize..400, any::<u8>()), 1..8), cut in 0usize..20000) {
        let mut notes = Vec::new();
        push_note(&mut notes, b"VMCOREINFO", 0, b"PAGESIZE=4096\n");
        let a = vec![7u8; 8192];
        let mut f = Vec::new();
        write_elf64_vmcore(&mut f, EM_X86_64, &notes, &[(0x1000, 0x3000, &a), (0x2000, 0x800, &a[..0x800])]).unwrap();
        for (off, v) in pokes {
            let off = off % f.len();
            f[off] = v;
        }
        f.truncate(cut.max(1));
        let _ = exercise(ElfVmcore::open(Cursor::new(f)));
    }

    #[test]
    fn flat_random_corruption_never_panics(pokes in prop::collection::vec((4096usize..4400, any::<u8>()), 1..6)) {
        let mut w = FlatWriter::new(Vec::new()).unwrap();
        kdump_dumpfile::WriteAt::write_at(&mut w, 0, &kdump(Codec::Zlib)[..9000]).unwrap();
        kdump_dumpfile::WriteAt::write_at(&mut w, 100, b"overlap").unwrap();
        let mut f = w.finish().unwrap();
        for (off, v) in pokes {
            let off = off % f.len();
            f[off] = v;
        }
        let _ = rebuild_flattened(Cursor::new(f.clone()), NullSink(0));
        if let Ok(r) = FlatReader::open(Cursor::new(f)) {
            let _ = exercise(KdumpReader::open(r));
        }
    }
}

/// Found by fuzzing: a flattened stream with a record terabytes away (so the
/// file's length is huge) and a header claiming a billion bitmap blocks for a
/// small max_mapnr. Only the bitmap blocks that cover max_mapnr are read, so
/// opening it returns at once instead of reading terabytes of holes.
#[test]
fn an_oversized_bitmap_claim_reads_only_what_max_mapnr_needs() {
    let mut f = kdump(Codec::Zlib);
    f[436..440].copy_from_slice(&(1u32 << 30).to_le_bytes()); // bitmap_blocks
    let mut w = FlatWriter::new(Vec::new()).unwrap();
    kdump_dumpfile::WriteAt::write_at(&mut w, 0, &f).unwrap();
    kdump_dumpfile::WriteAt::write_at(&mut w, 1 << 44, &[0]).unwrap();
    let stream = w.finish().unwrap();
    let _ = exercise(KdumpReader::open(FlatReader::open(Cursor::new(stream)).unwrap()));
}
