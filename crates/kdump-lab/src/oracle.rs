//! An independent oracle for dump levels: the crashed kernel's own
//! `/proc/kpageflags` and `/proc/kpagecount`, snapshotted just before the crash.
//!
//! `kdump dump -d N` decides each page's class from the struct pages it finds
//! in the vmcore through VMCOREINFO. The kernel itself reports the same facts
//! through `/proc/kpageflags` (8 bytes of `KPF_*` bits per PFN, little-endian)
//! and `/proc/kpagecount` (the page's reference count). [`PageFlagsSnapshot`]
//! turns such a snapshot into the makedumpfile-equivalent class of every PFN,
//! and [`compare_level`] checks a dump's kept PFNs at a level against it:
//!
//! - free: `KPF_BUDDY`, which the kernel sets on every page of a free buddy
//!   block (`PageBuddy` on the block's first page, `is_free_buddy_page` on the
//!   others, since Linux 4.x);
//! - cache: (`KPF_LRU`, or `KPF_SWAPCACHE` with `KPF_SWAPBACKED`) and not
//!   `KPF_ANON`; with `KPF_PRIVATE` (bit 35) it is private cache (level 4 only);
//! - user: `KPF_ANON` or `KPF_HUGE` (hugetlbfs);
//! - hwpoison, offline: `KPF_HWPOISON`, `KPF_OFFLINE`.
//!
//! Slab and page-table pages are kernel memory whatever their other bits say
//! (on 6.10+ a slab's fields overlay `page.mapping`, and the kernel reports
//! `KPF_ANON` from that word). A compound tail takes its head's class: some
//! kernels (5.10) report LRU and PRIVATE on the head page only.
//!
//! The snapshot is taken an instant before the crash, so a few pages change
//! state in between (the snapshot files' own page cache, the `sync` and the
//! crash); [`LevelReport`] counts and lists the differences so that a test can
//! bound and explain them.

use std::collections::BTreeMap;
use std::ops::Range;

/// `KPF_*` bit numbers (include/uapi/linux/kernel-page-flags.h and fs/proc/page.c).
pub mod kpf {
    /// On an LRU list.
    pub const LRU: u32 = 5;
    /// A slab page.
    pub const SLAB: u32 = 7;
    /// In the buddy allocator (free).
    pub const BUDDY: u32 = 10;
    /// Anonymous (or KSM) memory.
    pub const ANON: u32 = 12;
    /// In the swap cache.
    pub const SWAPCACHE: u32 = 13;
    /// Backed by swap (anon or shmem).
    pub const SWAPBACKED: u32 = 14;
    /// First page of a compound page.
    pub const COMPOUND_HEAD: u32 = 15;
    /// Other pages of a compound page.
    pub const COMPOUND_TAIL: u32 = 16;
    /// A hugetlbfs page.
    pub const HUGE: u32 = 17;
    /// Hardware-poisoned.
    pub const HWPOISON: u32 = 19;
    /// No struct page for this PFN.
    pub const NOPAGE: u32 = 20;
    /// A transparent huge page (or large anon folio).
    pub const THP: u32 = 22;
    /// Logically offline.
    pub const OFFLINE: u32 = 23;
    /// A page table.
    pub const PGTABLE: u32 = 26;
    /// `PG_private` (kernel-hacking bit).
    pub const PRIVATE: u32 = 35;
}

// The level bits and the classes below repeat `kdump_kernel::pages::{level, PageClass}` on
// purpose: an oracle that imported the code it checks would agree with any bug in it. They
// are makedumpfile's published values, written down a second time from its documentation.

/// Dump-level bits (makedumpfile `-d`).
const CACHE: u32 = 2;
const CACHE_PRIVATE: u32 = 4;
const USER: u32 = 8;
const FREE: u32 = 16;

/// What the kernel said a page was, in makedumpfile's classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OracleClass {
    /// Everything no level drops (kernel data, slab, page tables, pcp-list pages...).
    Kernel,
    /// Page cache without `PG_private` (levels 2 and 4 drop it).
    Cache,
    /// Page cache with `PG_private` (level 4).
    CachePrivate,
    /// Anonymous or hugetlbfs (level 8).
    User,
    /// In the buddy allocator (level 16).
    Free,
    /// Hardware-poisoned (dropped by every struct-page level).
    Hwpoison,
    /// Logically offline (dropped by every struct-page level).
    Offline,
    /// Not in the snapshot (beyond its end, or `KPF_NOPAGE`).
    Unknown,
}

