//! `kdump dump` (and `makedumpfile`): save a dump, with makedumpfile's options.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use kdump_dumpfile::notes::{VMCOREINFO_NAME, find_vmcoreinfo, push_note};
use kdump_dumpfile::{
    Codec, FlatWriter, KdumpConfig, KdumpWriter, PageState, PfnRange, PhysMem, SeekSink, rebuild_flattened,
};
use kdump_kernel::memory::X86_64Layout;
use kdump_kernel::{KernelMemory, Vmcoreinfo};
use kdump_save::elf::{ElfSegment, elf_metadata_len, save_elf};
use kdump_save::{Progress, SaveOptions, SaveReport, save_kdump};
use kdump_sys::mapped::{PathTracker, ReadMode};
use kdump_sys::usage::{peak_rss_bytes, thread_cpu_time};

use crate::dumpfile::{self, Dump, PhysAdapter};

mod filter;

/// makedumpfile's options, so distribution `core_collector` lines work unchanged.
#[derive(Debug, ClapArgs)]
pub struct DumpArgs {
    /// Dump level (bitmask of pages to leave out): 1 zero, 2 cache without private, 4 all cache, 8 user,
    /// 16 free; 31 is the usual choice. Classes the dump's VMCOREINFO cannot identify are kept, with a warning.
    #[arg(short = 'd', long = "dump-level", value_name = "LEVEL", default_value_t = 0)]
    pub level: u32,
    /// Print pages per class (zero, cache, user, free, kernel) and the dump size of every level; writes nothing.
    #[arg(long = "mem-usage")]
    pub mem_usage: bool,
    /// Compress pages with zlib.
    #[arg(short = 'c')]
    pub zlib: bool,
    /// Compress pages with LZO.
    #[arg(short = 'l')]
    pub lzo: bool,
    /// Compress pages with snappy.
    #[arg(short = 'p')]
    pub snappy: bool,
    /// Compress pages with zstd.
    #[arg(short = 'z')]
    pub zstd: bool,
    /// Write an ELF file (uncompressed) instead of kdump-compressed.
    #[arg(short = 'E')]
    pub elf: bool,
    /// Write the flattened format to standard output (for pipes such as ssh).
    #[arg(short = 'F')]
    pub flatten: bool,
    /// Rebuild a flattened stream from standard input into DEST.
    #[arg(short = 'R')]
    pub rebuild: bool,
    /// Overwrite DEST if it exists.
    #[arg(short = 'f')]
    pub force: bool,
    /// Compression threads (default: every CPU; with one CPU, 0). 0, as in makedumpfile: no
    /// threads, one reads, compresses and writes (the least memory).
    #[arg(long = "num-threads", value_name = "N")]
    pub threads: Option<usize>,
    /// 0 prints nothing but errors; progress is shown at the default (7) and above.
    #[arg(long = "message-level", value_name = "N", default_value_t = 7)]
    pub message_level: u32,
    /// Read the source with read() instead of mmap (also: KDUMP_NO_MMAP=1).
    #[arg(long = "non-mmap")]
    pub non_mmap: bool,
    /// Print the time and throughput of each stage (classification, reading, compression, writing,
    /// fsync) and the peak memory; also printed at a message level with bit 16 (e.g. 31).
    #[arg(long = "timings")]
    pub timings: bool,
    /// Save the crashed kernel's log to DEST instead of a dump.
    #[arg(long = "dump-dmesg")]
    pub dump_dmesg: bool,
    /// Exclude the struct pages of excluded memory (not built yet).
    #[arg(short = 'e')]
    pub exclude_vmemmap: bool,
    /// Split the dump into several files (not built yet).
    #[arg(long = "split")]
    pub split: bool,
    /// Reassemble split files (not built yet).
    #[arg(long = "reassemble")]
    pub reassemble: bool,
    /// A VMCOREINFO file (as `makedumpfile -g` writes) for a dump that has no VMCOREINFO note.
    #[arg(short = 'i', value_name = "VMCOREINFO")]
    pub vmcoreinfo: Option<PathBuf>,
    /// Check the options and files, then exit without reading the dump (makedumpfile's).
    #[arg(long = "check-params")]
    pub check_params: bool,
    /// Read, filter and compress everything, but write nothing (makedumpfile's).
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print the pages left out per class at the end, whatever the message level.
    #[arg(long = "show-stats")]
    pub show_stats: bool,
    /// Debug output: the stage timings (as --timings).
    #[arg(short = 'D')]
    pub debug: bool,
    /// Accepted for makedumpfile's command lines; no effect (see `kdump dump --help`).
    #[arg(long = "cyclic-buffer", value_name = "KIB")]
    pub cyclic_buffer: Option<u64>,
    /// Accepted for makedumpfile's command lines; no effect: nothing is written but DEST.
    #[arg(long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Accepted for makedumpfile's command lines; no effect: there are no cycles to turn off.
    #[arg(long = "non-cyclic")]
    pub non_cyclic: bool,
    /// Accepted for makedumpfile's command lines; no effect (bitmap cache order).
    #[arg(short = 'b', value_name = "ORDER")]
    pub cache_order: Option<u32>,
    /// Accepted for makedumpfile's command lines; no effect without --split.
    #[arg(long = "splitblock-size", value_name = "SIZE")]
    pub splitblock_size: Option<u64>,
    /// SOURCE then DEST (with -F: SOURCE only; with -R: DEST only).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

impl DumpArgs {
    /// What the options accepted for makedumpfile's sake do here, once each, for the log.
    pub fn ignored_options(&self) -> Vec<&'static str> {
        let mut notes = Vec::new();
        if self.cyclic_buffer.is_some() || self.non_cyclic {
            notes.push(
                "--cyclic-buffer/--non-cyclic have no effect: every page is classified in one pass into a \
                 one-bit-per-page map (32 KiB per GiB of RAM)",
            );
        }
        if self.work_dir.is_some() {
            notes.push("--work-dir has no effect: nothing but DEST is written");
        }
        if self.cache_order.is_some() {
            notes.push("-b has no effect: bitmaps are read block by block");
        }
        if self.splitblock_size.is_some() {
            notes.push("--splitblock-size has no effect without --split");
        }
        notes
    }
}

