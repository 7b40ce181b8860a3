//! Synthetic struct-page memory: a SPARSEMEM_EXTREME table in the kernel image,
//! struct pages in a vmemmap reached through 4- or 5-level page tables.

use super::*;
use crate::memory::tests::{layout, map};
use crate::memory::{FlatMemory, START_KERNEL_MAP};

const VMEMMAP: u64 = 0xffd4_0000_0000_0000;
const ROOTS: u64 = 0x10_0000;
const SECTIONS: u64 = 0x10_1000;
const STRUCT_PAGES: u64 = 0x20_0000;
const MAX_PFN: u64 = 2048;
const SP: u64 = 64;

const INFO: &str = "PAGESIZE=4096\nSYMBOL(mem_section)=ffffffff80100000\nLENGTH(mem_section)=8388608\n\
SIZE(mem_section)=16\nOFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=20\n\
NUMBER(MAX_PHYSMEM_BITS)=51\nSIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page._refcount)=52\n\
OFFSET(page.mapping)=24\nOFFSET(page.lru)=8\nOFFSET(page._mapcount)=48\nOFFSET(page.private)=40\n\
OFFSET(page.compound_head)=8\nOFFSET(page.compound_dtor)=16\nOFFSET(page.compound_order)=17\n\
NUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\nNUMBER(PG_swapbacked)=19\n\
NUMBER(PG_slab)=9\nNUMBER(PG_head_mask)=65536\nNUMBER(PG_hwpoison)=23\nNUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n\
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\nNUMBER(HUGETLB_PAGE_DTOR)=2\nLENGTH(zone.free_area)=11\n";

const LRU: u64 = 1 << 4;
const PRIVATE: u64 = 1 << 13;
const SWAPCACHE: u64 = 1 << 10;
const SWAPBACKED: u64 = 1 << 19;
const SLAB: u64 = 1 << 9;
const HEAD: u64 = 1 << 16;
const HWPOISON: u64 = 1 << 23;

struct Machine {
    mem: FlatMemory,
    five: bool,
}

impl Machine {
    /// RAM: PFNs 0..1024 and 1280..2048; section 4 (PFNs 1024..1280) has no mem_map.
    fn new(five: bool) -> Self {
        let mut mem = FlatMemory { bytes: vec![0; (MAX_PFN * 4096) as usize], base: 0 };
        let l = layout(five);
        let mut next = 0x1_0000;
        for i in 0..(MAX_PFN * SP).div_ceil(4096) {
            map(&mut mem, &l, &mut next, VMEMMAP + i * 4096, STRUCT_PAGES + i * 4096, false);
        }
        assert!(next < ROOTS);
        mem.bytes[ROOTS as usize..ROOTS as usize + 8].copy_from_slice(&(START_KERNEL_MAP + SECTIONS).to_le_bytes());
        for nr in 0..8u64 {
            if nr == 4 {
                continue;
            }
            // coded mem_map = the section's struct pages - section_start_pfn * SIZE(page)
            // (the vmemmap base itself), with flags present|online.
            let first = VMEMMAP + nr * 256 * SP;
            let coded = first.wrapping_sub(nr * 256 * SP) | 0b101;
            let at = (SECTIONS + nr * 16) as usize;
            mem.bytes[at..at + 8].copy_from_slice(&coded.to_le_bytes());
        }
        Self { mem, five }
    }

    fn set(&mut self, pfn: u64, off: u64, value: &[u8]) {
        let at = (STRUCT_PAGES + pfn * SP + off) as usize;
        self.mem.bytes[at..at + value.len()].copy_from_slice(value);
    }

    fn page(&mut self, pfn: u64, flags: u64, mapping: u64, mapcount: i32, private: u64) {
        self.set(pfn, 0, &flags.to_le_bytes());
        self.set(pfn, 24, &mapping.to_le_bytes());
        self.set(pfn, 48, &mapcount.to_le_bytes());
        self.set(pfn, 40, &private.to_le_bytes());
    }