impl OracleClass {
    /// Whether a page of this class is dropped at `level` (bit 1, zero pages,
    /// is decided by content, see [`compare_level`]).
    pub fn dropped_at(self, level: u32) -> bool {
        let struct_pages = level & (CACHE | CACHE_PRIVATE | USER | FREE) != 0;
        match self {
            OracleClass::Cache => level & (CACHE | CACHE_PRIVATE) != 0,
            OracleClass::CachePrivate => level & CACHE_PRIVATE != 0,
            OracleClass::User => level & USER != 0,
            OracleClass::Free => level & FREE != 0,
            OracleClass::Hwpoison | OracleClass::Offline => struct_pages,
            OracleClass::Kernel | OracleClass::Unknown => false,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            OracleClass::Kernel => "kernel",
            OracleClass::Cache => "cache",
            OracleClass::CachePrivate => "cache_private",
            OracleClass::User => "user",
            OracleClass::Free => "free",
            OracleClass::Hwpoison => "hwpoison",
            OracleClass::Offline => "offline",
            OracleClass::Unknown => "unknown",
        }
    }
}

/// `/proc/kpageflags` and `/proc/kpagecount` of one moment.
#[derive(Debug, Clone)]
pub struct PageFlagsSnapshot {
    flags: Vec<u64>,
    counts: Vec<u64>,
}

