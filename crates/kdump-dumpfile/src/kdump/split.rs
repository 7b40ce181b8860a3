//! makedumpfile's `--split` format: one dump as several kdump-compressed files, each holding
//! the pages of one PFN range, that are read together or joined back into one file.
//!
//! Every part is an ordinary kdump-compressed file whose `kdump_sub_header` has `split = 1`
//! and its range in `start_pfn_64`/`end_pfn_64` (and, clamped to 32 bits, `start_pfn`/
//! `end_pfn`). What each part holds, as makedumpfile 1.7 writes and reassembles it:
//!
//! - the same `disk_dump_header`, byte for byte (makedumpfile's reassembly checks it: it is
//!   the identity of the set; here the incomplete flag aside, so that a set with an
//!   incomplete part can still be read), and the same sub-header but for the range;
//! - the whole dump's bitmaps: the 1st (RAM) and the 2nd (pages with a descriptor in *some*
//!   part); `max_mapnr` is the whole dump's;
//! - descriptors only for the pages of its range that are set in the 2nd bitmap, from the
//!   start of the table: the page at rank `r` of the whole 2nd bitmap is descriptor
//!   `r - rank(start_pfn)`;
//! - page data only for them. The shared zero page (dump level bit 1) is the first data
//!   block, at `table start + 24 × (pages of the whole dump)`: where a single file would
//!   put it. makedumpfile's `--reassemble` recognises zero pages by that offset.
//!
//! [`PfnSet`] is the whole dump's 2nd bitmap that a split writer is given
//! ([`KdumpConfig::split`]); [`balanced_ranges`] cuts it into parts of about as many pages;
//! [`SplitReader`] reads a checked set as one dump; [`reassemble`] joins a set into one
//! ordinary file.

use std::io::{Read, Seek};
use std::sync::Arc;

use crate::codec::{
    Codec, Encoded, FLAG_EXCLUDED_VMEMMAP, FLAG_INCOMPLETE, FLAG_LZO, FLAG_SNAPPY, FLAG_ZLIB, FLAG_ZSTD, is_zero_page,
};
use crate::error::{Error, Result};
use crate::physmem::{PageState, PfnRange, PhysMem};

use super::*;

/// A set of PFNs below a limit, one bit each (as a kdump bitmap: bit `p % 8` of byte `p / 8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfnSet {
    words: Vec<u64>,
    limit: u64,
    len: u64,
}

impl PfnSet {
    /// An empty set of PFNs below `limit` (`limit / 8` bytes).
    pub fn new(limit: u64) -> Self {
        let words = usize::try_from(limit.div_ceil(64)).expect("a PFN limit that fits in memory");
        PfnSet { words: vec![0; words], limit, len: 0 }
    }

    /// PFNs are below this.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Number of PFNs in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `pfn` (at or past the limit: an error).
    pub fn insert(&mut self, pfn: u64) -> Result<()> {
        if pfn >= self.limit {
            return Err(Error::InvalidArgument(format!("PFN {pfn:#x} is past the set's limit {:#x}", self.limit)));
        }
        let w = &mut self.words[(pfn / 64) as usize];
        let bit = 1u64 << (pfn % 64);
        if *w & bit == 0 {
            *w |= bit;
            self.len += 1;
        }
        Ok(())
    }

    /// Whether `pfn` is in the set.
    pub fn contains(&self, pfn: u64) -> bool {
        pfn < self.limit && self.words[(pfn / 64) as usize] >> (pfn % 64) & 1 == 1
    }

    /// How many PFNs of `range` are in the set.
    pub fn count_in(&self, range: PfnRange) -> u64 {
        let (s, e) = (range.start.min(self.limit), range.end.min(self.limit));
        if s >= e {
            return 0;
        }
        let (ws, we) = ((s / 64) as usize, ((e - 1) / 64) as usize);
        let lo = !0u64 << (s % 64);
        let hi = !0u64 >> (63 - (e - 1) % 64);
        if ws == we {
            return u64::from((self.words[ws] & lo & hi).count_ones());
        }
        let middle: u64 = self.words[ws + 1..we].iter().map(|w| u64::from(w.count_ones())).sum();
        u64::from((self.words[ws] & lo).count_ones()) + middle + u64::from((self.words[we] & hi).count_ones())
    }

