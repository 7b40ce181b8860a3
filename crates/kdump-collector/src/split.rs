//! makedumpfile's `--split` and `--reassemble`: one dump saved as several files, one thread
//! each, and a set of them joined back into one file. The format is in
//! [`kdump_dumpfile::kdump::split`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kdump_dumpfile::kdump::balanced_ranges;
use kdump_dumpfile::{
    KdumpWriter, LimitedSink, PageState, PfnRange, PfnSet, PhysMem, SeekSink, SetUse, SplitPart, WriteSummary,
};
use kdump_save::{Progress, SaveOptions, SaveReport, save_kdump};
use kdump_sys::usage::thread_cpu_time;

use crate::error::{Context, Error, Result};
use crate::save::{
    Incomplete, Observer, Prepared, SaveRequest, Saved, SavedPart, Written, commit, create_new, output_config,
    partial_name, preallocate, prepare, saving_failed,
};
use crate::source;

/// Every part starts on a multiple of this many pages, whatever `--splitblock-size` says
/// (boundaries then fall on multiples of both): crash counts a part's pages from its 2nd
/// bitmap in 64-bit words from the part's first PFN, so a part starting inside a word is
/// misread ("page incomplete"), as a lab run of crash on our parts found.
pub const SPLIT_ALIGN: u64 = 64;

/// Where a split dump goes (makedumpfile's `--split DEST1 DEST2 …`).
#[derive(Debug, Clone)]
pub struct SplitTarget {
    /// One file per part, at least two, in PFN order.
    pub dests: Vec<PathBuf>,
    /// Replace existing files.
    pub force: bool,
    /// makedumpfile's `--splitblock-size`, in KiB: part boundaries fall on multiples of it.
    /// `None`: on any multiple of [`SPLIT_ALIGN`] pages (the parts are as even as that allows).
    pub splitblock_kib: Option<u64>,
}