fn codec(a: &DumpArgs) -> anyhow::Result<Codec> {
    let chosen: Vec<Codec> =
        [(a.zlib, Codec::Zlib), (a.lzo, Codec::Lzo), (a.snappy, Codec::Snappy), (a.zstd, Codec::Zstd)]
            .into_iter()
            .filter_map(|(on, c)| on.then_some(c))
            .collect();
    match chosen.as_slice() {
        [] => Ok(Codec::None),
        [one] => Ok(*one),
        _ => bail!("choose one of -c (zlib), -l (lzo), -p (snappy) and -z (zstd)"),
    }
}

/// makedumpfile's message-level bit for debug messages: our timings go there.
const ML_PRINT_DEBUG_MSG: u32 = 16;

fn read_mode(a: &DumpArgs) -> ReadMode {
    if a.non_mmap { ReadMode::Read } else { dumpfile::read_mode_from_env() }
}

/// What to save and how: the typed form of `kdump dump`'s options, built by the
/// command line and by the capture init alike.
#[derive(Debug, Clone)]
pub struct SaveRequest {
    /// Dump level (0..=31).
    pub level: u32,
    /// Page codec (kdump-compressed and flattened output).
    pub codec: Codec,
    /// An uncompressed ELF file instead (needs [`Output::File`]).
    pub elf: bool,
    /// Compression threads; `None`: every CPU, or 0 (one thread) on one CPU.
    pub threads: Option<usize>,
    /// How the source is read.
    pub read_mode: ReadMode,
    /// makedumpfile's message level: 0 prints only errors.
    pub message_level: u32,
    /// Print the time of each stage.
    pub timings: bool,
    /// Print the pages left out per class even at message level 0.
    pub show_stats: bool,
    /// VMCOREINFO text to use where the dump has no note (`-i`).
    pub vmcoreinfo: Option<Vec<u8>>,
}

