//! Page classification for dump levels, from VMCOREINFO only.
//!
//! makedumpfile's dump level is a bitmask of page classes to leave out:
//! 1 zero pages (decided by content, not here), 2 page cache without
//! `PG_private`, 4 all page cache, 8 user (anonymous and hugetlbfs) pages,
//! 16 free pages. Hardware-poisoned and logically offline pages are left out
//! whenever the struct-page pass runs, as makedumpfile does.
//!
//! The classes come from each page's `struct page`, found through the
//! SPARSEMEM `mem_section` table: `SYMBOL(mem_section)` is the array of root
//! pointers (SPARSEMEM_EXTREME) or of sections, each section's
//! `section_mem_map` is the address of its struct pages minus the section's
//! first PFN times `SIZE(page)`, with flag bits in the low 5 bits. The struct
//! pages live in the vmemmap and are read through the page-table walk of
//! [`KernelMemory`]. Every layout fact is a VMCOREINFO key: a missing key
//! disables the classes that need it, and [`PageClassifier::limits`] names
//! the key and what is kept because of it.
//!
//! Memory is bounded: PFNs are classified in cycles ([`CYCLE_PAGES`]) into a
//! caller's buffer of one byte per page, and struct pages are read
//! [`PAGE_BATCH`] at a time. See [`classifier_memory_bytes`].
//!
//! The per-page decision follows makedumpfile (`__exclude_unnecessary_pages`),
//! first match wins: compound tail pages are skipped (their head decides for
//! them), then free (buddy, `_mapcount == PAGE_BUDDY_MAPCOUNT_VALUE`, not slab,
//! `2^private` pages), cache without private, cache, user (`mapping & 1` on a
//! page that is not slab, or a hugetlb compound head), hwpoison, offline. A compound head that is
//! excluded takes its `2^order` pages with it.

use std::ops::Range;

use crate::memory::{KernelMemory, PhysRead};
use crate::vmcoreinfo::Vmcoreinfo;
use crate::{Error, Result};

mod keep;
mod usage;
pub use keep::{KEEP_MAP_MAX_PAGES, KeepMap};
pub use usage::MemUsage;

/// Struct pages read per batch (makedumpfile's `PGMM_CACHED`).
pub const PAGE_BATCH: u64 = 512;

/// PFNs classified per cycle by [`LevelFilter`]: 1 GiB of 4 KiB pages, one byte each.
pub const CYCLE_PAGES: u64 = 1 << 18;

/// Dump-level bits (makedumpfile `-d`).
pub mod level {
    /// Zero pages (decided by the page's content).
    pub const ZERO: u32 = 1;
    /// Page cache without `PG_private`.
    pub const CACHE: u32 = 2;
    /// Page cache with or without `PG_private`.
    pub const CACHE_PRIVATE: u32 = 4;
    /// User pages: anonymous and hugetlbfs.
    pub const USER: u32 = 8;
    /// Free pages (buddy allocator).
    pub const FREE: u32 = 16;
    /// The bits that need struct pages.
    pub const STRUCT_PAGE_BITS: u32 = CACHE | CACHE_PRIVATE | USER | FREE;
}

/// What one page frame is, for dump filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum PageClass {
    /// Kept: kernel data, or nothing excludable was found (also compound tails whose head is kept).
    #[default]
    Kernel,
    /// Page cache without `PG_private` (excluded by level bits 2 and 4).
    Cache,
    /// Page cache with `PG_private` (level bit 4).
    CachePrivate,
    /// Anonymous or hugetlbfs pages (level bit 8).
    User,
    /// Free pages in the buddy allocator (level bit 16).
    Free,
    /// Hardware-poisoned (always excluded when the struct-page pass runs).
    Hwpoison,
    /// Logically offline, e.g. ballooned (always excluded when the struct-page pass runs).
    Offline,
    /// Not RAM (a hole).
    NotRam,
    /// The section has no struct pages (kept).
    NoMemMap,
    /// The struct pages could not be read from the dump (kept).
    Unreadable,
}

impl PageClass {
    /// Every class, in report order.
    pub const ALL: [PageClass; 10] = [
        PageClass::Kernel,
        PageClass::Cache,
        PageClass::CachePrivate,
        PageClass::User,
        PageClass::Free,
        PageClass::Hwpoison,
        PageClass::Offline,
        PageClass::NotRam,
        PageClass::NoMemMap,
        PageClass::Unreadable,
    ];

