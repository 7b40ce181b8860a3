//! Property tests: any page set round-trips through every writer and back through our readers.

use std::io::Cursor;

use kdump_dumpfile::elf::{EM_X86_64, write_elf64_vmcore};
use kdump_dumpfile::kdump::{KdumpConfig, copy_pages};
use kdump_dumpfile::notes::push_note;
use kdump_dumpfile::{
    Codec, ElfVmcore, FlatReader, FlatWriter, KdumpReader, KdumpWriter, PageState, PhysMem, SeekSink, rebuild_flattened,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    page_size: u32,
    ranges: Vec<(u64, u64)>,
    /// per RAM page (in PFN order): (dumpable, content kind, seed)
    pages: Vec<(bool, u8, u64)>,
    max_pfn_slack: u64,
}

fn content(kind: u8, seed: u64, size: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    match kind % 5 {
        0 => vec![0; size],
        1 => (0..size).map(|_| rnd()).collect(), // incompressible
        2 => (0..size).map(|i| (i as u64 / 16 + seed) as u8).collect(),
        3 => {
            let mut v = vec![0u8; size];
            v[size / 2] = 1 + (seed as u8 & 0x7f);
            v
        }
        _ => {
            let mut v: Vec<u8> = (0..size).map(|_| rnd()).collect();
            v[..size / 2].fill(seed as u8);
            v
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(512u32), Just(1024), Just(4096)],
        prop::collection::vec((0u64..9000, 1u64..40), 0..5),
        0u64..70000,
    )
        .prop_flat_map(|(ps, gaps, slack)| {
            let mut ranges = Vec::new();
            let mut at = 0;
            for (gap, len) in gaps {
                at += gap;
                ranges.push((at, at + len));
                at += len + 1;
            }
            let n: u64 = ranges.iter().map(|(s, e)| e - s).sum();
            (
                Just(ps),
                Just(ranges),
                prop::collection::vec((any::<bool>(), any::<u8>(), any::<u64>()), n as usize),
                Just(slack),
            )
        })
        .prop_map(|(page_size, ranges, pages, max_pfn_slack)| Case { page_size, ranges, pages, max_pfn_slack })
}