impl SaveRequest {
    /// The message level for the end-of-dump report: `--show-stats` prints it even at 0.
    fn report_level(&self) -> u32 {
        if self.show_stats { self.message_level.max(1) } else { self.message_level }
    }

    /// A kdump-compressed dump at `level` with `codec`, messages on, read as the environment says.
    pub fn new(level: u32, codec: Codec) -> Self {
        Self {
            level,
            codec,
            elf: false,
            threads: None,
            read_mode: dumpfile::read_mode_from_env(),
            message_level: 7,
            timings: false,
            show_stats: false,
            vmcoreinfo: None,
        }
    }
}

/// Where a dump goes.
pub enum Output<'a> {
    /// A file: written as `DEST.incomplete` (created 0600, never through a symlink), its
    /// metadata preallocated, fsynced and renamed to `path` once complete.
    File {
        /// DEST.
        path: &'a Path,
        /// Replace an existing DEST.
        force: bool,
    },
    /// makedumpfile's flattened format on a stream: a pipe, a raw device, a connection.
    Flattened {
        /// The stream.
        sink: &'a mut (dyn Write + Send),
        /// What it is, for messages (e.g. `standard output`, `/dev/vdb`).
        name: &'a str,
    },
}

pub fn run(a: &DumpArgs) -> anyhow::Result<()> {
    if a.exclude_vmemmap {
        bail!(
            "-e (exclude the struct pages of excluded memory) is not built yet: leave it out; the dump then keeps those struct pages, as makedumpfile does without -e"
        );
    }
    if a.split || a.reassemble {
        bail!("--split and --reassemble are not built yet: write one file (or -F to a pipe)");
    }
    if a.message_level > 0 {
        for note in a.ignored_options() {
            eprintln!("kdump: {note}");
        }
    }
    if a.rebuild {
        let [dest] = a.files.as_slice() else { bail!("usage: kdump dump -R DEST < flattened-stream") };
        return rebuild(dest, a.force);
    }
    if a.dump_dmesg {
        let [source, dest] = a.files.as_slice() else { bail!("usage: kdump dump --dump-dmesg SOURCE LOGFILE") };
        return dump_dmesg(source, dest, a.force);
    }
    if a.mem_usage {
        let [source] = a.files.as_slice() else { bail!("usage: kdump dump --mem-usage SOURCE") };
        return filter::mem_usage(source, read_mode(a));
    }
    let req = SaveRequest {
        level: a.level,
        codec: codec(a)?,
        elf: a.elf,
        threads: a.threads,
        read_mode: read_mode(a),
        message_level: a.message_level,
        timings: a.timings || a.debug,
        show_stats: a.show_stats,
        vmcoreinfo: match &a.vmcoreinfo {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("-i: cannot read {}", path.display()))?),
            None => None,
        },
    };
    if a.elf && a.flatten {
        bail!("ELF output (-E) is uncompressed and needs a seekable file: leave out -F");
    }
    if a.level > 31 {
        bail!("dump level {} is out of range: use 0 to 31", a.level);
    }
    if a.check_params {
        let (n, what) = if a.flatten { (1, "SOURCE") } else { (2, "SOURCE DEST") };
        if a.files.len() != n {
            bail!("--check-params: expected {what}");
        }
        let source = &a.files[0];
        std::fs::metadata(source).with_context(|| format!("--check-params: cannot read {}", source.display()))?;
        if a.message_level > 0 {
            eprintln!("kdump: the options and {} are valid", source.display());
        }
        return Ok(());
    }
    if a.dry_run {
        let [source, ..] = a.files.as_slice() else { bail!("usage: kdump dump --dry-run [OPTIONS] SOURCE [DEST]") };
        if a.elf {
            bail!("--dry-run writes nothing, so -E has nothing to check: leave one of them out");
        }
        // Everything but the writing: the same pages read, filtered and compressed into a
        // flattened stream that goes nowhere.
        let mut nowhere = std::io::sink();
        return save(source, Output::Flattened { sink: &mut nowhere, name: "nowhere (--dry-run)" }, &req);
    }
    match (a.flatten, a.files.as_slice()) {
        (true, [source]) => {
            let mut stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
            save(source, Output::Flattened { sink: &mut stdout, name: "standard output" }, &req)
        }
        (false, [source, dest]) => save(source, Output::File { path: dest, force: a.force }, &req),
        (true, _) => bail!("usage: kdump dump -F [OPTIONS] SOURCE > stream"),
        (false, _) => bail!("usage: kdump dump [OPTIONS] SOURCE DEST"),
    }
}