    /// Whether a page of this class is left out of a dump at `level` (bit 1, zero pages,
    /// is decided by content and not here).
    pub fn excluded_at(self, level: u32) -> bool {
        match self {
            PageClass::Cache => level & (level::CACHE | level::CACHE_PRIVATE) != 0,
            PageClass::CachePrivate => level & level::CACHE_PRIVATE != 0,
            PageClass::User => level & level::USER != 0,
            PageClass::Free => level & level::FREE != 0,
            PageClass::Hwpoison | PageClass::Offline => true,
            _ => false,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            PageClass::Kernel => "kernel",
            PageClass::Cache => "cache",
            PageClass::CachePrivate => "cache_private",
            PageClass::User => "user",
            PageClass::Free => "free",
            PageClass::Hwpoison => "hwpoison",
            PageClass::Offline => "offline",
            PageClass::NotRam => "not_ram",
            PageClass::NoMemMap => "no_mem_map",
            PageClass::Unreadable => "unreadable",
        }
    }
}

/// The heap a [`LevelFilter`] uses, in bytes, whatever the machine's size:
/// one byte per PFN of a cycle plus one batch of struct pages (`PAGE_BATCH + 1`
/// of `SIZE(page)` bytes). It does not grow with RAM: a 1 TiB machine (and a
/// 64 TiB one) needs `CYCLE_PAGES + 513 * 64` = 288 KiB with 64-byte struct pages.
pub fn classifier_memory_bytes(size_of_page: u64) -> u64 {
    CYCLE_PAGES + (PAGE_BATCH + 1) * size_of_page
}

/// Which classes the pass may assign (the level's bits, minus what keys are missing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// Free pages (level 16).
    pub free: bool,
    /// Cache without private (level 2).
    pub cache: bool,
    /// All cache (level 4).
    pub cache_private: bool,
    /// User pages (level 8).
    pub user: bool,
    /// Hugetlb heads count as user pages (needs the compound keys).
    pub hugetlb: bool,
    /// Hwpoison pages.
    pub hwpoison: bool,
    /// Offline pages.
    pub offline: bool,
}

/// Where a compound head's order or destructor is: in the page after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompoundInfo {
    /// Byte offsets (in the next struct page) of the order and the destructor id (4.16 .. 6.5).
    Bytes { order: Option<u64>, dtor: Option<u64> },
    /// Order in the low byte of the next page's flags; hugetlb flagged by `PG_hugetlb` there (6.6 .. 6.8).
    FlagsPgHugetlb(u32),
    /// Order in the low byte of the next page's flags; hugetlb when the head's
    /// `_mapcount` equals `PAGE_HUGETLB_MAPCOUNT_VALUE` (6.9+).
    FlagsMapcount(u32),
}

/// The struct page layout and flag numbers from VMCOREINFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructPage {
    /// `SIZE(page)`.
    pub size: u64,
    flags: u64,
    mapping: Option<u64>,
    mapcount: Option<u64>,
    private: Option<u64>,
    compound_head: Option<u64>,
    head_mask: Option<u64>,
    compound: Option<CompoundInfo>,
    hugetlb_dtor: Option<u64>,
    pg_lru: Option<u32>,
    pg_private: Option<u32>,
    pg_swapcache: Option<u32>,
    pg_swapbacked: Option<u32>,
    pg_slab: Option<u32>,
    pg_hwpoison: Option<u32>,
    pg_buddy: Option<u32>,
    buddy_value: Option<u32>,
    offline_value: Option<u32>,
    slab_value: Option<u32>,
    max_order: Option<u64>,
}

fn bit_number(info: &Vmcoreinfo, name: &str) -> Option<u32> {
    info.number(name).ok().and_then(|v| u32::try_from(v).ok()).filter(|&b| b < 64)
}

fn mapcount_value(info: &Vmcoreinfo, name: &str) -> Option<u32> {
    // `_mapcount` is an int compared as such: store its 32-bit pattern.
    info.number(name).ok().and_then(|v| i32::try_from(v).ok()).map(|v| v as u32)
}

/// The SPARSEMEM `mem_section` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMem {
    /// `SYMBOL(mem_section)` (possibly re-read through the pointer, see [`PageClassifier::new`]).
    pub mem_section: u64,
    /// SPARSEMEM_EXTREME: `mem_section` is an array of root pointers.
    pub extreme: bool,
    /// Sections per root (`PAGE_SIZE / SIZE(mem_section)` when extreme, else 1).
    pub sections_per_root: u64,
    /// `SIZE(mem_section)`.
    pub section_size: u64,
    /// `OFFSET(mem_section.section_mem_map)`.
    pub map_offset: u64,
    /// `SECTION_SIZE_BITS - PAGE_SHIFT`.
    pub pfn_section_shift: u32,
}