    /// The PFNs of the set from `from` on, in order.
    pub fn iter_from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        let mut pfn = from;
        std::iter::from_fn(move || {
            while pfn < self.limit {
                let w = self.words[(pfn / 64) as usize] >> (pfn % 64);
                if w == 0 {
                    pfn = (pfn / 64 + 1) * 64;
                    continue;
                }
                let found = pfn + u64::from(w.trailing_zeros());
                pfn = found + 1;
                return (found < self.limit).then_some(found);
            }
            None
        })
    }

    /// Bytes `[at, at + out.len())` of the set as a kdump bitmap (zero past the limit).
    pub fn bitmap_bytes(&self, at: u64, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            let byte = at + i as u64;
            *b = self.words.get((byte / 8) as usize).map_or(0, |w| (w >> (byte % 8 * 8)) as u8);
        }
    }
}

/// One part of a split dump, for [`KdumpConfig::split`].
#[derive(Debug, Clone)]
pub struct SplitPart {
    /// The PFNs this part holds the pages of (`start_pfn_64..end_pfn_64`).
    pub range: PfnRange,
    /// The whole dump's pages (its 2nd bitmap), the same for every part: each part's
    /// descriptor table and bitmap follow from it.
    pub pages: Arc<PfnSet>,
}

/// Cuts `0..pages.limit()` into `parts` consecutive ranges holding about as many pages of
/// `pages` each. With `granule` > 1 every boundary is a multiple of it (makedumpfile's
/// `--splitblock-size`), the one nearest to an even share. Ranges may be empty.
pub fn balanced_ranges(pages: &PfnSet, parts: usize, granule: u64) -> Vec<PfnRange> {
    let limit = pages.limit();
    let granule = granule.max(1);
    let total = u128::from(pages.len());
    let mut bounds = vec![0u64];
    let mut it = pages.iter_from(0);
    let (mut seen, mut last_found) = (0u64, 0u64);
    for i in 1..parts as u128 {
        let target = ((total * i + parts as u128 / 2) / parts as u128) as u64;
        // The boundary just after the target-th page of the set.
        let exact = if target == 0 {
            0
        } else {
            while seen < target {
                let Some(pfn) = it.next() else { break };
                seen += 1;
                last_found = pfn;
            }
            last_found + 1
        };
        let cut = if granule == 1 {
            exact
        } else {
            // The nearer multiple by pages; on a tie the upper one, as makedumpfile
            // gives a part whole blocks until it has its share.
            let below = exact / granule * granule;
            let above = below.saturating_add(granule).min(limit);
            let off = |b: u64| pages.count_in(0..b).abs_diff(target);
            if off(above) <= off(below) { above } else { below }
        };
        let prev = *bounds.last().unwrap_or(&0);
        bounds.push(cut.clamp(prev, limit));
    }
    bounds.push(limit);
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// What a reader of a split set tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetUse {
    /// Reading: an incomplete part is read for what it has.
    Read,
    /// Joining into one file: every part must be complete.
    Reassemble,
}