/// Saves `source` to `output` as `req` says: what `kdump dump` and the capture init run.
pub fn save(source: &Path, output: Output<'_>, req: &SaveRequest) -> anyhow::Result<()> {
    let started = Instant::now();
    if req.level > 31 {
        bail!("dump level {} is out of range: use 0 to 31", req.level);
    }
    if req.elf && (req.codec != Codec::None || matches!(output, Output::Flattened { .. })) {
        bail!("ELF output (-E) is uncompressed and needs a seekable file: leave out -c/-l/-p/-z and -F");
    }
    if let Output::File { path, force: false } = output
        && path.exists()
    {
        bail!("{} exists: use -f to overwrite it", path.display());
    }
    let mode = req.read_mode;
    let mut dump = dumpfile::open_with(source, mode)?;
    if let Some(text) = &req.vmcoreinfo
        && let Some(warning) = dump.give_vmcoreinfo(text.clone())
        && req.message_level > 0
    {
        eprintln!("kdump: warning: {warning}");
    }
    // A dump without a VMCOREINFO note (QEMU's) is still filtered, and the
    // output carries the note, when the kernel's own is found in memory.
    match dump.resolve_vmcoreinfo() {
        Ok(Some(at)) if req.message_level > 0 => eprintln!("kdump: VMCOREINFO {}", dumpfile::found_in_memory(at)),
        Ok(_) => {}
        Err(e) if req.message_level > 0 => eprintln!("kdump: warning: {e:#}"),
        Err(_) => {}
    }
    let mut filter = filter::build(source, &dump, req.level, mode)?;
    if req.message_level > 0 {
        for w in &filter.limits {
            eprintln!("kdump: warning: {w}");
        }
    }
    // One struct-page pass decides every page before any is read.
    let classifying = Instant::now();
    let kept = filter.decide_all(source, &dump, req.level, mode)?;
    let mut timings = Timings::new(started, req, &dump);
    timings.classification = Some((classifying.elapsed(), dump.mem.ram_ranges().iter().map(|r| r.end - r.start).sum()));
    if req.elf {
        let Output::File { path, force } = output else { bail!("ELF output needs a file") };
        return save_elf_file(&mut dump, path, force, req, &mut filter, timings);
    }
    // The header records the level actually applied (never more than was filtered).
    let mut config = config(&mut dump, req.codec, filter.effective_level)?;
    if is_running_kernel(source) {
        // A live dump: marked in the VMCOREINFO it carries, so readers do not look for a panic.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Some(text) = config.vmcoreinfo.as_mut() {
            text.extend_from_slice(format!("{}={now}\n", kdump_kernel::vmcoreinfo::LIVE_DUMP_KEY).as_bytes());
            // The writer takes VMCOREINFO from the notes when they hold it, as /proc/kcore's do.
            config.notes = kdump_dumpfile::notes::with_vmcoreinfo(&config.notes, text);
        }
        if req.message_level > 0 {
            eprintln!("kdump: a live dump of the running kernel: memory changes while it is read");
        }
    }
    config.descriptor_slots = kept;
    // One CPU (the capture kernel's nr_cpus=1): read, compress and write on one thread.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = req.threads.unwrap_or(if cpus == 1 { 0 } else { cpus });
    let opts = SaveOptions { threads, clock: thread_cpu_time, ..SaveOptions::default() };
    // Level bit 1 is handled by the writer (zero pages share one block, as
    // makedumpfile does); the other bits by the struct-page filter.
    let keep = |pfn: u64| filter.keep(pfn);
    let reporter = ProgressPrinter::new(req.message_level);

    match output {
        Output::Flattened { sink, name } => {
            let flat = FlatWriter::new(sink).with_context(|| format!("cannot write to {name}"))?;
            let writer = KdumpWriter::new(flat, config)?;
            let (sink, report) = save_kdump(dump.mem.as_mut(), writer, &opts, keep, |p| reporter.show(p))?;
            sink.finish()
                .and_then(|w| w.flush())
                .with_context(|| format!("cannot finish the flattened stream on {name}"))?;
            filter_report(&filter, req.report_level());
            timings.show(Some(&report), report.written.file_size, None);
            finish_report(&report, name, req.message_level)
        }
        Output::File { path: dest, force } => {
            let partial = partial_name(dest);
            let file = create_new(&partial, force)?;
            let handle = file.try_clone().context("cannot duplicate the dump file handle")?;
            let writer = KdumpWriter::new(SeekSink::new(file), config)?;
            preallocate(&handle, writer.metadata_len(), &partial)?;
            let (sink, report) = save_kdump(dump.mem.as_mut(), writer, &opts, keep, |p| reporter.show(p))?;
            let file = sink.into_inner();
            let syncing = Instant::now();
            let synced = file.sync_all();
            let fsync = syncing.elapsed();
            if report.incomplete_reason.is_none() {
                synced.with_context(|| format!("cannot flush {}", partial.display()))?;
                std::fs::rename(&partial, dest)
                    .with_context(|| format!("cannot rename {} to {}", partial.display(), dest.display()))?;
                sync_parent(dest);
            }
            filter_report(&filter, req.report_level());
            timings.show(Some(&report), report.written.file_size, Some(fsync));
            finish_report(&report, &dest.display().to_string(), req.message_level)
                .with_context(|| format!("the pages written so far are in {} (marked incomplete)", partial.display()))
        }
    }
}