const SECTION_MARKED_PRESENT: u64 = 1;
const SECTION_MAP_MASK: u64 = !((1 << 5) - 1);

impl SparseMem {
    /// Reads the memory-model keys. Missing ones are named in the error.
    pub fn from_vmcoreinfo(info: &Vmcoreinfo, page_size: u64) -> Result<Self> {
        let mut missing = Vec::new();
        let mut get = |key: &str, v: Result<u64>| v.map_err(|_| missing.push(key.to_string())).ok();
        let symbol = get("SYMBOL(mem_section)", info.symbol("mem_section"));
        let length = get("LENGTH(mem_section)", info.length("mem_section"));
        let section_size = get("SIZE(mem_section)", info.size("mem_section"));
        let map_offset = get("OFFSET(mem_section.section_mem_map)", info.offset("mem_section.section_mem_map"));
        let section_bits = get("NUMBER(SECTION_SIZE_BITS)", info.number("SECTION_SIZE_BITS").map(|v| v as u64));
        let physmem_bits = get("NUMBER(MAX_PHYSMEM_BITS)", info.number("MAX_PHYSMEM_BITS").map(|v| v as u64));
        let (
            Some(mem_section),
            Some(length),
            Some(section_size),
            Some(map_offset),
            Some(section_bits),
            Some(physmem_bits),
        ) = (symbol, length, section_size, map_offset, section_bits, physmem_bits)
        else {
            return Err(Error::MissingKey(missing.join(", ")));
        };
        let page_shift = page_size.trailing_zeros() as u64;
        if !page_size.is_power_of_two()
            || section_size == 0
            || section_size > page_size
            || !(page_shift..64).contains(&section_bits)
            || !(section_bits..64).contains(&physmem_bits)
        {
            return Err(Error::Corrupt(format!(
                "memory model: SECTION_SIZE_BITS={section_bits} MAX_PHYSMEM_BITS={physmem_bits} \
                 SIZE(mem_section)={section_size} PAGESIZE={page_size} are inconsistent"
            )));
        }
        let nr_mem_sections = 1u64 << (physmem_bits - section_bits);
        let per_root = page_size / section_size;
        // As makedumpfile: extreme when LENGTH(mem_section) is the number of roots.
        let extreme = length == nr_mem_sections.div_ceil(per_root) && length != nr_mem_sections;
        Ok(Self {
            mem_section,
            extreme,
            sections_per_root: if extreme { per_root } else { 1 },
            section_size,
            map_offset,
            pfn_section_shift: u32::try_from(section_bits - page_shift).unwrap_or(u32::MAX), /* below 64: checked above */
        })
    }

    /// Pages per section.
    pub fn pages_per_section(&self) -> u64 {
        1 << self.pfn_section_shift
    }

    /// The address of section `nr`'s struct pages (the page of its first PFN),
    /// or `None` when the section is absent or has no struct pages.
    pub fn section_mem_map<P: PhysRead>(&self, mem: &mut KernelMemory<P>, nr: u64) -> Result<Option<u64>> {
        let section = if self.extreme {
            let root = mem.read_u64(self.mem_section.wrapping_add((nr / self.sections_per_root) * 8))?;
            if root == 0 {
                return Ok(None);
            }
            root.wrapping_add((nr % self.sections_per_root) * self.section_size)
        } else {
            self.mem_section.wrapping_add(nr.wrapping_mul(self.section_size))
        };
        let coded = mem.read_u64(section.wrapping_add(self.map_offset))?;
        if coded & SECTION_MARKED_PRESENT == 0 {
            return Ok(None);
        }
        Ok(Some(coded & SECTION_MAP_MASK))
    }
}