    fn compound(&mut self, head: u64, order: u8, dtor: u8, flags: u64, mapping: u64) {
        self.page(head, flags | HEAD, mapping, -1, 0);
        for t in head + 1..head + (1 << order) {
            self.set(t, 8, &((VMEMMAP + head * SP) | 1).to_le_bytes());
            // Tails look like anything: they must follow the head.
            self.set(t, 0, &LRU.to_le_bytes());
        }
        self.set(head + 1, 16, &[dtor, order]);
    }

    fn populated(five: bool) -> Self {
        let mut m = Self::new(five);
        m.page(600, LRU, 0xffff_8880_0000_1000, -1, 0); // cache
        m.page(601, LRU | PRIVATE, 0xffff_8880_0000_1000, -1, 0); // cache with private
        m.page(602, LRU | SWAPBACKED, 0xffff_8880_0000_2001, -1, 0); // anonymous
        m.page(603, SWAPCACHE | SWAPBACKED, 0xffff_8880_0000_2000, -1, 0); // swap cache
        m.page(604, SWAPCACHE, 0, -1, 0); // swapcache bit without swapbacked: not cache
        m.page(608, 0, 0, -129, 3); // free, order 3: 608..616
        m.page(609, LRU, 0xffff_8880_0000_1000, -1, 0); // inside the free block: not looked at
        m.page(620, SLAB, 0, -129, 0); // slab with a buddy-looking mapcount: kernel
        m.page(621, 0, 0, -129, 11); // order 11 >= LENGTH(zone.free_area): kept, counted
        m.compound(640, 4, 2, 0, 0xffff_8880_0000_3000); // hugetlbfs page 640..656
        m.compound(704, 2, 1, LRU, 0xffff_8880_0000_2001); // anonymous THP 704..708
        m.compound(712, 3, 1, SLAB, 0); // slab compound: kernel, tails too
        m.page(720, 0, 0, -257, 0); // offline
        m.page(721, HWPOISON, 0, -1, 0); // hwpoison
        m.page(1280, 0, 0, -129, 4); // free, order 4: 1280..1296
        m.page(2047, LRU, 0xffff_8880_0000_1000, -1, 0);
        m
    }

    fn classifier(self, info: &str, level: u32) -> PageClassifier<FlatMemory> {
        let km = KernelMemory::new(self.mem, layout(self.five));
        PageClassifier::new(km, &Vmcoreinfo::parse(info.as_bytes()), level, vec![0..1024, 1280..MAX_PFN]).unwrap()
    }
}

fn classes(five: bool, level: u32) -> Vec<PageClass> {
    let mut c = Machine::populated(five).classifier(INFO, level);
    let mut out = vec![PageClass::Kernel; MAX_PFN as usize];
    c.classify(0, &mut out);
    assert!(c.limits().is_empty(), "{:?}", c.limits());
    assert_eq!(c.anomalies().unreadable_pages, 0, "{:?}", c.anomalies());
    out
}

#[test]
fn level_31_classes_on_4_and_5_level_paging() {
    for five in [false, true] {
        let out = classes(five, 31);
        use PageClass::*;
        assert_eq!(out[0], Kernel);
        assert_eq!(&out[600..605], &[Cache, CachePrivate, User, Cache, Kernel]);
        assert!(out[608..616].iter().all(|&c| c == Free));
        assert_eq!(out[616], Kernel);
        assert_eq!(out[620], Kernel, "slab pages are never free");
        assert_eq!(out[621], Kernel, "a bad order keeps the page");
        assert!(out[640..656].iter().all(|&c| c == User), "hugetlbfs head covers its tails");
        assert_eq!(out[656], Kernel);
        assert!(out[704..708].iter().all(|&c| c == User), "anonymous THP");
        assert!(out[712..720].iter().all(|&c| c == Kernel), "slab compound tails follow the head");
        assert_eq!(&out[720..722], &[Offline, Hwpoison]);
        assert!(out[1024..1280].iter().all(|&c| c == NotRam));
        assert!(out[1280..1296].iter().all(|&c| c == Free));
        assert_eq!(out[2047], Cache);
    }
}

