//! Dump-level filtering (`-d`): a second reader of the source feeds `kdump_kernel::pages`,
//! which classifies every struct page once, before the save pipeline reads page contents
//! through the first reader.

use std::path::Path;

use kdump_dumpfile::{PageState, PhysMem};
use kdump_kernel::memory::X86_64Layout;
use kdump_kernel::pages::{KeepMap, LevelFilter, MemUsage, PageClass, PageClassifier, level};
use kdump_kernel::{KernelMemory, Vmcoreinfo};
use kdump_sys::mapped::ReadMode;

use crate::error::Result;
use crate::source::{self, Dump, PhysAdapter};

/// Byte reads over a second handle on the dump, owned by the filter.
pub type OwnedPhys = PhysAdapter<Box<dyn PhysMem>>;

/// The filter for one dump, and what it could not do.
pub struct Filter {
    /// The classifier and level, when struct pages are read at all.
    pub inner: Option<LevelFilter<OwnedPhys>>,
    /// Every page's decision, once [`decide_all`](Self::decide_all) has run.
    decided: Option<KeepMap>,
    /// The level actually applied: the requested one minus classes that cannot be decided.
    pub effective_level: u32,
    /// Why some pages the level asks to drop are kept (missing keys, no classifier).
    pub limits: Vec<String>,
    /// The kernel exports PG_hwpoison: the struct-page pass runs even at levels 0 and 1.
    pub hwpoison_exported: bool,
    /// `-e` was asked for.
    exclude_vmemmap: bool,
    /// What `-e` left out.
    vmemmap_excluded: Option<u64>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").field("effective_level", &self.effective_level).finish_non_exhaustive()
    }
}

impl Filter {
    /// Keep-everything (levels 0 and 1 need no struct pages).
    fn none(level: u32, limits: Vec<String>) -> Self {
        Filter {
            inner: None,
            decided: None,
            effective_level: level,
            limits,
            hwpoison_exported: false,
            exclude_vmemmap: false,
            vmemmap_excluded: None,
        }
    }

    /// Whether page `pfn` goes into the dump.
    pub fn keep(&mut self, pfn: u64) -> bool {
        if let Some(map) = &self.decided {
            return map.keep(pfn);
        }
        self.inner.as_mut().is_none_or(|f| f.keep(pfn))
    }

    /// Classifies all of `ram` in one struct-page pass and returns how many
    /// pages the dump keeps (the writer sizes its page table by it): `None`
    /// when nothing is filtered by struct page. A machine too large for the
    /// one-bit-per-page map is counted by a second pass over `source`
    /// (cycle by cycle, bounded memory).
    /// `level` is the level asked for (as given to [`build`]).
    pub fn decide_all(&mut self, source: &Path, dump: &Dump, level: u32, mode: ReadMode) -> Result<Option<u64>> {
        let Some(inner) = self.inner.as_mut() else { return Ok(None) };
        let ram = dump.mem.ram_ranges();
        if let Some(mut map) = inner.decide_all(ram) {
            if self.exclude_vmemmap {
                self.vmemmap_excluded = Some(inner.exclude_vmemmap(&mut map));
            }
            let kept = map.kept();
            self.decided = Some(map);
            return Ok(Some(kept));
        }
        count_kept(source, dump, level, mode)
    }

    /// Asks [`decide_all`](Self::decide_all) to leave out the struct pages of left-out pages
    /// too (`-e`); see [`vmemmap_excluded`](Self::vmemmap_excluded) for whether it could.
    pub fn exclude_vmemmap(&mut self) {
        self.exclude_vmemmap = true;
    }

    /// The vmemmap pages `-e` left out: `None` when it could not run (no struct-page pass at
    /// this level, or a machine too large for the one-pass map).
    pub fn vmemmap_excluded(&self) -> Option<u64> {
        self.vmemmap_excluded
    }

    /// Pages excluded per class, for the report.
    pub fn excluded(&self) -> Vec<(PageClass, u64)> {
        let Some(f) = &self.inner else { return Vec::new() };
        f.counts().into_iter().filter(|(c, n)| *n > 0 && c.excluded_at(self.effective_level)).collect()
    }

    /// Lines for stderr: what was not filtered and why, anomalies.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.limits.clone();
        if let Some(f) = &self.inner {
            let a = f.classifier().anomalies();
            if a.unreadable_pages > 0 {
                out.push(format!(
                    "the struct pages of {} RAM pages could not be read ({}); those pages are kept",
                    a.unreadable_pages,
                    a.first_error.as_deref().unwrap_or("?")
                ));
            }
            if a.bad_free_orders > 0 {
                out.push(format!(
                    "{} free-looking pages had an order not below LENGTH(zone.free_area) and were kept",
                    a.bad_free_orders
                ));
            }
        }
        out
    }
}