impl StructPage {
    /// Reads the struct page keys; `SIZE(page)` and `OFFSET(page.flags)` are required.
    pub fn from_vmcoreinfo(info: &Vmcoreinfo) -> Result<Self> {
        let size = info.size("page")?;
        if !(8..=4096).contains(&size) {
            return Err(Error::BadValue { key: "SIZE(page)".into(), value: size.to_string() });
        }
        let flags = info.offset("page.flags")?;
        let off = |m: &str| info.offset(m).ok();
        let hugetlb_dtor = info.number("HUGETLB_PAGE_DTOR").ok().map(|v| v as u64);
        let compound = if let Some(v) = mapcount_value(info, "PAGE_HUGETLB_MAPCOUNT_VALUE") {
            Some(CompoundInfo::FlagsMapcount(v))
        } else if let Some(b) = bit_number(info, "PG_hugetlb") {
            Some(CompoundInfo::FlagsPgHugetlb(b))
        } else {
            // Linux 6.3+ folio offsets are from the head; 4.16..6.2 page offsets from the next page.
            let next = |folio: &str, page: &str| {
                off(folio).and_then(|o| o.checked_sub(size)).or_else(|| off(page)).filter(|&o| o < size)
            };
            let order = next("folio._folio_order", "page.compound_order");
            let dtor = next("folio._folio_dtor", "page.compound_dtor");
            (order.is_some() || dtor.is_some()).then_some(CompoundInfo::Bytes { order, dtor })
        };
        let sp = Self {
            size,
            flags,
            mapping: off("page.mapping"),
            mapcount: off("page._mapcount"),
            private: off("page.private"),
            // 7.1 renamed it `compound_info`. Bit 0 still marks a tail in both encodings
            // (head address | 1, or with HVO and a power-of-two struct page an address
            // mask | 1); the rest is never followed: a head decides for its 2^order pages.
            compound_head: off("page.compound_head").or_else(|| off("page.compound_info")),
            head_mask: info.number("PG_head_mask").ok().map(|v| v as u64),
            compound,
            hugetlb_dtor,
            pg_lru: bit_number(info, "PG_lru"),
            pg_private: bit_number(info, "PG_private"),
            pg_swapcache: bit_number(info, "PG_swapcache"),
            pg_swapbacked: bit_number(info, "PG_swapbacked"),
            pg_slab: bit_number(info, "PG_slab"),
            pg_hwpoison: bit_number(info, "PG_hwpoison"),
            pg_buddy: bit_number(info, "PG_buddy"),
            buddy_value: mapcount_value(info, "PAGE_BUDDY_MAPCOUNT_VALUE"),
            offline_value: mapcount_value(info, "PAGE_OFFLINE_MAPCOUNT_VALUE"),
            slab_value: mapcount_value(info, "PAGE_SLAB_MAPCOUNT_VALUE"),
            max_order: info.length("zone.free_area").ok(),
        };
        for (name, o, w) in [
            ("OFFSET(page.flags)", Some(sp.flags), 8),
            ("OFFSET(page.mapping)", sp.mapping, 8),
            ("OFFSET(page._mapcount)", sp.mapcount, 4),
            ("OFFSET(page.private)", sp.private, 8),
            ("OFFSET(page.compound_head)", sp.compound_head, 8),
        ] {
            if let Some(o) = o
                && o.checked_add(w).is_none_or(|end| end > size)
            {
                return Err(Error::BadValue { key: name.to_string(), value: format!("{o} (SIZE(page)={size})") });
            }
        }
        Ok(sp)
    }

    /// The classes `level` asks for that these keys allow, and for each class
    /// that cannot be decided, the missing keys and what is kept instead.
    pub fn rules(&self, level: u32) -> (Rules, Vec<String>) {
        let mut notes = Vec::new();
        let mut need = |what: &str, keys: &[(&str, bool)]| {
            let missing: Vec<&str> = keys.iter().filter(|(_, ok)| !ok).map(|(k, _)| *k).collect();
            if missing.is_empty() {
                true
            } else {
                notes.push(format!("{what} are kept: VMCOREINFO has no {}", missing.join(", ")));
                false
            }
        };
        let head = self.compound_head.is_some();
        let mut r = Rules::default();
        if level & level::FREE != 0 {
            r.free = need(
                "free pages",
                &[
                    ("OFFSET(page.compound_head)", head),
                    ("OFFSET(page.private)", self.private.is_some()),
                    ("OFFSET(page._mapcount)", self.mapcount.is_some()),
                    ("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", self.buddy_value.is_some() || self.pg_buddy.is_some()),
                ],
            );
        }
        if level & (level::CACHE | level::CACHE_PRIVATE) != 0 {
            let ok = need(
                "page-cache pages",
                &[
                    ("OFFSET(page.compound_head)", head),
                    ("OFFSET(page.mapping)", self.mapping.is_some()),
                    ("NUMBER(PG_lru)", self.pg_lru.is_some()),
                    ("NUMBER(PG_private)", self.pg_private.is_some()),
                    ("NUMBER(PG_swapcache)", self.pg_swapcache.is_some()),
                ],
            );
            r.cache = ok && level & level::CACHE != 0;
            r.cache_private = ok && level & level::CACHE_PRIVATE != 0;
        }
        if level & level::USER != 0 {
            // Without a slab key a slab page whose overlay sets bit 0 of `mapping` (6.12) would
            // pass for anonymous memory: keep user pages rather than guess.
            let slab_known = self.pg_slab.is_some() || (self.slab_value.is_some() && self.mapcount.is_some());
            r.user = need(
                "user pages",
                &[
                    ("OFFSET(page.compound_head)", head),
                    ("OFFSET(page.mapping)", self.mapping.is_some()),
                    ("NUMBER(PG_slab) or NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)", slab_known),
                ],
            );
            let dtor_ok = match self.compound {
                Some(CompoundInfo::Bytes { dtor, .. }) => dtor.is_some() && self.hugetlb_dtor.is_some(),
                Some(_) => true,
                None => false,
            };
            r.hugetlb = r.user
                && need(
                    "hugetlbfs pages",
                    &[
                        ("NUMBER(PG_head_mask)", self.head_mask.is_some()),
                        ("OFFSET(page.compound_dtor) with NUMBER(HUGETLB_PAGE_DTOR), or NUMBER(PG_hugetlb)", dtor_ok),
                    ],
                );
        }
        if level & level::STRUCT_PAGE_BITS != 0 || self.pg_hwpoison.is_some() {
            // NUMBER(PG_hwpoison) exists only with CONFIG_MEMORY_FAILURE: without it the
            // kernel cannot poison pages, so its absence keeps nothing worth a warning.
            r.hwpoison =
                self.pg_hwpoison.is_some() && need("hardware-poisoned pages", &[("OFFSET(page.compound_head)", head)]);
            r.offline = need(
                "offline pages",
                &[
                    ("OFFSET(page.compound_head)", head),
                    ("OFFSET(page._mapcount)", self.mapcount.is_some()),
                    ("NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)", self.offline_value.is_some()),
                ],
            );
        }
        if level & level::STRUCT_PAGE_BITS != 0
            && (r.free || r.cache || r.cache_private || r.user)
            && (self.head_mask.is_none() || self.compound.is_none())
        {
            notes.push(
                "compound pages (huge pages, large folios) are judged by their first page only and their other \
                 pages kept: VMCOREINFO has no NUMBER(PG_head_mask) or compound order key"
                    .to_string(),
            );
        }
        (r, notes)
    }
}

