//! Property: any page set round-trips through the ELF writer and reader.

use std::io::Cursor;

use kdump_dumpfile::elf::write_elf64_vmcore;
use kdump_dumpfile::{ElfVmcore, PageState, PhysMem, SeekSink};
use kdump_save::elf::{ElfSegment, save_elf};
use proptest::prelude::*;

const PAGE: usize = 4096;

/// Page `i` of a run: zero, constant or patterned, chosen by `kinds`.
fn page(kind: u8, i: usize) -> Vec<u8> {
    match kind % 3 {
        0 => vec![0; PAGE],
        1 => vec![kind; PAGE],
        _ => (0..PAGE).map(|b| (b * 7 + i) as u8).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_pages_round_trip(kinds in proptest::collection::vec(any::<u8>(), 1..700), drop_zero: bool, split_at in 0usize..700) {
        let split = split_at.min(kinds.len());
        let pages: Vec<Vec<u8>> = kinds.iter().enumerate().map(|(i, &k)| page(k, i)).collect();
        let a: Vec<u8> = pages[..split].concat();
        let b: Vec<u8> = pages[split..].concat();
        let mut segs: Vec<(u64, u64, &[u8])> = Vec::new();
        if !a.is_empty() { segs.push((0x10_0000, a.len() as u64, &a)); }
        if !b.is_empty() { segs.push((0x800_0000, b.len() as u64, &b)); }
        let mut file = Vec::new();
        write_elf64_vmcore(&mut file, 62, b"", &segs).unwrap();
        let mut src = ElfVmcore::open(Cursor::new(file)).unwrap();
        let segments: Vec<ElfSegment> = segs.iter().map(|&(p, l, _)| ElfSegment { paddr: p, vaddr: 0, len: l }).collect();
        let mut sink = SeekSink::new(Cursor::new(Vec::new()));
        let report = save_elf(&mut src, &mut sink, &segments, &[], drop_zero, |_| true).unwrap();
        prop_assert!(report.incomplete_reason.is_none());
        let mut out = ElfVmcore::open(Cursor::new(sink.into_inner().into_inner())).unwrap();
        let (mut x, mut y) = (vec![0u8; PAGE], vec![0u8; PAGE]);
        for r in src.ram_ranges().to_vec() {
            for pfn in r {
                src.read_page(pfn, &mut x).unwrap();
                let state = out.read_page(pfn, &mut y).unwrap();
                // Dropped zero pages read back as zero (zero-filled or absent), data identically.
                prop_assert!(x == y, "pfn {:#x} ({:?})", pfn, state);
                if !drop_zero { prop_assert_eq!(state, PageState::Present); }
            }
        }
    }
}