#[test]
fn each_level_bit_alone_matches_makedumpfile_order() {
    use PageClass::*;
    let two = classes(false, 2);
    assert_eq!(&two[600..605], &[Cache, Kernel, Kernel, Cache, Kernel]);
    assert!(two[608..616].iter().all(|&c| c != Free), "free pages are kept at level 2");
    assert_eq!(two[609], Cache, "without bit 16 the free block is not skipped: its pages are judged one by one");
    assert!(two[640..656].iter().all(|&c| c == Kernel));
    assert_eq!(&two[720..722], &[Offline, Hwpoison], "offline and hwpoison go whenever the pass runs");
    let four = classes(false, 4);
    assert_eq!(&four[600..605], &[Cache, CachePrivate, Kernel, Cache, Kernel]);
    let eight = classes(false, 8);
    assert_eq!(&eight[600..605], &[Kernel, Kernel, User, Kernel, Kernel]);
    assert!(eight[640..656].iter().all(|&c| c == User));
    let sixteen = classes(false, 16);
    assert!(sixteen[608..616].iter().all(|&c| c == Free));
    assert_eq!(sixteen[609], Free);
    assert_eq!(&sixteen[600..605], &[Kernel; 5]);
    // Level 1 (zero pages) needs no struct pages: the pass assigns nothing but hwpoison/offline
    // (PG_hwpoison is exported here, so it runs, as in makedumpfile).
    let one = classes(false, 1);
    assert_eq!(&one[720..722], &[Offline, Hwpoison]);
    assert!(one[..720].iter().all(|c| !c.excluded_at(1)));
    for (l, out) in [(2, &two), (4, &four), (8, &eight), (16, &sixteen)] {
        for (pfn, c) in out.iter().enumerate() {
            if *c != Kernel && *c != NotRam {
                assert!(c.excluded_at(l), "pfn {pfn} class {c:?} at level {l}");
            }
        }
    }
}

#[test]
fn blocks_carry_across_cycles_in_any_split() {
    let whole = classes(true, 31);
    for chunk in [1usize, 3, 8, 100, 512, 700] {
        let mut c = Machine::populated(true).classifier(INFO, 31);
        let mut got = Vec::new();
        let mut start = 0u64;
        while start < MAX_PFN {
            let n = (chunk as u64).min(MAX_PFN - start) as usize;
            let mut out = vec![PageClass::Kernel; n];
            c.classify(start, &mut out);
            got.extend(out);
            start += n as u64;
        }
        assert_eq!(got, whole, "chunk {chunk}");
    }
}

#[test]
fn level_filter_keeps_and_counts() {
    let km = KernelMemory::new(Machine::populated(false).mem, layout(false));
    let c = PageClassifier::new(km, &Vmcoreinfo::parse(INFO.as_bytes()), 31, vec![0..1024, 1280..MAX_PFN]).unwrap();
    let mut f = LevelFilter::new(c, 31);
    let kept: Vec<u64> = (0..MAX_PFN).filter(|&p| f.keep(p)).take(700).collect();
    assert!(!kept.contains(&600) && !kept.contains(&610) && kept.contains(&620));
    let counts: std::collections::BTreeMap<_, _> = f.counts().into_iter().collect();
    assert_eq!(counts[&PageClass::Free], 8 + 16);
    assert_eq!(counts[&PageClass::User], 1 + 16 + 4);
    assert_eq!(counts[&PageClass::Cache], 3);
    assert_eq!(counts[&PageClass::CachePrivate], 1);
    assert_eq!(counts[&PageClass::NotRam], CYCLE_PAGES - 1792);
}