impl Case {
    fn max_pfn(&self) -> u64 {
        self.ranges.last().map_or(0, |r| r.1) + self.max_pfn_slack % 3000
    }
    fn ram_pages(&self) -> impl Iterator<Item = (u64, (bool, u8, u64))> + '_ {
        self.ranges.iter().flat_map(|&(s, e)| s..e).zip(self.pages.iter().copied())
    }
    fn vmcoreinfo(&self) -> Vec<u8> {
        format!("OSRELEASE=6.1.0-test\nPAGESIZE={}\n", self.page_size).into_bytes()
    }
    fn config(&self, codec: Codec, share_zero: bool) -> KdumpConfig {
        let mut c =
            KdumpConfig::new(self.page_size, self.max_pfn(), self.ranges.iter().map(|&(s, e)| s..e).collect(), codec);
        c.share_zero_pages = share_zero;
        c.vmcoreinfo = Some(self.vmcoreinfo());
        let mut notes = Vec::new();
        push_note(&mut notes, b"CORE", 1, &[0x11; 336]);
        c.notes = notes;
        c
    }
    fn write<S: kdump_dumpfile::WriteAt>(&self, sink: S, codec: Codec, share_zero: bool) -> S {
        let mut w = KdumpWriter::new(sink, self.config(codec, share_zero)).unwrap();
        for (pfn, (dumpable, kind, seed)) in self.ram_pages() {
            if dumpable {
                w.append_page(pfn, &content(kind, seed, self.page_size as usize)).unwrap();
            }
        }
        w.finish().unwrap().0
    }
    fn check<M: PhysMem>(&self, m: &mut M, all_dumpable: bool) {
        assert_eq!(m.page_size(), u64::from(self.page_size));
        let want: Vec<_> = self.ranges.iter().map(|&(s, e)| s..e).collect();
        assert_eq!(m.ram_ranges(), want.as_slice());
        assert_eq!(m.vmcoreinfo().unwrap(), self.vmcoreinfo().as_slice());
        let mut buf = vec![0u8; self.page_size as usize];
        let mut last = 0;
        for (pfn, (dumpable, kind, seed)) in self.ram_pages() {
            for hole in last..pfn.min(last + 3) {
                assert_eq!(m.read_page(hole, &mut buf).unwrap(), PageState::NotRam, "hole {hole}");
            }
            last = pfn + 1;
            let st = m.read_page(pfn, &mut buf).unwrap();
            if dumpable || all_dumpable {
                assert_eq!(st, PageState::Present, "pfn {pfn}");
                assert!(buf == content(kind, seed, self.page_size as usize), "pfn {pfn} differs");
            } else {
                assert_eq!(st, PageState::Excluded, "pfn {pfn}");
                assert!(buf.iter().all(|&b| b == 0));
            }
        }
        assert_eq!(m.read_page(last, &mut buf).unwrap(), PageState::NotRam);
        assert_eq!(m.read_page(u64::MAX, &mut buf).unwrap(), PageState::NotRam);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn kdump_and_flat_roundtrip(c in case()) {
        for codec in Codec::ALL {
            for share_zero in [false, true] {
                let file = c.write(SeekSink::new(Cursor::new(Vec::new())), codec, share_zero).into_inner().into_inner();
                let mut r = KdumpReader::open(Cursor::new(file.clone())).unwrap();
                c.check(&mut r, false);

                let flat = c.write(FlatWriter::new(Vec::new()).unwrap(), codec, share_zero).finish().unwrap();
                let mut rebuilt = Cursor::new(Vec::new());
                let n = rebuild_flattened(Cursor::new(flat.clone()), &mut rebuilt).unwrap();
                let rebuilt = rebuilt.into_inner();
                prop_assert_eq!(n as usize, rebuilt.len());
                prop_assert!(rebuilt == file, "rebuilt flattened file differs from the seekable output");

                let fr = FlatReader::open(Cursor::new(flat)).unwrap();
                let mut r = KdumpReader::open(fr).unwrap();
                c.check(&mut r, false);
            }
        }
    }

    #[test]
    fn elf_roundtrip_and_convert(c in case()) {
        let ps = u64::from(c.page_size);
        let mut notes = Vec::new();
        push_note(&mut notes, b"CORE", 1, &[0x22; 336]);
        push_note(&mut notes, b"VMCOREINFO", 0, &c.vmcoreinfo());
        let mut bytes: Vec<Vec<u8>> = Vec::new();
        let mut it = c.ram_pages();
        for &(s, e) in &c.ranges {
            let mut seg = Vec::new();
            for _ in s..e {
                let (_, (_, kind, seed)) = it.next().unwrap();
                seg.extend_from_slice(&content(kind, seed, ps as usize));
            }
            bytes.push(seg);
        }
        let segs: Vec<(u64, u64, &[u8])> =
            c.ranges.iter().zip(&bytes).map(|(&(s, e), b)| (s * ps, (e - s) * ps, b.as_slice())).collect();
        let mut elf = Vec::new();
        write_elf64_vmcore(&mut elf, EM_X86_64, &notes, &segs).unwrap();
        let mut e = ElfVmcore::open(Cursor::new(elf)).unwrap();
        c.check(&mut e, true);

        // ELF -> kdump with the dumpable filter, then read back.
        let dumpable: std::collections::HashSet<u64> =
            c.ram_pages().filter(|(_, (d, _, _))| *d).map(|(p, _)| p).collect();
        let mut cfg = c.config(Codec::Zstd, true);
        cfg.max_pfn = cfg.max_pfn.max(e.max_pfn());
        let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), cfg).unwrap();
        copy_pages(&mut e, &mut w, |pfn, _| dumpable.contains(&pfn)).unwrap();
        let file = w.finish().unwrap().0.into_inner().into_inner();
        let mut r = KdumpReader::open(Cursor::new(file)).unwrap();
        c.check(&mut r, false);
    }
}
