//! One struct-page pass for a whole dump: every cycle is classified once,
//! up front, into one bit per PFN ([`KeepMap`]). The writer sizes its page
//! table from the map's count and the save pipeline asks the map, so no
//! struct page is read twice (a counting pass followed by the filtering pass
//! used to read them all twice).

use std::ops::Range;

use super::{CYCLE_PAGES, LevelFilter};
use crate::memory::PhysRead;

/// Most PFNs a [`KeepMap`] spans: 2^29 bits = 64 MiB, 2 TiB of 4 KiB pages.
/// Larger machines fall back to classifying each cycle when it is asked about
/// (bounded memory, at the price of a second pass to count).
pub const KEEP_MAP_MAX_PAGES: u64 = 1 << 29;

/// Which PFNs a dump keeps: one bit per PFN from the first RAM page to the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepMap {
    /// PFN of bit 0 of `words[0]` (a multiple of 64).
    start: u64,
    words: Vec<u64>,
    kept: u64,
}

impl KeepMap {
    /// Heap bytes a map over `ram` takes (0 when there is no RAM).
    pub fn memory_bytes(ram: &[Range<u64>]) -> u64 {
        match (ram.first(), ram.last()) {
            (Some(first), Some(last)) => (last.end - first.start / 64 * 64).div_ceil(64) * 8,
            _ => 0,
        }
    }

    /// Whether `pfn` is kept (false outside the RAM the map was built for).
    pub fn keep(&self, pfn: u64) -> bool {
        let Some(i) = pfn.checked_sub(self.start) else { return false };
        self.words.get((i / 64) as usize).is_some_and(|w| w >> (i % 64) & 1 != 0)
    }

    /// Pages kept.
    pub fn kept(&self) -> u64 {
        self.kept
    }

    /// Leaves `pfn` out; false when it was not kept.
    pub fn drop_page(&mut self, pfn: u64) -> bool {
        let Some(i) = pfn.checked_sub(self.start) else { return false };
        let Some(w) = self.words.get_mut(crate::to_usize(i / 64)) else { return false };
        let bit = 1u64 << (i % 64);
        if *w & bit == 0 {
            return false;
        }
        *w &= !bit;
        self.kept -= 1;
        true
    }
}

impl<P: PhysRead> LevelFilter<P> {
    /// makedumpfile's `-e`: leaves out of `map` the vmemmap pages whose struct pages all
    /// describe pages `map` leaves out; returns how many.
    pub fn exclude_vmemmap(&mut self, map: &mut KeepMap) -> u64 {
        let pages = self.classifier_mut().vmemmap_pages_describing_only(|pfn| !map.keep(pfn));
        pages.into_iter().filter(|&p| map.drop_page(p)).count() as u64
    }

    /// Classifies every page of `ram` (sorted, non-overlapping PFN ranges) in
    /// one pass, a cycle at a time, and returns the pages the level keeps.
    /// `None` when the map would span more than [`KEEP_MAP_MAX_PAGES`]; then
    /// ask [`keep`](Self::keep) page by page instead. The per-class counts
    /// ([`counts`](Self::counts)) cover all of `ram` afterwards.
    pub fn decide_all(&mut self, ram: &[Range<u64>]) -> Option<KeepMap> {
        let (first, last) = (ram.first()?.start, ram.last()?.end);
        let start = first / 64 * 64;
        if last - start > KEEP_MAP_MAX_PAGES {
            return None;
        }
        let mut words = vec![0u64; crate::to_usize((last - start).div_ceil(64))];
        let mut kept = 0;
        for r in ram {
            let mut pfn = r.start;
            while pfn < r.end {
                // Classifies the cycle once (class() does it on the cycle's first PFN asked).
                self.class(pfn);
                let cycle_end = (self.cycle_start + CYCLE_PAGES).min(r.end);
                let level = self.level;
                for (j, class) in self.classes
                    [crate::to_usize(pfn - self.cycle_start)..crate::to_usize(cycle_end - self.cycle_start)]
                    .iter()
                    .enumerate()
                {
                    if !class.excluded_at(level) {
                        let i = pfn + j as u64 - start;
                        words[(i / 64) as usize] |= 1 << (i % 64);
                        kept += 1;
                    }
                }
                pfn = cycle_end;
            }
        }
        Some(KeepMap { start, words, kept })
    }
}