#[test]
fn missing_keys_are_named_and_their_classes_kept() {
    let without = |keys: &[&str]| {
        INFO.lines().filter(|l| !keys.iter().any(|k| l.starts_with(k))).map(|l| format!("{l}\n")).collect::<String>()
    };
    let info = without(&["NUMBER(PG_lru)", "NUMBER(HUGETLB_PAGE_DTOR)", "NUMBER(PG_hwpoison)"]);
    let mut c = Machine::populated(false).classifier(&info, 31);
    let limits = c.limits().join("\n");
    assert!(limits.contains("page-cache pages are kept: VMCOREINFO has no NUMBER(PG_lru)"), "{limits}");
    assert!(limits.contains("hugetlbfs pages are kept") && limits.contains("HUGETLB_PAGE_DTOR"), "{limits}");
    assert!(!limits.contains("hardware-poisoned"), "no PG_hwpoison: the kernel cannot poison pages: {limits}");
    let mut out = vec![PageClass::Kernel; MAX_PFN as usize];
    c.classify(0, &mut out);
    assert_eq!(out[600], PageClass::Kernel);
    assert_eq!(out[602], PageClass::User, "anonymous pages need no cache keys");
    assert_eq!(out[640], PageClass::Kernel, "hugetlbfs kept without its destructor id");
    assert_eq!(out[721], PageClass::Kernel);
    assert!(out[608..616].iter().all(|&c| c == PageClass::Free));

    let info = without(&["NUMBER(PG_slab)"]);
    let mut c = Machine::populated(false).classifier(&info, 8);
    let limits = c.limits().join("\n");
    assert!(limits.contains("user pages are kept: VMCOREINFO has no NUMBER(PG_slab)"), "{limits}");
    c.classify(0, &mut out);
    assert_eq!(out[602], PageClass::Kernel, "anonymous memory kept when slab cannot be told apart");

    let info = without(&["SYMBOL(mem_section)", "NUMBER(SECTION_SIZE_BITS)"]);
    let km = KernelMemory::new(Machine::new(false).mem, layout(false));
    let err = PageClassifier::new(km, &Vmcoreinfo::parse(info.as_bytes()), 31, std::iter::once(0..MAX_PFN).collect())
        .unwrap_err();
    assert_eq!(err, Error::MissingKey("SYMBOL(mem_section), NUMBER(SECTION_SIZE_BITS)".into()));
}

#[test]
fn unreadable_struct_pages_are_kept_and_reported() {
    let mut m = Machine::populated(false);
    // Unmap the vmemmap page holding PFNs 576..640 by pointing section 2 at an unmapped address.
    let coded = (VMEMMAP + (1 << 30)) | 1;
    let at = (SECTIONS + 2 * 16) as usize;
    m.mem.bytes[at..at + 8].copy_from_slice(&coded.to_le_bytes());
    let mut c = m.classifier(INFO, 31);
    let mut out = vec![PageClass::Kernel; MAX_PFN as usize];
    c.classify(0, &mut out);
    assert!(out[512..768].iter().all(|&c| c == PageClass::Unreadable));
    assert_eq!(c.anomalies().unreadable_pages, 256);
    assert!(c.anomalies().first_error.as_ref().unwrap().contains("not mapped"));
    assert!(out[1280..1296].iter().all(|&c| c == PageClass::Free));
}

#[test]
fn old_pointer_style_mem_section_is_followed() {
    // Before 4.15, SYMBOL(mem_section) of SPARSEMEM_EXTREME was the address of a pointer to the roots.
    let mut m = Machine::populated(false);
    let ptr_at = 0x10_2000usize;
    m.mem.bytes[ptr_at..ptr_at + 8].copy_from_slice(&(START_KERNEL_MAP + ROOTS).to_le_bytes());
    let info = INFO.replace("SYMBOL(mem_section)=ffffffff80100000", "SYMBOL(mem_section)=ffffffff80102000");
    let mut c = m.classifier(&info, 31);
    let mut out = vec![PageClass::Kernel; MAX_PFN as usize];
    c.classify(0, &mut out);
    assert_eq!(out[600], PageClass::Cache);
}