/// Saves `source` as a split dump: `target.dests.len()` kdump-compressed files holding about
/// as many pages each, written at once (a thread per file, each reading the source on its
/// own). Each file is written as `DEST.incomplete`; all are renamed to their names only
/// when every one is complete, so a set under its final names is always whole.
pub fn save_split(
    source: &Path,
    target: &SplitTarget,
    req: &SaveRequest,
    observer: &mut dyn Observer,
) -> Result<Saved> {
    let started = Instant::now();
    let n = target.dests.len();
    if n < 2 {
        return Err(Error::Refused("--split needs at least two files to write: SOURCE DEST1 DEST2 …".to_string()));
    }
    if req.level > 31 {
        return Err(Error::Refused(format!("dump level {} is out of range: use 0 to 31", req.level)));
    }
    if req.elf {
        return Err(Error::Refused(
            "--split writes kdump-compressed files (as makedumpfile): leave out -E".to_string(),
        ));
    }
    for (i, d) in target.dests.iter().enumerate() {
        if target.dests[..i].contains(d) {
            return Err(Error::Refused(format!("{} is given twice: give each part its own file", d.display())));
        }
        if !target.force && d.exists() {
            return Err(Error::Refused(format!("{} exists: use -f to overwrite it", d.display())));
        }
    }
    let Prepared { mut dump, mut filter, kept: _, mut timings } = prepare(source, req, observer)?;
    let page_size = dump.mem.page_size();
    let granule = match target.splitblock_kib {
        None => SPLIT_ALIGN,
        Some(kib) => {
            let bytes = kib.saturating_mul(1024);
            if bytes == 0 || bytes % page_size != 0 {
                return Err(Error::Refused(format!(
                    "--splitblock-size {kib} (KiB) is not a multiple of the page size ({page_size} bytes): give a \
                     multiple of {} KiB",
                    page_size.div_ceil(1024)
                )));
            }
            lcm(bytes / page_size, SPLIT_ALIGN)
        }
    };
    // The whole dump's pages: what the level keeps of what the source has. Every part's
    // 2nd bitmap is this set, so it is decided before any part is written.
    let mut pages = PfnSet::new(dump.mem.max_pfn());
    for range in dump.mem.ram_ranges().to_vec() {
        for pfn in range {
            let has = dump.mem.has_page(pfn).what(|| format!("cannot read {}", source.display()))?;
            if has && filter.keep(pfn) {
                pages.insert(pfn).what(|| "the page set".to_string())?;
            }
        }
    }
    let pages = Arc::new(pages);
    let ranges = balanced_ranges(&pages, n, granule);
    let config = output_config(&mut dump, source, req, &filter, observer)?;
    let ram = dump.mem.ram_ranges().to_vec();
    drop(dump);

    // Every file is created before any is written: a name that cannot be used stops it all.
    let mut files = Vec::with_capacity(n);
    for dest in &target.dests {
        let partial = partial_name(dest);
        match create_new(&partial, target.force) {
            Ok(f) => files.push((partial, f)),
            Err(e) => {
                for (p, _) in &files {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    // Compression threads per part: what is asked (or every CPU) shared out; a part whose
    // share is below one reads, compresses and writes on its own thread.
    let threads = req.threads.unwrap_or(if cpus <= n { 0 } else { cpus }) / n;
    let mode = req.read_mode;
    let done: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let total: u64 = ranges.iter().map(|r| clip(&ram, r).iter().map(|c| c.end - c.start).sum::<u64>()).sum();

    let outcomes: Vec<Result<PartOutcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .into_iter()
            .zip(&ranges)
            .zip(&done)
            .map(|(((partial, file), range), done)| {
                let mut cfg = config.clone();
                cfg.split = Some(SplitPart { range: range.clone(), pages: Arc::clone(&pages) });
                let part = PartJob { partial, file, cfg, range: range.clone(), ram: &ram, pages: &pages, threads };
                scope.spawn(move || part.run(source, mode, req.size_limit, done))
            })
            .collect();
        // Progress from here: the observer is this thread's.
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            observer.progress(Progress { done: done.iter().map(|d| d.load(Ordering::Relaxed)).sum(), total });
        }
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let outcomes: Vec<PartOutcome> = outcomes.into_iter().collect::<Result<_>>()?;
    observer.progress(Progress { done: total, total });

    let mut sum = SaveReport::default();
    let mut parts = Vec::with_capacity(n);
    let mut incomplete = None;
    let mut fsync = Duration::ZERO;
    for ((o, dest), range) in outcomes.into_iter().zip(&target.dests).zip(ranges) {
        add(&mut sum, &o.report);
        fsync = fsync.max(o.fsync);
        if incomplete.is_none()
            && let Some(reason) = &o.report.incomplete_reason
        {
            incomplete = Some(Incomplete {
                reason: format!("{}: {reason}; the other parts are left as DEST.incomplete too", dest.display()),
                pages: 0,
                partial: Some(partial_name(dest)),
            });
        }
        if let Err(e) = o.synced {
            return Err(Error::Io { what: format!("cannot flush {}", partial_name(dest).display()), source: e });
        }
        parts.push(SavedPart { dest: dest.clone(), range, report: o.report });
    }
    if let Some(inc) = incomplete.as_mut() {
        inc.pages = sum.written.pages;
    } else {
        for dest in &target.dests {
            commit(&partial_name(dest), dest)?;
        }
    }
    timings.fsync = Some(fsync);
    timings.total = started.elapsed();
    let dest = target.dests.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    Ok(Saved::new(&filter, dest, Written::Kdump(sum), incomplete, timings, parts))
}

/// One part's file, written on a thread of its own.
struct PartJob<'a> {
    partial: PathBuf,
    file: File,
    cfg: kdump_dumpfile::KdumpConfig,
    range: PfnRange,
    ram: &'a [PfnRange],
    pages: &'a PfnSet,
    threads: usize,
}

/// What a part's thread reports.
struct PartOutcome {
    report: SaveReport,
    fsync: Duration,
    synced: std::io::Result<()>,
}

impl PartJob<'_> {
    fn run(
        self,
        source: &Path,
        mode: kdump_sys::mapped::ReadMode,
        limit: Option<u64>,
        done: &AtomicU64,
    ) -> Result<PartOutcome> {
        let name = self.partial.display().to_string();
        // Its own reader of the source, as makedumpfile's children reopen /proc/vmcore.
        let mut dump = source::open_with(source, mode)?;
        let handle = self.file.try_clone().what(|| "cannot duplicate the dump file handle".to_string())?;
        let sink = LimitedSink::new(SeekSink::new(self.file), limit.unwrap_or(u64::MAX));
        let writer = KdumpWriter::new(sink, self.cfg).what(|| format!("cannot start {name}"))?;
        preallocate(&handle, writer.metadata_len(), &self.partial)?;
        let mut src = Clipped { mem: dump.mem.as_mut(), ranges: clip(self.ram, &self.range) };
        let opts = SaveOptions { threads: self.threads, clock: thread_cpu_time, ..SaveOptions::default() };
        let pages = self.pages;
        let progress = |p: Progress| done.store(p.done, Ordering::Relaxed);
        let (sink, report) = save_kdump(&mut src, writer, &opts, |pfn| pages.contains(pfn), progress)
            .map_err(|e| saving_failed(&name, e))?;
        let file = sink.into_inner().into_inner();
        let syncing = Instant::now();
        let synced = file.sync_all();
        Ok(PartOutcome { report, fsync: syncing.elapsed(), synced })
    }
}

/// The RAM ranges within `part`.
/// The least common multiple of two page counts (`b` a power of two).
fn lcm(a: u64, b: u64) -> u64 {
    let gcd = 1u64 << a.trailing_zeros().min(b.trailing_zeros());
    a / gcd * b
}

fn clip(ram: &[PfnRange], part: &PfnRange) -> Vec<PfnRange> {
    ram.iter().map(|r| r.start.max(part.start)..r.end.min(part.end)).filter(|r| r.start < r.end).collect()
}

/// A dump seen through one part's range: only its RAM is walked.
struct Clipped<'a> {
    mem: &'a mut dyn PhysMem,
    ranges: Vec<PfnRange>,
}