/// `kdump dump -E`: an ELF vmcore, for gdb and tools that read only ELF.
fn save_elf_file(
    dump: &mut Dump,
    dest: &Path,
    force: bool,
    req: &SaveRequest,
    filter: &mut filter::Filter,
    timings: Timings,
) -> anyhow::Result<()> {
    let page = dump.mem.page_size();
    // Segments: the source's own PT_LOADs (virtual addresses included), or its RAM.
    let segments: Vec<ElfSegment> = match &dump.elf_segments {
        Some(segs) => segs
            .iter()
            .map(|&(paddr, vaddr, memsz)| {
                let start = paddr / page * page;
                let end = (paddr + memsz).div_ceil(page) * page;
                ElfSegment { paddr: start, vaddr: vaddr.wrapping_sub(paddr - start), len: end - start }
            })
            .collect(),
        None => dump
            .mem
            .ram_ranges()
            .iter()
            .map(|r| ElfSegment { paddr: r.start * page, vaddr: 0, len: (r.end - r.start) * page })
            .collect(),
    };
    let partial = partial_name(dest);
    let file = create_new(&partial, force)?;
    // A VMCOREINFO found in memory becomes a note of the output, as in kdump-compressed output.
    let mut notes = dump.mem.notes().to_vec();
    if dump.mem.vmcoreinfo().is_none()
        && let Some(found) = dump.vmcoreinfo_raw()
    {
        notes.resize(notes.len().next_multiple_of(4), 0);
        push_note(&mut notes, VMCOREINFO_NAME, 0, found);
    }
    preallocate(&file, elf_metadata_len(segments.len(), notes.len(), page), &partial)?;
    let mut sink = SeekSink::new(file);
    let mut source = WithNotes { mem: dump.mem.as_mut(), notes };
    let report = save_elf(&mut source, &mut sink, &segments, req.level & 1 != 0, |pfn| filter.keep(pfn))
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let file = sink.into_inner();
    if let Some(reason) = &report.incomplete_reason {
        let _ = file.sync_all();
        bail!(
            "the dump is INCOMPLETE: writing stopped ({reason}) after {} pages; the pages written so far are in {} \
             (ELF e_flags bit 0 set)",
            report.pages_written,
            partial.display()
        );
    }
    let syncing = Instant::now();
    file.sync_all().with_context(|| format!("cannot flush {}", partial.display()))?;
    let fsync = syncing.elapsed();
    std::fs::rename(&partial, dest)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dest.display()))?;
    sync_parent(dest);
    filter_report(filter, req.report_level());
    timings.show(None, report.file_size, Some(fsync));
    if req.message_level > 0 {
        eprintln!(
            "kdump: saved {} pages in {} segments to {} ({} left out): {:.1} MiB",
            report.pages_written,
            report.segments,
            dest.display(),
            report.pages_dropped,
            report.file_size as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}

/// A dump whose notes are replaced (pages and ranges are the dump's own).
struct WithNotes<'a> {
    mem: &'a mut dyn PhysMem,
    notes: Vec<u8>,
}