fn u64_at(b: &[u8], off: u64) -> u64 {
    let o = crate::to_usize(off);
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], off: u64) -> u32 {
    let o = crate::to_usize(off);
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn bit(flags: u64, nr: Option<u32>) -> bool {
    nr.is_some_and(|n| flags >> n & 1 != 0)
}

/// What went wrong but did not stop classification (the pages concerned are kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// Buddy pages whose order is not below `LENGTH(zone.free_area)`.
    pub bad_free_orders: u64,
    /// RAM pages whose struct pages could not be read.
    pub unreadable_pages: u64,
    /// The first read error.
    pub first_error: Option<String>,
}

/// Classifies page frames from their struct pages; see the [module docs](self).
#[derive(Debug)]
pub struct PageClassifier<P> {
    mem: KernelMemory<P>,
    model: SparseMem,
    page: StructPage,
    rules: Rules,
    limits: Vec<String>,
    ram: Vec<Range<u64>>,
    /// A compound or buddy block that runs past the last classified PFN: (end, class).
    pending: Option<(u64, PageClass)>,
    /// Next PFN `classify` expects (cycles must come in increasing order).
    next_pfn: u64,
    batch: Vec<u8>,
    /// The PFNs whose struct pages are in `batch`.
    batch_pfns: Range<u64>,
    section: Option<(u64, Option<u64>)>,
    anomalies: Anomalies,
}

impl<P: PhysRead> PageClassifier<P> {
    /// Prepares classification at `level` for the RAM in `ram` (sorted PFN ranges).
    /// Fails, naming the keys, when the memory model or struct page cannot be located at all.
    /// `SYMBOL(mem_section)` is the root array since 4.15; older SPARSEMEM_EXTREME kernels
    /// give the address of a pointer to it, which is tried when no section validates.
    pub fn new(mut mem: KernelMemory<P>, info: &Vmcoreinfo, level: u32, ram: Vec<Range<u64>>) -> Result<Self> {
        let page_size = info.page_size()?;
        let mut model = SparseMem::from_vmcoreinfo(info, page_size)?;
        let page = StructPage::from_vmcoreinfo(info)?;
        let (rules, limits) = page.rules(level);
        if model.extreme && !Self::validates(&mut mem, &model, &page, &ram) {
            let saved = model.mem_section;
            if let Ok(ptr) = mem.read_u64(saved) {
                model.mem_section = ptr;
                if !Self::validates(&mut mem, &model, &page, &ram) {
                    model.mem_section = saved;
                }
            }
        }
        Ok(Self {
            mem,
            model,
            batch: Vec::with_capacity(crate::to_usize((PAGE_BATCH + 1) * page.size)),
            page,
            rules,
            limits,
            ram,
            pending: None,
            next_pfn: 0,
            batch_pfns: 0..0,
            section: None,
            anomalies: Anomalies::default(),
        })
    }