impl PhysMem for Clipped<'_> {
    fn page_size(&self) -> u64 {
        self.mem.page_size()
    }
    fn max_pfn(&self) -> u64 {
        self.mem.max_pfn()
    }
    fn ram_ranges(&self) -> &[PfnRange] {
        &self.ranges
    }
    fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> kdump_dumpfile::Result<PageState> {
        self.mem.read_page(pfn, buf)
    }
    fn notes(&self) -> &[u8] {
        self.mem.notes()
    }
    fn vmcoreinfo(&self) -> Option<&[u8]> {
        self.mem.vmcoreinfo()
    }
}

/// Adds one part's report into the whole dump's.
fn add(sum: &mut SaveReport, r: &SaveReport) {
    let (w, p) = (&mut sum.written, &r.written);
    w.pages += p.pages;
    w.zero_pages += p.zero_pages;
    w.raw_pages += p.raw_pages;
    w.file_size += p.file_size;
    w.lost_pages += p.lost_pages;
    w.incomplete |= p.incomplete;
    sum.pages_scanned += r.pages_scanned;
    sum.pages_absent += r.pages_absent;
    sum.unreadable.extend_from_slice(&r.unreadable);
    sum.unreadable_count += r.unreadable_count;
    if sum.incomplete_reason.is_none() {
        sum.incomplete_reason.clone_from(&r.incomplete_reason);
    }
    sum.times.reading += r.times.reading;
    sum.times.bytes_read += r.times.bytes_read;
    sum.times.encoding += r.times.encoding;
    sum.times.writing += r.times.writing;
}

/// What [`reassemble`] wrote.
#[derive(Debug, Clone)]
pub struct Reassembled {
    /// The parts, in PFN order.
    pub parts: Vec<String>,
    /// The writer's summary of the joined file.
    pub written: WriteSummary,
    /// From the call to the end.
    pub total: Duration,
}

/// Joins every part of a split dump (in any order) into the one kdump-compressed file `out`
/// (makedumpfile's `--reassemble`): checked to be one whole, complete set first; written as
/// `OUT.incomplete`, renamed when done. `progress` is told about every 4096 pages.
pub fn reassemble(
    parts: &[PathBuf],
    out: &Path,
    force: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Reassembled> {
    let started = Instant::now();
    if parts.is_empty() {
        return Err(Error::Refused("--reassemble needs the parts and the file to write: PART1 PART2 … OUT".into()));
    }
    if parts.iter().any(|p| p == out) {
        return Err(Error::Refused(format!("{} is both a part and the output: name a new file last", out.display())));
    }
    if !force && out.exists() {
        return Err(Error::Refused(format!("{} exists: use -f to overwrite it", out.display())));
    }
    let (mut set, _) = source::open_split_set(parts, source::read_mode_from_env(), SetUse::Reassemble)?;
    let partial = partial_name(out);
    let file = create_new(&partial, force)?;
    let name = partial.display().to_string();
    let mut tell = |done: u64, total: u64| progress(Progress { done, total });
    let (sink, written) = kdump_dumpfile::kdump::reassemble(&mut set, SeekSink::new(file), &mut tell)
        .what(|| format!("cannot write {name}"))?;
    sink.into_inner().sync_all().what(|| format!("cannot flush {name}"))?;
    commit(&partial, out)?;
    Ok(Reassembled { parts: set.names().to_vec(), written, total: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_blocks_are_whole_words_of_the_bitmap() {
        assert_eq!(lcm(16, SPLIT_ALIGN), 64);
        assert_eq!(lcm(262_144, SPLIT_ALIGN), 262_144);
        assert_eq!(lcm(3, SPLIT_ALIGN), 192);
        assert_eq!(lcm(96, SPLIT_ALIGN), 192);
    }
}