impl PhysMem for WithNotes<'_> {
    fn page_size(&self) -> u64 {
        self.mem.page_size()
    }
    fn max_pfn(&self) -> u64 {
        self.mem.max_pfn()
    }
    fn ram_ranges(&self) -> &[PfnRange] {
        self.mem.ram_ranges()
    }
    fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> kdump_dumpfile::Result<PageState> {
        self.mem.read_page(pfn, buf)
    }
    fn notes(&self) -> &[u8] {
        &self.notes
    }
    fn vmcoreinfo(&self) -> Option<&[u8]> {
        find_vmcoreinfo(&self.notes, true).map(|(_, v)| v)
    }
}

/// True for `/proc/kcore`: the running kernel's memory, not a crashed one's.
fn is_running_kernel(source: &Path) -> bool {
    std::fs::canonicalize(source).is_ok_and(|p| p == Path::new("/proc/kcore"))
}

/// `DEST.incomplete`: where the dump is written until it is complete.
fn partial_name(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".incomplete");
    PathBuf::from(name)
}

/// Creates a new file 0600, refusing to follow a symlink or reuse a file.
fn create_new(path: &Path, force: bool) -> anyhow::Result<File> {
    if force {
        let _ = std::fs::remove_file(path);
    }
    kdump_sys::file::create_private(path)
        .with_context(|| format!("cannot create {} (use -f to replace an old one)", path.display()))
}