#[test]
fn a_terabyte_machine_fits_a_256_mib_capture_kernel() {
    // The classifier's heap does not depend on RAM size; with the kdump writer's
    // bounded buffers (a bitmap block, 1 MiB of data, ~64 KiB of descriptors) and
    // the save pipeline's batches, 1 TiB needs well under 256 MiB.
    let per_classifier = classifier_memory_bytes(64);
    assert_eq!(per_classifier, (1 << 18) + 513 * 64);
    assert!(per_classifier < 1 << 20);
    // An allocation per page of a 1 TiB machine (2^28 pages) would not fit:
    // the filter never holds more than one cycle.
    let tib_pages: u64 = 1 << 28;
    assert!(tib_pages >= 256 << 20, "even a byte per page of 1 TiB would fill 256 MiB");
    assert!(CYCLE_PAGES <= tib_pages / 1024);
    let budget: u64 = 256 << 20;
    assert!(per_classifier * 4 < budget / 100, "classification stays under 1% of a 256 MiB capture kernel");
}

#[test]
fn a_compound_head_on_a_batch_boundary_sees_its_order() {
    // One 2048-page section, so batches of 512 meet inside it: the head at 1536 is the
    // page read after the batch 1024..1536 for its predecessor's lookahead.
    let info = INFO
        .replace("NUMBER(SECTION_SIZE_BITS)=20", "NUMBER(SECTION_SIZE_BITS)=23")
        .replace("LENGTH(mem_section)=8388608", "LENGTH(mem_section)=1048576");
    let mut m = Machine::populated(false);
    m.compound(1536, 3, 2, 0, 0xffff_8880_0000_3000);
    m.page(1535, LRU, 0xffff_8880_0000_1000, -1, 0);
    let mut c = m.classifier(&info, 31);
    let mut out = vec![PageClass::Kernel; MAX_PFN as usize];
    c.classify(0, &mut out);
    assert_eq!(out[1535], PageClass::Cache);
    assert!(out[1536..1544].iter().all(|&c| c == PageClass::User), "{:?}", &out[1535..1545]);
    assert_eq!(out[1544], PageClass::Kernel);
}

#[test]
fn one_pass_keep_map_equals_asking_page_by_page() {
    let ram = vec![0..1024, 1280..MAX_PFN];
    let filter = |level| {
        let km = KernelMemory::new(Machine::populated(false).mem, layout(false));
        LevelFilter::new(
            PageClassifier::new(km, &Vmcoreinfo::parse(INFO.as_bytes()), level, ram.clone()).unwrap(),
            level,
        )
    };
    for level in [31, 17, 2, 4, 8, 16] {
        let (mut by_page, mut one_pass) = (filter(level), filter(level));
        let map = one_pass.decide_all(&ram).expect("small machine");
        let mut kept = 0;
        for pfn in 0..MAX_PFN + 64 {
            let in_ram = ram.iter().any(|r| r.contains(&pfn));
            let want = in_ram && by_page.keep(pfn);
            assert_eq!(map.keep(pfn), want, "level {level} pfn {pfn}");
            kept += u64::from(want);
        }
        assert_eq!(map.kept(), kept, "level {level}");
        assert_eq!(one_pass.counts(), by_page.counts(), "level {level}: the report's counts are the same");
    }
    let map = filter(31).decide_all(&ram).unwrap();
    assert!(!map.keep(600) && !map.keep(610) && map.keep(620) && !map.keep(1100) && !map.keep(u64::MAX));
}