    /// Whether the first RAM PFN's section has a present mem_map that can be read.
    fn validates(mem: &mut KernelMemory<P>, model: &SparseMem, page: &StructPage, ram: &[Range<u64>]) -> bool {
        let Some(first) = ram.first().map(|r| r.start) else { return false };
        let nr = first >> model.pfn_section_shift;
        match model.section_mem_map(mem, nr) {
            Ok(Some(map)) => {
                let addr = map.wrapping_add(first.wrapping_mul(page.size));
                mem.read_u64(addr).is_ok()
            }
            _ => false,
        }
    }

    /// The physical pages of the vmemmap (struct pages) that describe only pages `dropped`
    /// says the dump leaves out: what makedumpfile's `-e` leaves out, at the finer grain of
    /// one vmemmap page (makedumpfile takes runs of at least 128 PFNs). A vmemmap page that
    /// also describes a kept page or a page not in the dump, or lies at the edge of sections
    /// with struct pages, is not listed; nor is one whose address does not translate.
    pub fn vmemmap_pages_describing_only(&mut self, dropped: impl Fn(u64) -> bool) -> Vec<u64> {
        const PAGE: u64 = 4096;
        let size = self.page.size;
        // Runs of sections whose struct pages are one array (the same decoded map: the
        // vmemmap is virtually contiguous), as PFN ranges with that map.
        let mut runs: Vec<(Range<u64>, u64)> = Vec::new();
        let ranges = self.ram.clone();
        for r in &ranges {
            let mut nr = r.start >> self.model.pfn_section_shift;
            while nr << self.model.pfn_section_shift < r.end {
                let (sec_start, sec_end) =
                    (nr << self.model.pfn_section_shift, (nr + 1) << self.model.pfn_section_shift);
                nr += 1;
                let Ok(Some(map)) = self.model.section_mem_map(&mut self.mem, nr - 1) else { continue };
                match runs.last_mut() {
                    Some((run, m)) if *m == map && run.end >= sec_start => run.end = run.end.max(sec_end),
                    Some((run, _)) if run.end > sec_start => {}
                    _ => runs.push((sec_start..sec_end, map)),
                }
            }
        }
        let mut out = Vec::new();
        for (run, map) in runs {
            let first = map.wrapping_add(run.start.wrapping_mul(size));
            let end = map.wrapping_add(run.end.wrapping_mul(size));
            let mut va = first.div_ceil(PAGE) * PAGE;
            while va.checked_add(PAGE).is_some_and(|e| e <= end) {
                let lo = va.wrapping_sub(map) / size;
                let hi = (va + PAGE - 1).wrapping_sub(map) / size;
                // Only pages the dump has, as makedumpfile: a hole's struct pages stay.
                if (lo..=hi).all(|p| self.is_ram(p) && dropped(p))
                    && let Ok(paddr) = self.mem.phys_addr(va)
                {
                    out.push(paddr / PAGE);
                }
                va += PAGE;
            }
        }
        out
    }

    /// The rules in effect.
    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// Classes that cannot be filtered and why (missing VMCOREINFO keys).
    pub fn limits(&self) -> &[String] {
        &self.limits
    }

    /// What went wrong on the way (pages concerned were kept).
    pub fn anomalies(&self) -> &Anomalies {
        &self.anomalies
    }

    /// The kernel memory underneath.
    pub fn memory(&mut self) -> &mut KernelMemory<P> {
        &mut self.mem
    }

    fn is_ram(&self, pfn: u64) -> bool {
        let i = self.ram.partition_point(|r| r.end <= pfn);
        self.ram.get(i).is_some_and(|r| r.start <= pfn)
    }

    fn any_ram(&self, range: Range<u64>) -> bool {
        let i = self.ram.partition_point(|r| r.end <= range.start);
        self.ram.get(i).is_some_and(|r| r.start < range.end)
    }