fn words(bytes: &[u8], what: &str) -> Result<Vec<u64>, String> {
    if !bytes.len().is_multiple_of(8) {
        return Err(format!("{what}: {} bytes is not a whole number of 8-byte entries", bytes.len()));
    }
    Ok(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

fn has(flags: u64, bit: u32) -> bool {
    flags >> bit & 1 != 0
}

impl PageFlagsSnapshot {
    /// Parses the two files (8 bytes per PFN from PFN 0 each). `kpagecount` may be
    /// empty; when given it must cover as many PFNs as `kpageflags`.
    pub fn parse(kpageflags: &[u8], kpagecount: &[u8]) -> Result<Self, String> {
        let flags = words(kpageflags, "kpageflags")?;
        let counts = words(kpagecount, "kpagecount")?;
        if !counts.is_empty() && counts.len() != flags.len() {
            return Err(format!("kpagecount covers {} PFNs, kpageflags {}", counts.len(), flags.len()));
        }
        Ok(Self { flags, counts })
    }

    /// PFNs covered (the kernel writes up to `max_pfn`).
    pub fn len(&self) -> u64 {
        self.flags.len() as u64
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// The `KPF_*` bits of `pfn`.
    pub fn flags(&self, pfn: u64) -> u64 {
        self.flags.get(pfn as usize).copied().unwrap_or(1 << kpf::NOPAGE)
    }

    /// The reference count of `pfn`, if kpagecount was given.
    pub fn count(&self, pfn: u64) -> Option<u64> {
        self.counts.get(pfn as usize).copied()
    }

    /// The class of every PFN in the snapshot (index = PFN).
    pub fn classes(&self) -> Vec<OracleClass> {
        let mut out = Vec::with_capacity(self.flags.len());
        let mut head: Option<usize> = None;
        for (pfn, &f) in self.flags.iter().enumerate() {
            if has(f, kpf::COMPOUND_HEAD) && !has(f, kpf::COMPOUND_TAIL) {
                head = Some(pfn);
            } else if !has(f, kpf::COMPOUND_TAIL) {
                head = None;
            }
            // A tail takes its head's flags (when a head precedes it).
            let hf = match head {
                Some(h) if has(f, kpf::COMPOUND_TAIL) => self.flags[h],
                _ => f,
            };
            out.push(Self::class_of(f, hf));
        }
        out
    }

    /// The class of a page with bits `f` whose compound head has bits `hf` (`f` itself for a head or base page).
    fn class_of(f: u64, hf: u64) -> OracleClass {
        if has(f, kpf::NOPAGE) {
            return OracleClass::Unknown;
        }
        if has(f, kpf::BUDDY) {
            return OracleClass::Free;
        }
        let kernel_type = has(hf, kpf::SLAB) || has(hf, kpf::PGTABLE) || has(hf, kpf::OFFLINE);
        let anon = has(hf, kpf::ANON) && !kernel_type;
        let cache = (has(hf, kpf::LRU) || (has(hf, kpf::SWAPCACHE) && has(hf, kpf::SWAPBACKED))) && !kernel_type;
        if cache && !anon {
            return if has(hf, kpf::PRIVATE) { OracleClass::CachePrivate } else { OracleClass::Cache };
        }
        if anon || has(hf, kpf::HUGE) {
            return OracleClass::User;
        }
        if has(f, kpf::HWPOISON) || has(hf, kpf::HWPOISON) {
            return OracleClass::Hwpoison;
        }
        if has(hf, kpf::OFFLINE) {
            return OracleClass::Offline;
        }
        OracleClass::Kernel
    }

    /// Pages per class over `ram`.
    pub fn census(&self, classes: &[OracleClass], ram: &[Range<u64>]) -> BTreeMap<OracleClass, u64> {
        let mut m = BTreeMap::new();
        for pfn in ram.iter().flat_map(|r| r.clone()) {
            *m.entry(classes.get(pfn as usize).copied().unwrap_or(OracleClass::Unknown)).or_insert(0) += 1;
        }
        m
    }
}

/// A page on which the dump and the oracle disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// The PFN.
    pub pfn: u64,
    /// The oracle's class.
    pub class: OracleClass,
    /// Its `KPF_*` bits in the snapshot.
    pub flags: u64,
    /// Its reference count in the snapshot.
    pub count: Option<u64>,
}

/// One level's comparison of a dump with the oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelReport {
    /// The dump level.
    pub level: u32,
    /// RAM pages compared.
    pub ram_pages: u64,
    /// Pages the dump keeps.
    pub kept_by_dump: u64,
    /// Pages the oracle keeps at this level.
    pub kept_by_oracle: u64,
    /// (a) Pages the dump drops that the oracle keeps (should be ~0; each one explained).
    pub dropped_but_kept: Vec<Disagreement>,
    /// (b) Pages the dump keeps that the oracle drops (state changed after the snapshot).
    pub kept_but_droppable: Vec<Disagreement>,
}

impl LevelReport {
    /// Pages the dump keeps that the oracle drops, per oracle class.
    pub fn kept_but_droppable_by_class(&self) -> BTreeMap<OracleClass, u64> {
        let mut m = BTreeMap::new();
        for d in &self.kept_but_droppable {
            *m.entry(d.class).or_insert(0) += 1;
        }
        m
    }

    /// One line for a report.
    pub fn summary(&self) -> String {
        let extra: Vec<String> =
            self.kept_but_droppable_by_class().iter().map(|(c, n)| format!("{} {n}", c.name())).collect();
        format!(
            "-d {:2}: dump keeps {:6} of {} pages, oracle keeps {:6}; dropped but kept by oracle: {}; \
             kept but droppable: {} ({})",
            self.level,
            self.kept_by_dump,
            self.ram_pages,
            self.kept_by_oracle,
            self.dropped_but_kept.len(),
            self.kept_but_droppable.len(),
            extra.join(", ")
        )
    }
}

/// Compares the PFNs a dump at `level` keeps (`kept`) with what the oracle keeps,
/// over the RAM ranges `ram`. With level bit 1, `zero(pfn)` says whether the page's
/// contents in the raw vmcore are all zero: such pages are dropped, exactly.
pub fn compare_level(
    snapshot: &PageFlagsSnapshot,
    classes: &[OracleClass],
    level: u32,
    ram: &[Range<u64>],
    kept: &dyn Fn(u64) -> bool,
    zero: &dyn Fn(u64) -> bool,
) -> LevelReport {
    let mut report = LevelReport {
        level,
        ram_pages: 0,
        kept_by_dump: 0,
        kept_by_oracle: 0,
        dropped_but_kept: Vec::new(),
        kept_but_droppable: Vec::new(),
    };
    for pfn in ram.iter().flat_map(|r| r.clone()) {
        report.ram_pages += 1;
        let class = classes.get(pfn as usize).copied().unwrap_or(OracleClass::Unknown);
        let zero_dropped = level & 1 != 0 && zero(pfn);
        let oracle_keeps = !class.dropped_at(level) && !zero_dropped;
        let ours = kept(pfn);
        report.kept_by_dump += u64::from(ours);
        report.kept_by_oracle += u64::from(oracle_keeps);
        let disagreement = || Disagreement { pfn, class, flags: snapshot.flags(pfn), count: snapshot.count(pfn) };
        if oracle_keeps && !ours {
            report.dropped_but_kept.push(disagreement());
        } else if ours && !oracle_keeps {
            report.kept_but_droppable.push(disagreement());
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(flags: &[u64]) -> PageFlagsSnapshot {
        let bytes: Vec<u8> = flags.iter().flat_map(|f| f.to_le_bytes()).collect();
        PageFlagsSnapshot::parse(&bytes, &[]).unwrap()
    }

    const fn b(bit: u32) -> u64 {
        1 << bit
    }

    #[test]
    fn classes_follow_makedumpfiles_rules() {
        let s = snap(&[
            0,                                      // kernel
            b(kpf::BUDDY),                          // free
            b(kpf::LRU),                            // cache
            b(kpf::LRU) | b(kpf::PRIVATE),          // private cache
            b(kpf::LRU) | b(kpf::ANON),             // anon
            b(kpf::HUGE) | b(kpf::COMPOUND_HEAD),   // hugetlb head
            b(kpf::HUGE) | b(kpf::COMPOUND_TAIL),   // hugetlb tail
            b(kpf::SLAB) | b(kpf::ANON),            // slab whose overlay looks anon
            b(kpf::LRU) | b(kpf::COMPOUND_HEAD),    // file folio head (5.10: LRU on head only)
            b(kpf::COMPOUND_TAIL),                  // its tail
            b(kpf::OFFLINE),                        // offline
            b(kpf::NOPAGE),                         // hole
            b(kpf::SWAPCACHE) | b(kpf::SWAPBACKED), // swap cache, not anon
        ]);
        use OracleClass::*;
        assert_eq!(
            s.classes(),
            [Kernel, Free, Cache, CachePrivate, User, User, User, Kernel, Cache, Cache, Offline, Unknown, Cache]
        );
    }

    #[test]
    fn a_tail_without_a_head_before_it_is_judged_alone() {
        let s = snap(&[b(kpf::COMPOUND_TAIL) | b(kpf::ANON), b(kpf::LRU), b(kpf::COMPOUND_TAIL)]);
        assert_eq!(s.classes(), [OracleClass::User, OracleClass::Cache, OracleClass::Kernel]);
    }

    #[test]
    fn rejects_torn_files() {
        assert!(PageFlagsSnapshot::parse(&[0; 12], &[]).is_err());
        assert!(PageFlagsSnapshot::parse(&[0; 16], &[0; 8]).is_err());
    }

    #[test]
    fn compare_counts_both_directions_and_zero_pages_by_content() {
        let s = snap(&[0, b(kpf::BUDDY), b(kpf::LRU), 0]);
        let classes = s.classes();
        let ram = vec![0..2, 2..4];
        // The dump drops PFN 0 (kernel: wrong) and keeps PFN 1 (free: droppable).
        let kept = |pfn: u64| pfn != 0;
        let r = compare_level(&s, &classes, 16, &ram, &kept, &|_| false);
        assert_eq!((r.kept_by_dump, r.kept_by_oracle), (3, 3));
        assert_eq!(r.dropped_but_kept.iter().map(|d| d.pfn).collect::<Vec<_>>(), [0]);
        assert_eq!(r.kept_but_droppable_by_class().get(&OracleClass::Free), Some(&1));
        // Level 1: PFN 3 is zero by content, so the oracle drops it; the dump keeps it.
        let r = compare_level(&s, &classes, 1, &ram, &|_| true, &|pfn| pfn == 3);
        assert_eq!(r.kept_by_oracle, 3);
        assert_eq!(r.kept_but_droppable_by_class().get(&OracleClass::Kernel), Some(&1));
    }
}