/// Builds the filter for `level` on `source` (opened a second time for struct pages).
pub fn build(source: &Path, dump: &Dump, level: u32, mode: ReadMode) -> Result<Filter> {
    let wanted = level & level::STRUCT_PAGE_BITS;
    let Some(raw) = dump.vmcoreinfo_raw() else {
        if wanted == 0 {
            return Ok(Filter::none(level, Vec::new()));
        }
        return Ok(Filter::none(
            level & !wanted,
            vec![format!(
                "dump level {level}: the dump has no VMCOREINFO note, so page cache, user and free pages cannot be \
                 told apart and are all kept (effective level {})",
                level & !wanted
            )],
        ));
    };
    let info = Vmcoreinfo::parse(raw);
    // Levels 0 and 1 still run the pass when the kernel exports PG_hwpoison, as makedumpfile does.
    if wanted == 0 && info.number("PG_hwpoison").is_err() {
        return Ok(Filter::none(level, Vec::new()));
    }
    let fail = |why: String| {
        let effective = level & !wanted;
        let msg = if wanted == 0 {
            format!("hwpoisoned and offline pages cannot be found, so they are kept: {why}")
        } else {
            format!(
                "dump level {level}: page cache, user and free pages cannot be classified, so they are all kept \
                 (effective level {effective}): {why}"
            )
        };
        Ok(Filter::none(effective, vec![msg]))
    };
    let layout = match X86_64Layout::from_vmcoreinfo(&info) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    // The second handle on the source is opened as the first was: its errors are the same.
    let second = source::open_with(source, mode)?;
    let ram = dump.mem.ram_ranges().to_vec();
    let mem = KernelMemory::new(PhysAdapter::new(second.mem), layout);
    let classifier = match PageClassifier::new(mem, &info, level, ram) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let effective = classifier.rules().effective_level(level);
    let mut limits: Vec<String> = classifier.limits().to_vec();
    if effective != level {
        limits.push(format!("dump level {level} is applied as {effective}: the classes above are kept"));
    }
    Ok(Filter {
        inner: Some(LevelFilter::new(classifier, effective)),
        decided: None,
        effective_level: effective,
        limits,
        hwpoison_exported: info.number("PG_hwpoison").is_ok(),
        exclude_vmemmap: false,
        vmemmap_excluded: None,
    })
}

/// What `--mem-usage` reports: pages per class of a dump's RAM, and what each level keeps.
#[derive(Debug, Clone)]
pub struct MemUsageReport {
    /// Pages per class, and zero pages among those level 31 keeps.
    pub usage: MemUsage,
    /// The dump's page size.
    pub page_size: u64,
    /// RAM pages the source does not hold (already filtered, or lost).
    pub absent: u64,
    /// The level the classifier can apply when asked for 31.
    pub effective_level: u32,
    /// The kernel exports PG_hwpoison (levels 0 and 1 drop poisoned pages too).
    pub hwpoison_exported: bool,
    /// Where VMCOREINFO was found in memory, for a dump without a note.
    pub vmcoreinfo_found_at: Option<u64>,
    /// What could not be classified and why.
    pub warnings: Vec<String>,
}

impl MemUsageReport {
    /// Pages a dump at `level` would hold.
    pub fn pages_at(&self, level: u32) -> u64 {
        self.usage.pages_at(level, self.effective_level, self.hwpoison_exported)
    }
}

/// `kdump dump --mem-usage SOURCE`: every RAM page classified once, and the zero pages among
/// those level 31 keeps counted, as makedumpfile counts them.
pub fn mem_usage(source: &Path, mode: ReadMode) -> Result<MemUsageReport> {
    let mut dump = crate::source::open_with(source, mode)?;
    let vmcoreinfo_found_at = dump.resolve_vmcoreinfo()?;
    let mut filter = build(source, &dump, 31, mode)?;
    let page_size = dump.mem.page_size();
    let ranges = dump.mem.ram_ranges().to_vec();
    let mut usage = MemUsage { total: ranges.iter().map(|r| r.end - r.start).sum(), ..MemUsage::default() };
    let mut absent = 0u64;
    let mut buf = vec![0u8; page_size as usize];
    for r in &ranges {
        for pfn in r.clone() {
            let class = filter.inner.as_mut().map_or(PageClass::Kernel, |f| f.class(pfn));
            usage.counts[class as usize] += 1;
            if class.excluded_at(filter.effective_level) {
                continue;
            }
            match dump.mem.read_page(pfn, &mut buf) {
                Ok(PageState::Present | PageState::ZeroFilled) if buf.iter().all(|&b| b == 0) => usage.zero += 1,
                Ok(PageState::Present | PageState::ZeroFilled) => {}
                _ => absent += 1,
            }
        }
    }
    Ok(MemUsageReport {
        usage,
        page_size,
        absent,
        effective_level: filter.effective_level,
        hwpoison_exported: filter.hwpoison_exported,
        vmcoreinfo_found_at,
        warnings: filter.warnings(),
    })
}

/// Counts the pages a dump at `level` will hold, with a filter of its own (a
/// second struct-page pass, as makedumpfile makes in cyclic mode): only for
/// machines too large for a [`KeepMap`].
fn count_kept(source: &Path, dump: &Dump, level: u32, mode: ReadMode) -> Result<Option<u64>> {
    let mut counter = build(source, dump, level, mode)?;
    if counter.inner.is_none() {
        return Ok(None);
    }
    let mut kept = 0u64;
    for range in dump.mem.ram_ranges() {
        for pfn in range.clone() {
            kept += u64::from(counter.keep(pfn));
        }
    }
    Ok(Some(kept))
}