/// Allocates the headers, bitmaps and descriptor table on disk before any
/// page is written: if the disk fills up later, the file can still be
/// finished as incomplete without needing more space. Filesystems without
/// fallocate still work, just without this guarantee.
fn preallocate(file: &File, len: u64, path: &Path) -> anyhow::Result<()> {
    kdump_sys::file::reserve_space_if_supported(file, len).map(|_| ()).with_context(|| {
        format!(
            "cannot reserve {:.1} MiB for the dump's headers and page table in {}",
            len as f64 / (1 << 20) as f64,
            path.display()
        )
    })
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Pages left out per class, and anything the filter had to keep.
fn filter_report(filter: &filter::Filter, level: u32) {
    if level == 0 {
        return;
    }
    for w in filter.warnings().iter().skip(filter.limits.len()) {
        eprintln!("kdump: warning: {w}");
    }
    let excluded = filter.excluded();
    if !excluded.is_empty() {
        let parts: Vec<String> = excluded.iter().map(|(c, n)| format!("{n} {}", c.name())).collect();
        eprintln!("kdump: dump level {} left out {} pages", filter.effective_level, parts.join(", "));
    }
}

fn finish_report(report: &SaveReport, dest: &str, level: u32) -> anyhow::Result<()> {
    if report.unreadable_count > 0 {
        eprintln!(
            "kdump: {} source pages could not be read and were left out (first PFNs: {:x?})",
            report.unreadable_count,
            &report.unreadable[..report.unreadable.len().min(8)]
        );
    }
    if let Some(reason) = &report.incomplete_reason {
        bail!(
            "the dump is INCOMPLETE: writing stopped ({reason}) after {} pages; readers will report the rest as missing",
            report.written.pages
        );
    }
    if level > 0 {
        eprintln!(
            "kdump: saved {} pages ({} zero, {} stored raw) to {dest}: {:.1} MiB",
            report.written.pages,
            report.written.zero_pages,
            report.written.raw_pages,
            report.written.file_size as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}

/// The kdump header fields a reader uses: kernel identity, CPUs, notes.
fn config(dump: &mut Dump, codec: Codec, level: u32) -> anyhow::Result<KdumpConfig> {
    let page_size = u32::try_from(dump.mem.page_size()).context("page size")?;
    let mut cfg = KdumpConfig::new(page_size, dump.mem.max_pfn(), dump.mem.ram_ranges().to_vec(), codec);
    cfg.share_zero_pages = level & 1 != 0;
    cfg.dump_level = level as i32;
    cfg.notes = dump.mem.notes().to_vec();
    cfg.vmcoreinfo = dump.vmcoreinfo_raw().map(<[u8]>::to_vec);
    cfg.nr_cpus = kdump_kernel::prstatus::cpu_states(&cfg.notes).len().max(1) as i32;
    // SOURCE_DATE_EPOCH (the reproducible-builds convention) pins the header's time, so the
    // same memory saved twice is the same file.
    let pinned = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<i64>().ok());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    cfg.timestamp = pinned.map_or((now.as_secs() as i64, i64::from(now.subsec_micros())), |s| (s, 0));
    if let Some(raw) = &cfg.vmcoreinfo {
        let info = Vmcoreinfo::parse(raw);
        cfg.phys_base = info.number("phys_base").unwrap_or(0) as u64;
        if let Ok(layout) = X86_64Layout::from_vmcoreinfo(&info) {
            let mut mem = KernelMemory::new(PhysAdapter::new(dump.mem.as_mut()), layout);
            let id = crate::kernel::identity(&mut mem, &info);
            cfg.utsname.release = id.release.unwrap_or_default();
            cfg.utsname.version = id.version.unwrap_or_default();
            cfg.utsname.machine = id.machine.unwrap_or_default();
            cfg.utsname.nodename = id.nodename.unwrap_or_default();
            let cpus = kdump_kernel::prstatus::cpu_states(&cfg.notes);
            if let Some(cpu) = crate::kernel::crashing(&mut mem, &info, &cpus)
                && cpu.method != kdump_kernel::crashing::CrashingCpuMethod::Guess
            {
                cfg.current_cpu = cpu.index as u32;
            }
        }
    }
    Ok(cfg)
}

fn rebuild(dest: &Path, force: bool) -> anyhow::Result<()> {
    let partial = partial_name(dest);
    let file = create_new(&partial, force)?;
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(file);
    rebuild_flattened(stdin, &mut out).context("cannot rebuild the flattened stream from standard input")?;
    let file = out.into_inner().map_err(|e| e.into_error()).context("cannot write the rebuilt file")?;
    file.sync_all()?;
    std::fs::rename(&partial, dest)?;
    sync_parent(dest);
    Ok(())
}

fn dump_dmesg(source: &Path, dest: &Path, force: bool) -> anyhow::Result<()> {
    let mut dump = dumpfile::open(source)?;
    let records = crate::dmesg::records(&mut dump)?;
    let mut file = create_new(dest, force)?;
    file.write_all(&kdump_kernel::printk::format_like_makedumpfile(&records))?;
    file.sync_all()?;
    eprintln!("The dmesg log is saved to {}.", dest.display());
    Ok(())
}

/// Progress on a terminal (one line updated at most once a second) or
/// elsewhere (a line per 10%, readable in a serial-console log).
struct ProgressPrinter {
    level: u32,
    tty: bool,
    last_step: std::cell::Cell<u64>,
    last_time: std::cell::Cell<Option<std::time::Instant>>,
}

impl ProgressPrinter {
    fn new(level: u32) -> Self {
        Self {
            level,
            tty: std::io::stderr().is_terminal(),
            last_step: std::cell::Cell::new(u64::MAX),
            last_time: std::cell::Cell::new(None),
        }
    }

    fn show(&self, p: Progress) {
        if self.level == 0 || p.total == 0 {
            return;
        }
        let finished = p.done == p.total;
        let mut err = std::io::stderr().lock();
        if self.tty {
            let now = std::time::Instant::now();
            let due = self.last_time.get().is_none_or(|t| now.duration_since(t).as_secs() >= 1);
            if !due && !finished {
                return;
            }
            self.last_time.set(Some(now));
            let _ = write!(err, "\rCopying data: [{:5.1} %]", p.done as f64 * 100.0 / p.total as f64);
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let step = p.done * 10 / p.total;
            if step != self.last_step.get() {
                self.last_step.set(step);
                let _ = writeln!(err, "kdump: {}% ({} of {} pages)", step * 10, p.done, p.total);
            }
        }
    }
}

/// Per-stage times for `--timings` (or message level bit 16).
struct Timings {
    on: bool,
    started: Instant,
    /// The struct-page pass: its time and the RAM pages it decided.
    classification: Option<(Duration, u64)>,
    page_size: u64,
    source: PathTracker,
}

impl Timings {
    fn new(started: Instant, req: &SaveRequest, dump: &Dump) -> Self {
        Self {
            on: req.timings || req.message_level & ML_PRINT_DEBUG_MSG != 0,
            started,
            classification: None,
            page_size: dump.mem.page_size(),
            source: dump.read_path.clone(),
        }
    }

    fn show(&self, report: Option<&SaveReport>, out_bytes: u64, fsync: Option<Duration>) {
        if !self.on {
            return;
        }
        let mb = |b: u64| b as f64 / 1e6;
        let rate = |b: u64, d: Duration| {
            let s = d.as_secs_f64();
            if s > 0.0 { format!("{:.1} MB/s", mb(b) / s) } else { "-".to_string() }
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "kdump: timings (source read by {}; stages in CPU seconds of their threads):",
            self.source.get()
        );
        if let Some((d, pages)) = self.classification {
            let ram = pages * self.page_size;
            let _ = writeln!(
                err,
                "kdump:   classification {:8.3} s  {:>10.1} MB of RAM  {}",
                d.as_secs_f64(),
                mb(ram),
                rate(ram, d)
            );
        }
        if let Some(r) = report {
            let t = &r.times;
            let read = t.bytes_read;
            let _ = writeln!(
                err,
                "kdump:   reading        {:8.3} s  {:>10.1} MB          {}",
                t.reading.as_secs_f64(),
                mb(read),
                rate(read, t.reading)
            );
            let _ = writeln!(
                err,
                "kdump:   compression    {:8.3} s  {:>10.1} MB in       {}",
                t.encoding.as_secs_f64(),
                mb(read),
                rate(read, t.encoding)
            );
            let _ = writeln!(
                err,
                "kdump:   writing        {:8.3} s  {:>10.1} MB out      {}",
                t.writing.as_secs_f64(),
                mb(out_bytes),
                rate(out_bytes, t.writing)
            );
        }
        if let Some(d) = fsync {
            let _ = writeln!(err, "kdump:   fsync          {:8.3} s", d.as_secs_f64());
        }
        let _ = writeln!(
            err,
            "kdump:   total          {:8.3} s  peak RSS {:.1} MiB",
            self.started.elapsed().as_secs_f64(),
            peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64)
        );
    }
}