    /// Classifies PFNs `start .. start + out.len()`. Calls must cover increasing,
    /// non-overlapping ranges (a block that starts in one range and ends in the
    /// next is carried over); a range before the last one restarts without carry.
    pub fn classify(&mut self, start: u64, out: &mut [PageClass]) {
        let end = start + out.len() as u64;
        if start < self.next_pfn {
            self.pending = None;
        }
        self.next_pfn = end;
        out.fill(PageClass::Kernel);
        let mut pfn = start;
        if let Some((pend, class)) = self.pending.take()
            && pend > start
        {
            let upto = pend.min(end);
            out[..crate::to_usize(upto - start)].fill(class);
            pfn = upto;
            if pend > end {
                self.pending = Some((pend, class));
            }
        }
        let any = self.rules != Rules::default();
        while any && pfn < end {
            let nr = pfn >> self.model.pfn_section_shift;
            let sec_end = ((nr + 1) << self.model.pfn_section_shift).min(end);
            if !self.any_ram(pfn..sec_end) {
                pfn = sec_end;
                continue;
            }
            let map = match self.section {
                Some((n, map)) if n == nr => map,
                _ => {
                    let map = match self.model.section_mem_map(&mut self.mem, nr) {
                        Ok(m) => m,
                        Err(e) => {
                            self.unreadable(pfn..sec_end, out, start, e);
                            pfn = sec_end;
                            continue;
                        }
                    };
                    self.section = Some((nr, map));
                    map
                }
            };
            let Some(map) = map else {
                out[crate::to_usize(pfn - start)..crate::to_usize(sec_end - start)].fill(PageClass::NoMemMap);
                pfn = sec_end;
                continue;
            };
            let sec_hard_end = (nr + 1) << self.model.pfn_section_shift;
            while pfn < sec_end {
                if !self.is_ram(pfn) {
                    pfn += 1;
                    continue;
                }
                if !self.batch_pfns.contains(&pfn) {
                    // Up to the next batch boundary (and one more page for a head's
                    // order, unless the section ends there).
                    let bend = (pfn / PAGE_BATCH + 1) * PAGE_BATCH;
                    let read_end = (bend + 1).min(sec_hard_end);
                    let n = (read_end - pfn) * self.page.size;
                    self.batch.resize(crate::to_usize(n), 0);
                    let addr = map.wrapping_add(pfn.wrapping_mul(self.page.size));
                    if let Err(e) = self.mem.read(addr, &mut self.batch) {
                        let stop = bend.min(sec_end);
                        self.unreadable(pfn..stop, out, start, e);
                        self.batch_pfns = 0..0;
                        pfn = stop;
                        continue;
                    }
                    // The extra struct page is only looked at as a head's successor.
                    self.batch_pfns = pfn..read_end.min(bend);
                }
                let (class, nr_pages) = self.decide(pfn);
                let count = nr_pages.max(1);
                if class != PageClass::Kernel {
                    let block_end = pfn.saturating_add(count);
                    let stop = block_end.min(end);
                    out[crate::to_usize(pfn - start)..crate::to_usize(stop - start)].fill(class);
                    if block_end > end {
                        self.pending = Some((block_end, class));
                    }
                    pfn = stop;
                } else {
                    pfn += 1;
                }
            }
        }
        for (i, c) in out.iter_mut().enumerate() {
            if !self.is_ram(start + i as u64) {
                *c = PageClass::NotRam;
            }
        }
    }

    fn unreadable(&mut self, range: Range<u64>, out: &mut [PageClass], start: u64, e: Error) {
        for pfn in range {
            if self.is_ram(pfn) {
                out[crate::to_usize(pfn - start)] = PageClass::Unreadable;
                self.anomalies.unreadable_pages += 1;
            }
        }
        if self.anomalies.first_error.is_none() {
            self.anomalies.first_error = Some(e.to_string());
        }
    }