/// Checks that `parts` (named for messages, in any order) are the whole set of one split
/// dump and returns their indices ordered by range. Errors name the cause and the fix.
pub fn check_split_set<R: Read + Seek>(parts: &[(&str, &KdumpReader<R>)], to: SetUse) -> Result<Vec<usize>> {
    let bad = |msg: String| Err(Error::SplitSet(msg));
    let Some(&(first_name, first)) = parts.first() else {
        return bad("no parts given: name every file of the split dump".into());
    };
    for &(name, p) in parts {
        if p.split_range().is_none() {
            return bad(format!(
                "{name} is not part of a split dump (its kdump_sub_header says split = 0): give only the files \
                 one `--split` run wrote"
            ));
        }
        if to == SetUse::Reassemble && p.is_incomplete() {
            return bad(format!(
                "{name} is marked incomplete (writing it stopped early, e.g. on a full disk): a set with an \
                 incomplete part cannot be joined; dump again with room for every part, or read the set as it is \
                 (kdump info/dmesg take every part)"
            ));
        }
    }
    for &(name, p) in &parts[1..] {
        if let Some(what) = identity_difference(first, p) {
            return bad(format!(
                "{first_name} and {name} are parts of different dumps (their {what} differ): give the parts of one \
                 `--split` run together"
            ));
        }
    }
    let mut order: Vec<usize> = (0..parts.len()).collect();
    let range = |i: usize| parts[i].1.split_range().unwrap_or(0..0);
    order.sort_by_key(|&i| (range(i).start, range(i).end));
    let max = first.max_pfn();
    let mut end = 0u64;
    let mut prev: Option<usize> = None;
    for &i in &order {
        let r = range(i);
        let name = parts[i].0;
        if r.start < end {
            let other = prev.map_or("", |p| parts[p].0);
            return bad(format!(
                "{other} and {name} both hold PFNs {:#x}-{:#x} (a part given twice, or parts of different splits): \
                 give each part once",
                r.start,
                end.min(r.end)
            ));
        }
        if r.start > end {
            let place = match prev {
                Some(p) => format!("between {} and {name}", parts[p].0),
                None => format!("before {name}"),
            };
            return bad(format!(
                "no part holds PFNs {end:#x}-{:#x} ({place}): a part of the set is missing; give every file the \
                 `--split` run wrote",
                r.start
            ));
        }
        end = r.end;
        prev = Some(i);
    }
    if end != max {
        let last = prev.map_or("", |p| parts[p].0);
        return bad(format!(
            "no part holds PFNs {end:#x}-{max:#x} (after {last}): a part of the set is missing; give every file the \
             `--split` run wrote"
        ));
    }
    Ok(order)
}

/// The first identity field in which two parts differ (makedumpfile compares the whole
/// `disk_dump_header`; the sub-header, notes and bitmaps are compared too).
fn identity_difference<R: Read + Seek>(a: &KdumpReader<R>, b: &KdumpReader<R>) -> Option<&'static str> {
    // An incomplete part is still a part of its set (refused separately when joining).
    let complete = |r: &KdumpReader<R>| {
        let mut h = r.header().clone();
        h.status &= !FLAG_INCOMPLETE;
        h
    };
    let (ha, hb) = (&complete(a), &complete(b));
    let (sa, sb) = (a.sub_header(), b.sub_header());
    [
        (ha.utsname != hb.utsname, "kernel names (utsname)"),
        ((ha.timestamp_sec, ha.timestamp_usec) != (hb.timestamp_sec, hb.timestamp_usec), "dump times"),
        (ha.block_size != hb.block_size, "page sizes"),
        (a.max_pfn() != b.max_pfn() || ha.max_mapnr != hb.max_mapnr, "max_mapnr"),
        (ha.status != hb.status, "header status (codec, incomplete flag)"),
        (ha.header_version != hb.header_version, "header versions"),
        ((ha.nr_cpus, ha.current_cpu) != (hb.nr_cpus, hb.current_cpu), "CPU counts"),
        ((ha.sub_hdr_size, ha.bitmap_blocks) != (hb.sub_hdr_size, hb.bitmap_blocks), "header sizes"),
        (ha.to_bytes() != hb.to_bytes(), "disk_dump_headers"),
        ((sa.dump_level, sa.phys_base) != (sb.dump_level, sb.phys_base), "dump levels"),
        (a.notes() != b.notes() || a.vmcoreinfo() != b.vmcoreinfo(), "ELF notes"),
        (a.bitmap_digest() != b.bitmap_digest(), "page bitmaps"),
    ]
    .into_iter()
    .find_map(|(differs, what)| differs.then_some(what))
}

/// A whole split set read as one dump: each page from the part that holds it.
#[derive(Debug)]
pub struct SplitReader<R> {
    /// Ordered by range.
    parts: Vec<KdumpReader<R>>,
    names: Vec<String>,
}