#[test]
fn keep_map_memory_is_one_bit_per_page_and_capped() {
    // 1 TiB of 4 KiB pages: 32 MiB of bits, an eighth of a 256 MiB capture kernel.
    let tib: u64 = 1 << 28;
    let whole = |end: u64| std::iter::once(0..end).collect::<Vec<_>>();
    assert_eq!(KeepMap::memory_bytes(&whole(tib)), 32 << 20);
    assert_eq!(KeepMap::memory_bytes(&[]), 0);
    // Beyond the cap the map is refused before anything is read (the caller then
    // classifies cycle by cycle, as before).
    let km = KernelMemory::new(Machine::populated(false).mem, layout(false));
    let huge = vec![0..1024, KEEP_MAP_MAX_PAGES..KEEP_MAP_MAX_PAGES + 1];
    let c = PageClassifier::new(km, &Vmcoreinfo::parse(INFO.as_bytes()), 31, huge.clone()).unwrap();
    let mut f = LevelFilter::new(c, 31);
    assert!(f.decide_all(&huge).is_none());
    assert!(f.counts().iter().all(|&(_, n)| n == 0), "nothing classified");
    assert!(KeepMap::memory_bytes(&whole(KEEP_MAP_MAX_PAGES)) <= 64 << 20);
}

/// 6.10+: slab, buddy, offline and hugetlb are page types in `_mapcount`; the folio
/// order is the low byte of the next page's flags.
const INFO_PAGE_TYPES: &str = "PAGESIZE=4096\nSYMBOL(mem_section)=ffffffff80100000\nLENGTH(mem_section)=8388608\n\
SIZE(mem_section)=16\nOFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=20\n\
NUMBER(MAX_PHYSMEM_BITS)=51\nSIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page._refcount)=52\n\
OFFSET(page.mapping)=24\nOFFSET(page.lru)=8\nOFFSET(page._mapcount)=48\nOFFSET(page.private)=40\n\
OFFSET(page.compound_info)=8\nNUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\n\
NUMBER(PG_swapbacked)=19\nNUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=-184549376\nNUMBER(PG_head_mask)=65536\n\
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-268435456\nNUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=-201326592\n\
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-251658240\nLENGTH(zone.free_area)=11\n";

#[test]
fn page_types_in_mapcount_slab_overlaying_mapping_is_kernel() {
    const SLAB_TYPE: i32 = -184549376;
    const BUDDY_TYPE: i32 = -268435456;
    const HUGETLB_TYPE: i32 = -201326592;
    let mut m = Machine::new(false);
    // A slab whose struct slab fields put an odd count where page.mapping is.
    m.page(600, 0, 0x0000_0003_0000_0003, SLAB_TYPE, 0);
    m.page(601, LRU | SWAPBACKED, 0xffff_8880_0000_2001, -1, 0); // anonymous
    m.page(608, 0, 0, BUDDY_TYPE, 2); // free 608..612
    // hugetlb folio 640..648: type on the head, order in the next page's flags.
    m.page(640, HEAD, 0, HUGETLB_TYPE, 0);
    // A slab folio 656..660 with an odd overlay word: kernel, tails too.
    m.page(656, HEAD, 0x11, SLAB_TYPE, 0);
    for (head, order) in [(640u64, 3u64), (656, 2)] {
        for t in head + 1..head + (1 << order) {
            m.set(t, 8, &((VMEMMAP + head * SP) | 1).to_le_bytes());
        }
        m.set(head + 1, 0, &order.to_le_bytes());
    }
    let mut c = m.classifier(INFO_PAGE_TYPES, 31);
    assert!(c.limits().is_empty(), "{:?}", c.limits());
    let mut out = vec![PageClass::Kernel; MAX_PFN as usize];
    c.classify(0, &mut out);
    assert_eq!(out[600], PageClass::Kernel, "slab is never user memory");
    assert_eq!(out[601], PageClass::User);
    assert!(out[608..612].iter().all(|&c| c == PageClass::Free));
    assert!(out[640..648].iter().all(|&c| c == PageClass::User), "{:?}", &out[640..648]);
    assert!(out[656..660].iter().all(|&c| c == PageClass::Kernel), "{:?}", &out[656..660]);
}