    /// The class of `pfn` (whose struct page is in the batch) and how many pages it covers.
    fn decide(&mut self, pfn: u64) -> (PageClass, u64) {
        let p = &self.page;
        let r = self.rules;
        let i = (pfn - self.batch_pfns.start) * p.size;
        let sp = &self.batch[crate::to_usize(i)..crate::to_usize(i + p.size)];
        let next = (crate::to_usize(i + 2 * p.size) <= self.batch.len() && !(pfn + 1).is_multiple_of(PAGE_BATCH))
            .then(|| &self.batch[crate::to_usize(i + p.size)..crate::to_usize(i + 2 * p.size)]);
        let flags = u64_at(sp, p.flags);
        let mapping = p.mapping.map_or(0, |o| u64_at(sp, o));
        let mapcount = p.mapcount.map_or(0, |o| u32_at(sp, o));
        let private = p.private.map_or(0, |o| u64_at(sp, o));
        if p.compound_head.is_some_and(|o| u64_at(sp, o) & 1 != 0) {
            return (PageClass::Kernel, 1);
        }
        let mut order = 0u64;
        let mut hugetlb = false;
        if let (Some(mask), Some(next), Some(info)) = (p.head_mask, next, p.compound)
            && flags & mask != 0
        {
            let next_flags = u64_at(next, p.flags);
            match info {
                CompoundInfo::Bytes { order: o, dtor } => {
                    order = o.map_or(0, |o| u64::from(next[crate::to_usize(o)]));
                    hugetlb = dtor.zip(p.hugetlb_dtor).is_some_and(|(d, v)| u64::from(next[crate::to_usize(d)]) == v);
                }
                CompoundInfo::FlagsPgHugetlb(b) => {
                    order = next_flags & 0xff;
                    hugetlb = next_flags >> b & 1 != 0;
                }
                CompoundInfo::FlagsMapcount(v) => {
                    order = next_flags & 0xff;
                    hugetlb = mapcount == v;
                }
            }
            if order >= 64 || pfn & ((1u64 << order) - 1) != 0 {
                order = 0;
            }
        }
        let slab = bit(flags, p.pg_slab) || p.slab_value.is_some_and(|v| v == mapcount);
        // A slab page is kernel memory whatever `mapping` holds: since 6.10 slab is a page
        // type in `_mapcount`, and struct slab's own fields overlay `page.mapping` (on 6.12
        // a partial-list count), so its bit 0 means nothing there.
        let anon = mapping & 1 != 0 && !slab;
        let cache = bit(flags, p.pg_lru)
            || (bit(flags, p.pg_swapcache) && (p.pg_swapbacked.is_none() || bit(flags, p.pg_swapbacked)));
        let private_flag = bit(flags, p.pg_private);
        let buddy = match (p.buddy_value, p.pg_buddy) {
            (Some(v), _) => !slab && mapcount == v,
            (None, Some(b)) => bit(flags, Some(b)),
            _ => false,
        };
        let pages = 1u64 << order;
        if r.free && buddy {
            if private >= p.max_order.unwrap_or(21).min(64) {
                self.anomalies.bad_free_orders += 1;
                return (PageClass::Kernel, 1);
            }
            return (PageClass::Free, 1 << private);
        }
        if r.cache && cache && !private_flag && !anon {
            return (PageClass::Cache, pages);
        }
        if r.cache_private && cache && !anon {
            return (if private_flag { PageClass::CachePrivate } else { PageClass::Cache }, pages);
        }
        if r.user && (anon || (r.hugetlb && hugetlb)) {
            return (PageClass::User, pages);
        }
        if r.hwpoison && bit(flags, p.pg_hwpoison) {
            return (PageClass::Hwpoison, pages);
        }
        if r.offline && !slab && p.offline_value.is_some_and(|v| v == mapcount) {
            return (PageClass::Offline, pages);
        }
        (PageClass::Kernel, 1)
    }
}

/// A `keep(pfn)` decision for PFNs asked in increasing order, classifying a
/// cycle of [`CYCLE_PAGES`] at a time (bounded memory whatever the RAM size).
#[derive(Debug)]
pub struct LevelFilter<P> {
    classifier: PageClassifier<P>,
    level: u32,
    cycle_start: u64,
    classes: Vec<PageClass>,
    counts: [u64; PageClass::ALL.len()],
}

impl<P: PhysRead> LevelFilter<P> {
    /// Wraps a classifier made for `level`.
    pub fn new(classifier: PageClassifier<P>, level: u32) -> Self {
        Self { classifier, level, cycle_start: 0, classes: Vec::new(), counts: [0; PageClass::ALL.len()] }
    }

    /// The class of `pfn`; PFNs should come in increasing order (going back re-classifies).
    pub fn class(&mut self, pfn: u64) -> PageClass {
        let in_cycle = pfn.checked_sub(self.cycle_start).is_some_and(|d| d < self.classes.len() as u64);
        if !in_cycle {
            self.cycle_start = pfn / CYCLE_PAGES * CYCLE_PAGES;
            self.classes.resize(crate::to_usize(CYCLE_PAGES), PageClass::Kernel);
            self.classifier.classify(self.cycle_start, &mut self.classes);
            for c in &self.classes {
                self.counts[*c as usize] += 1;
            }
        }
        self.classes[crate::to_usize(pfn - self.cycle_start)]
    }

    /// Whether `pfn` belongs in the dump.
    pub fn keep(&mut self, pfn: u64) -> bool {
        !self.class(pfn).excluded_at(self.level)
    }

    /// Pages per class over the cycles classified so far.
    pub fn counts(&self) -> Vec<(PageClass, u64)> {
        PageClass::ALL.iter().map(|&c| (c, self.counts[c as usize])).collect()
    }

    /// The classifier (limits, anomalies).
    pub fn classifier(&self) -> &PageClassifier<P> {
        &self.classifier
    }

    fn classifier_mut(&mut self) -> &mut PageClassifier<P> {
        &mut self.classifier
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests;