impl<R: Read + Seek> SplitReader<R> {
    /// Checks `parts` (see [`check_split_set`]) and orders them by range.
    pub fn new(parts: Vec<(String, KdumpReader<R>)>, to: SetUse) -> Result<Self> {
        let named: Vec<(&str, &KdumpReader<R>)> = parts.iter().map(|(n, r)| (n.as_str(), r)).collect();
        let order = check_split_set(&named, to)?;
        let mut slots: Vec<Option<(String, KdumpReader<R>)>> = parts.into_iter().map(Some).collect();
        let (mut names, mut readers) = (Vec::new(), Vec::new());
        for i in order {
            if let Some((n, r)) = slots[i].take() {
                names.push(n);
                readers.push(r);
            }
        }
        Ok(SplitReader { parts: readers, names })
    }

    /// The parts, ordered by range.
    pub fn parts(&self) -> &[KdumpReader<R>] {
        &self.parts
    }

    /// The parts' names, in the same order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether any part is marked incomplete.
    pub fn is_incomplete(&self) -> bool {
        self.parts.iter().any(KdumpReader::is_incomplete)
    }

    fn first(&self) -> &KdumpReader<R> {
        &self.parts[0]
    }

    fn part_of(&mut self, pfn: u64) -> Option<&mut KdumpReader<R>> {
        let i = self.parts.partition_point(|p| p.split_range().is_some_and(|r| r.end <= pfn));
        self.parts.get_mut(i).filter(|p| p.split_range().is_some_and(|r| r.contains(&pfn)))
    }
}

impl<R: Read + Seek> PhysMem for SplitReader<R> {
    fn page_size(&self) -> u64 {
        self.first().page_size()
    }

    fn max_pfn(&self) -> u64 {
        self.first().max_pfn()
    }

    fn ram_ranges(&self) -> &[PfnRange] {
        self.first().ram_ranges()
    }

    fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> Result<PageState> {
        match self.part_of(pfn) {
            Some(p) => p.read_page(pfn, buf),
            None => {
                crate::physmem::check_buf(buf, self.page_size())?;
                buf.fill(0);
                Ok(PageState::NotRam)
            }
        }
    }

    fn notes(&self) -> &[u8] {
        self.first().notes()
    }

    fn vmcoreinfo(&self) -> Option<&[u8]> {
        self.first().vmcoreinfo()
    }

    fn has_page(&mut self, pfn: u64) -> Result<bool> {
        match self.part_of(pfn) {
            Some(p) => p.has_page(pfn),
            None => Ok(false),
        }
    }
}

/// The codec bits of a header status.
const CODEC_BITS: u32 = FLAG_ZLIB | FLAG_LZO | FLAG_SNAPPY | FLAG_ZSTD;

/// Joins a complete split set into one ordinary kdump-compressed file on `sink`, as
/// `makedumpfile --reassemble` does: the parts' header, notes and bitmaps, and every page
/// copied as stored (compressed pages are not recompressed; zero pages share one block
/// again). `progress(done, total)` is called about every 4096 pages.
pub fn reassemble<R: Read + Seek, S: WriteAt>(
    set: &mut SplitReader<R>,
    sink: S,
    mut progress: impl FnMut(u64, u64),
) -> Result<(S, WriteSummary)> {
    if let Some(i) = set.parts.iter().position(KdumpReader::is_incomplete) {
        return Err(Error::SplitSet(format!(
            "{} is marked incomplete: a set with an incomplete part cannot be joined",
            set.names[i]
        )));
    }
    let first = set.first();
    let (h, sub) = (first.header().clone(), first.sub_header().clone());
    let codec = Codec::from_flag(h.status & CODEC_BITS).ok_or_else(|| Error::Unsupported {
        what: "kdump header status",
        detail: format!("codec bits {:#x} name more than one codec", h.status & CODEC_BITS),
    })?;
    let page_size = u32::try_from(first.page_size()).map_err(|_| Error::InvalidArgument("page size".into()))?;
    let mut cfg = KdumpConfig::new(page_size, first.max_pfn(), first.ram_ranges().to_vec(), codec);
    cfg.share_zero_pages = sub.dump_level & 1 != 0;
    cfg.dump_level = sub.dump_level;
    cfg.utsname = Utsname::from_fields(&h.utsname);
    cfg.timestamp = (h.timestamp_sec, h.timestamp_usec);
    cfg.nr_cpus = h.nr_cpus;
    cfg.current_cpu = h.current_cpu;
    cfg.phys_base = sub.phys_base;
    cfg.notes = first.notes().to_vec();
    cfg.vmcoreinfo = first.vmcoreinfo().map(<[u8]>::to_vec);
    cfg.excluded_vmemmap = h.status & FLAG_EXCLUDED_VMEMMAP != 0;
    let total = first.dumpable_pages();
    cfg.descriptor_slots = Some(total);
    let ram = first.ram_ranges().to_vec();
    let mut w = KdumpWriter::new(sink, cfg)?;
    let mut data = Vec::new();
    let mut done = 0u64;
    for part in &mut set.parts {
        let Some(range) = part.split_range() else { continue };
        for r in &ram {
            for pfn in r.start.max(range.start)..r.end.min(range.end) {
                let Some(pd) = part.read_stored(pfn, &mut data)? else { continue };
                if pd.offset == 0 {
                    w.append_lost(pfn)?;
                } else if pd.flags != 0 {
                    w.append_encoded(pfn, Encoded::Compressed { flags: pd.flags }, &data)?;
                } else if sub.dump_level & 1 != 0 && is_zero_page(&data) {
                    w.append_encoded(pfn, Encoded::Zero, &[])?;
                } else {
                    w.append_encoded(pfn, Encoded::Raw, &data)?;
                }
                done += 1;
                if done.is_multiple_of(4096) {
                    progress(done, total);
                }
            }
        }
    }
    let out = w.finish()?;
    progress(done, total);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(limit: u64, pfns: impl IntoIterator<Item = u64>) -> PfnSet {
        let mut s = PfnSet::new(limit);
        for p in pfns {
            s.insert(p).unwrap();
        }
        s
    }

    #[test]
    fn pfn_set_counts_iterates_and_encodes_as_a_bitmap() {
        let s = set(200, [0, 1, 63, 64, 65, 130, 199]);
        assert_eq!(s.len(), 7);
        assert!(s.contains(63) && !s.contains(62) && !s.contains(500));
        assert_eq!(s.count_in(0..200), 7);
        assert_eq!(s.count_in(1..64), 2);
        assert_eq!(s.count_in(63..66), 3);
        assert_eq!(s.count_in(66..130), 0);
        assert_eq!(s.count_in(130..131), 1);
        assert_eq!(s.count_in(150..1000), 1);
        assert_eq!(s.iter_from(2).collect::<Vec<_>>(), vec![63, 64, 65, 130, 199]);
        assert!(set(10, []).insert(10).is_err());
        let mut b = [0u8; 3];
        s.bitmap_bytes(7, &mut b);
        assert_eq!(b, [0x80, 0x03, 0]);
        // The count of every sub-range agrees with a naive count.
        for a in 0..200 {
            for e in (a..=200).step_by(7) {
                assert_eq!(s.count_in(a..e), (a..e).filter(|&p| s.contains(p)).count() as u64, "{a}..{e}");
            }
        }
    }

    #[test]
    fn ranges_are_balanced_by_pages_and_cover_everything() {
        // Pages only in the upper half: the split follows the pages, not the PFNs.
        let s = set(1000, 500..800);
        let r = balanced_ranges(&s, 3, 1);
        assert_eq!(r, vec![0..600, 600..700, 700..1000]);
        assert_eq!(r.iter().map(|r| s.count_in(r.clone())).collect::<Vec<_>>(), vec![100, 100, 100]);
        // Boundaries on multiples of 64 pages.
        let r = balanced_ranges(&s, 3, 64);
        assert!(r.iter().skip(1).all(|r| r.start % 64 == 0), "{r:?}");
        assert_eq!(r.first().unwrap().start, 0);
        assert_eq!(r.last().unwrap().end, 1000);
        // More parts than pages: some are empty, all are contiguous.
        let s = set(10, [3]);
        let r = balanced_ranges(&s, 4, 1);
        assert_eq!(r.len(), 4);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(r.iter().map(|r| s.count_in(r.clone())).sum::<u64>(), 1);
        // A granule larger than the machine: everything in one part.
        let s = set(100, 0..100);
        let r = balanced_ranges(&s, 2, 1 << 20);
        assert_eq!(r.iter().map(|r| s.count_in(r.clone())).collect::<Vec<_>>(), vec![100, 0]);
    }
}
