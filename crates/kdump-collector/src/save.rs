//! Saving a dump: `save(source, sink, request)` for `kdump dump`, `makedumpfile` and the
//! capture init alike. The request is typed (no command line is parsed here); what happens is
//! reported to an [`Observer`] while it happens and in the returned [`Saved`] at the end. Nothing
//! here prints.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kdump_dumpfile::notes::{VMCOREINFO_NAME, find_vmcoreinfo, push_note};
use kdump_dumpfile::{
    Codec, FlatWriter, KdumpConfig, KdumpWriter, LimitedSink, PageState, PfnRange, PhysMem, SeekSink, WriteAt,
    rebuild_flattened,
};
use kdump_kernel::memory::{START_KERNEL_MAP, X86_64Layout};
use kdump_kernel::pages::PageClass;
use kdump_kernel::{KernelMemory, Vmcoreinfo};
use kdump_save::elf::{ElfReport, ElfSegment, elf_metadata_len, save_elf};
use kdump_save::{Progress, SaveOptions, SaveReport, save_kdump};
use kdump_sys::mapped::ReadMode;
use kdump_sys::usage::thread_cpu_time;

use crate::error::{Context, Error, Result};
use crate::filter::{self, Filter};
use crate::source::{self, Dump, PhysAdapter};

/// What to save and how: the typed form of `kdump dump`'s options.
#[derive(Debug, Clone)]
pub struct SaveRequest {
    /// Dump level (0..=31).
    pub level: u32,
    /// Page codec (kdump-compressed and flattened output).
    pub codec: Codec,
    /// An uncompressed ELF file instead (needs [`Sink::File`]).
    pub elf: bool,
    /// Compression threads; `None`: every CPU, or 0 (one thread) on one CPU.
    pub threads: Option<usize>,
    /// How the source is read.
    pub read_mode: ReadMode,
    /// VMCOREINFO text to use where the dump has no note (`-i`).
    pub vmcoreinfo: Option<Vec<u8>>,
    /// Leave out the struct pages (vmemmap) that describe only left-out pages (`-e`).
    pub exclude_vmemmap: bool,
    /// Stop at this many bytes of a kdump-compressed file ([`Sink::File`]): the dump ends
    /// there, marked incomplete, as on a full disk (`-L`).
    pub size_limit: Option<u64>,
    /// In ELF output, a PT_LOAD for every kernel virtual range the crashed kernel's page
    /// tables map (modules, vmalloc, per-CPU, vmemmap), over the pages already written, so
    /// `gdb -c` reads them; off: the kernel's own layout (text and direct map only).
    pub elf_virtual: bool,
}

impl SaveRequest {
    /// A kdump-compressed dump at `level` with `codec`, read as the environment says.
    pub fn new(level: u32, codec: Codec) -> Self {
        Self {
            level,
            codec,
            elf: false,
            threads: None,
            read_mode: source::read_mode_from_env(),
            vmcoreinfo: None,
            exclude_vmemmap: false,
            size_limit: None,
            elf_virtual: true,
        }
    }
}

/// Where a dump goes.
pub enum Sink<'a> {
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
        stream: &'a mut (dyn Write + Send),
        /// What it is, for messages (e.g. `standard output`, `/dev/vdb`).
        name: &'a str,
    },
    /// A kdump-compressed file written at offsets into something that is not a local file (a
    /// remote file, an object being uploaded). Its owner makes it durable and visible.
    Positioned {
        /// Takes bytes at absolute offsets.
        sink: &'a mut (dyn WriteAt + Send),
        /// What it is, for messages (e.g. `sftp://host/var/crash/…/vmcore`).
        name: &'a str,
        /// Start the page data at a multiple of this, after the metadata (an S3 multipart
        /// upload's part size: the metadata parts are then apart from the data parts).
        data_alignment: Option<u64>,
    },
}

impl std::fmt::Debug for Sink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::File { path, force } => f.debug_struct("File").field("path", path).field("force", force).finish(),
            Sink::Flattened { name, .. } => f.debug_struct("Flattened").field("name", name).finish_non_exhaustive(),
            Sink::Positioned { name, .. } => f.debug_struct("Positioned").field("name", name).finish_non_exhaustive(),
        }
    }
}

/// A notice while saving: shown before the long part, not collected to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Something the operator should know (a class kept, a note ignored).
    Warning(String),
    /// VMCOREINFO was found in memory at this physical address (the dump has no note).
    VmcoreinfoFound(u64),
    /// The source is the running kernel (`/proc/kcore`): memory changes while it is read.
    LiveDump,
}

/// Receives what happens while a dump is saved.
pub trait Observer {
    /// A notice, as soon as it is known.
    fn notice(&mut self, notice: Notice);
    /// Progress, about every batch of pages.
    fn progress(&self, progress: Progress);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn notice(&mut self, _: Notice) {}
    fn progress(&self, _: Progress) {}
}

/// What a save wrote, in either format.
#[derive(Debug, Clone)]
pub enum Written {
    /// kdump-compressed or flattened.
    Kdump(SaveReport),
    /// ELF.
    Elf(ElfReport),
}

/// The end of a save: what was written and left out, and where the time went.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Where it went, for messages.
    pub dest: String,
    /// What was written.
    pub written: Written,
    /// The level applied (the requested one minus classes that could not be decided).
    pub effective_level: u32,
    /// Pages left out per class.
    pub excluded: Vec<(PageClass, u64)>,
    /// Vmemmap pages `-e` left out.
    pub vmemmap_excluded: Option<u64>,
    /// What the filter found while saving (unreadable struct pages, odd free orders).
    pub late_warnings: Vec<String>,
    /// Set when the dump is incomplete: why, and where its pages are.
    pub incomplete: Option<Incomplete>,
    /// Stage times.
    pub timings: Timings,
    /// For `--split`: each file, in PFN order (empty for one file).
    pub parts: Vec<SavedPart>,
}

/// One file of a split dump.
#[derive(Debug, Clone)]
pub struct SavedPart {
    /// The file.
    pub dest: PathBuf,
    /// The PFNs whose pages it holds.
    pub range: PfnRange,
    /// What was written to it.
    pub report: SaveReport,
}

impl Saved {
    /// What was saved, with the filter's account of what it left out.
    pub(crate) fn new(
        filter: &Filter,
        dest: String,
        written: Written,
        incomplete: Option<Incomplete>,
        timings: Timings,
        parts: Vec<SavedPart>,
    ) -> Saved {
        Saved {
            dest,
            written,
            effective_level: filter.effective_level,
            excluded: filter.excluded(),
            vmemmap_excluded: filter.vmemmap_excluded(),
            late_warnings: filter.warnings().into_iter().skip(filter.limits.len()).collect(),
            incomplete,
            timings,
            parts,
        }
    }

    /// Bytes in the output.
    pub fn file_size(&self) -> u64 {
        match &self.written {
            Written::Kdump(r) => r.written.file_size,
            Written::Elf(r) => r.file_size,
        }
    }
}

/// An incomplete dump: writing stopped early (a full disk, a lost connection).
#[derive(Debug, Clone)]
pub struct Incomplete {
    /// Why writing stopped.
    pub reason: String,
    /// Pages written before it stopped.
    pub pages: u64,
    /// The partial file, for a [`Sink::File`].
    pub partial: Option<PathBuf>,
}

/// Where the time of a save went.
#[derive(Debug, Clone)]
pub struct Timings {
    /// From the call to the end.
    pub total: Duration,
    /// The struct-page pass: its time and the RAM pages it decided.
    pub classification: Option<(Duration, u64)>,
    /// The final fsync of a file.
    pub fsync: Option<Duration>,
    /// The source's page size.
    pub page_size: u64,
    /// How the source was read (`mmap`, `read`).
    pub read_path: String,
}

/// Saves `source` to `sink` as `req` says.
pub fn save(source: &Path, sink: Sink<'_>, req: &SaveRequest, observer: &mut dyn Observer) -> Result<Saved> {
    let started = Instant::now();
    if req.level > 31 {
        return Err(Error::Refused(format!("dump level {} is out of range: use 0 to 31", req.level)));
    }
    if req.elf && (req.codec != Codec::None || !matches!(sink, Sink::File { .. })) {
        return Err(Error::Refused(
            "ELF output (-E) is uncompressed and needs a seekable file: leave out -c/-l/-p/-z and -F".to_string(),
        ));
    }
    if let Sink::File { path, force: false } = sink
        && path.exists()
    {
        return Err(Error::Refused(format!("{} exists: use -f to overwrite it", path.display())));
    }
    let Prepared { mut dump, mut filter, kept, mut timings } = prepare(source, req, observer)?;
    let (dest, written, incomplete) = if req.elf {
        let Sink::File { path, force } = sink else { unreachable!("checked above") };
        save_elf_file(&mut dump, source, path, force, req, &mut filter, &mut timings, observer)?
    } else {
        save_kdump_format(&mut dump, source, sink, req, &mut filter, kept, &mut timings, observer)?
    };
    timings.total = started.elapsed();
    Ok(Saved::new(&filter, dest, written, incomplete, timings, Vec::new()))
}

/// A dump ready to be written: opened, its VMCOREINFO resolved, every page decided.
pub(crate) struct Prepared {
    pub(crate) dump: Dump,
    pub(crate) filter: Filter,
    /// Pages the filter keeps, when it decided them by struct page.
    pub(crate) kept: Option<u64>,
    pub(crate) timings: Timings,
}

/// What every save does before writing: opens `source`, resolves its VMCOREINFO, builds the
/// filter for the level and decides every page, telling `observer` what it finds.
pub(crate) fn prepare(source: &Path, req: &SaveRequest, observer: &mut dyn Observer) -> Result<Prepared> {
    let mode = req.read_mode;
    let mut dump = source::open_with(source, mode)?;
    if let Some(text) = &req.vmcoreinfo
        && let Some(warning) = dump.give_vmcoreinfo(text.clone())
    {
        observer.notice(Notice::Warning(warning));
    }
    // A dump without a VMCOREINFO note (QEMU's) is still filtered, and the
    // output carries the note, when the kernel's own is found in memory.
    match dump.resolve_vmcoreinfo() {
        Ok(Some(at)) => observer.notice(Notice::VmcoreinfoFound(at)),
        Ok(None) => {}
        Err(e) => observer.notice(Notice::Warning(error_chain(&e))),
    }
    let mut filter = filter::build(source, &dump, req.level, mode)?;
    for w in &filter.limits {
        observer.notice(Notice::Warning(w.clone()));
    }
    if req.exclude_vmemmap {
        filter.exclude_vmemmap();
    }
    // One struct-page pass decides every page before any is read.
    let classifying = Instant::now();
    let kept = filter.decide_all(source, &dump, req.level, mode)?;
    if req.exclude_vmemmap && filter.vmemmap_excluded().is_none() {
        observer.notice(Notice::Warning(
            "-e has no effect here: it needs the struct-page pass (a dump level with 2, 4, 8 or 16, and a \
             VMCOREINFO that locates struct pages) on a machine of at most 2 TiB"
                .to_string(),
        ));
    }
    let ram_pages = dump.mem.ram_ranges().iter().map(|r| r.end - r.start).sum();
    let timings = Timings {
        total: Duration::ZERO,
        classification: Some((classifying.elapsed(), ram_pages)),
        fsync: None,
        page_size: dump.mem.page_size(),
        read_path: dump.read_path.get().to_string(),
    };
    Ok(Prepared { dump, filter, kept, timings })
}

type Outcome = (String, Written, Option<Incomplete>);

#[allow(clippy::too_many_arguments)] // one call site; the pieces are the save's own state
fn save_kdump_format(
    dump: &mut Dump,
    source: &Path,
    sink: Sink<'_>,
    req: &SaveRequest,
    filter: &mut Filter,
    kept: Option<u64>,
    timings: &mut Timings,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let mut config = output_config(dump, source, req, filter, observer)?;
    config.descriptor_slots = kept;
    // One CPU (the capture kernel's nr_cpus=1): read, compress and write on one thread.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = req.threads.unwrap_or(if cpus == 1 { 0 } else { cpus });
    let opts = SaveOptions { threads, clock: thread_cpu_time, ..SaveOptions::default() };
    // Level bit 1 is handled by the writer (zero pages share one block, as
    // makedumpfile does); the other bits by the struct-page filter.
    let keep = |pfn: u64| filter.keep(pfn);
    let progress = |p: Progress| observer.progress(p);
    let incomplete = |r: &SaveReport, partial: Option<PathBuf>| {
        r.incomplete_reason.clone().map(|reason| Incomplete { reason, pages: r.written.pages, partial })
    };
    match sink {
        Sink::Flattened { stream, name } => {
            let flat = FlatWriter::new(stream).what(|| format!("cannot write to {name}"))?;
            let writer = KdumpWriter::new(flat, config).what(|| format!("cannot start the dump on {name}"))?;
            let (flat, report) =
                save_kdump(dump.mem.as_mut(), writer, &opts, keep, progress).map_err(|e| saving_failed(name, e))?;
            flat.finish().and_then(|w| w.flush()).what(|| format!("cannot finish the flattened stream on {name}"))?;
            let incomplete = incomplete(&report, None);
            Ok((name.to_string(), Written::Kdump(report), incomplete))
        }
        Sink::Positioned { sink, name, data_alignment } => {
            config.data_alignment = data_alignment;
            let writer = KdumpWriter::new(&mut *sink, config).what(|| format!("cannot start the dump on {name}"))?;
            let (sink, report) =
                save_kdump(dump.mem.as_mut(), writer, &opts, keep, progress).map_err(|e| saving_failed(name, e))?;
            sink.flush().what(|| format!("cannot finish the dump on {name}"))?;
            let incomplete = incomplete(&report, None);
            Ok((name.to_string(), Written::Kdump(report), incomplete))
        }
        Sink::File { path: dest, force } => {
            let partial = partial_name(dest);
            let file = create_new(&partial, force)?;
            let handle = file.try_clone().what(|| "cannot duplicate the dump file handle".to_string())?;
            let limited = LimitedSink::new(SeekSink::new(file), req.size_limit.unwrap_or(u64::MAX));
            let writer = KdumpWriter::new(limited, config).what(|| format!("cannot start {}", partial.display()))?;
            preallocate(&handle, writer.metadata_len(), &partial)?;
            let (sink, report) = save_kdump(dump.mem.as_mut(), writer, &opts, keep, progress)
                .map_err(|e| saving_failed(&partial.display().to_string(), e))?;
            let file = sink.into_inner().into_inner();
            let syncing = Instant::now();
            let synced = file.sync_all();
            timings.fsync = Some(syncing.elapsed());
            let incomplete = incomplete(&report, Some(partial.clone()));
            if incomplete.is_none() {
                synced.what(|| format!("cannot flush {}", partial.display()))?;
                commit(&partial, dest)?;
            }
            Ok((dest.display().to_string(), Written::Kdump(report), incomplete))
        }
    }
}

/// The kdump header of the output: the dump's identity, the level applied, `-e`; a live dump
/// (of /proc/kcore) says so in its VMCOREINFO.
pub(crate) fn output_config(
    dump: &mut Dump,
    source: &Path,
    req: &SaveRequest,
    filter: &Filter,
    observer: &mut dyn Observer,
) -> Result<KdumpConfig> {
    // The header records the level actually applied (never more than was filtered).
    let mut config = kdump_config(dump, req.codec, filter.effective_level)?;
    if is_running_kernel(source) {
        if let Some(text) = config.vmcoreinfo.as_mut() {
            // The writer takes VMCOREINFO from the notes when they hold it, as /proc/kcore's do.
            config.notes = live_notes(&config.notes, text);
        }
        observer.notice(Notice::LiveDump);
    }
    config.excluded_vmemmap = filter.vmemmap_excluded().is_some_and(|n| n > 0);
    Ok(config)
}

pub(crate) fn saving_failed(name: &str, e: kdump_save::SaveError) -> Error {
    match e {
        kdump_save::SaveError::Dumpfile(source) => {
            Error::Dump { what: format!("cannot save the dump to {name}"), source }
        }
    }
}

/// `-E`: an ELF vmcore, for gdb and tools that read only ELF.
#[allow(clippy::too_many_arguments)]
fn save_elf_file(
    dump: &mut Dump,
    source: &Path,
    dest: &Path,
    force: bool,
    req: &SaveRequest,
    filter: &mut Filter,
    timings: &mut Timings,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let page = dump.mem.page_size();
    // Segments: the source's own PT_LOADs (virtual addresses included), or its RAM. A
    // PT_LOAD wholly inside earlier ones is a virtual alias of a dump we wrote (they are
    // made again below), except the kernel text, which /proc/vmcore repeats from RAM.
    let segments: Vec<ElfSegment> = match &dump.elf_segments {
        Some(segs) => {
            let mut kept: Vec<ElfSegment> = Vec::with_capacity(segs.len());
            for &(paddr, vaddr, memsz) in segs {
                let start = paddr / page * page;
                let end = (paddr + memsz).div_ceil(page) * page;
                let seg = ElfSegment { paddr: start, vaddr: vaddr.wrapping_sub(paddr - start), len: end - start };
                let text = vaddr.wrapping_sub(START_KERNEL_MAP) < KERNEL_TEXT_AREA;
                if text || !covered(&kept, start, end) {
                    kept.push(seg);
                }
            }
            kept
        }
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
    if is_running_kernel(source)
        && let Some(text) = dump.vmcoreinfo_raw()
    {
        let mut text = text.to_vec();
        notes = live_notes(&notes, &mut text);
        observer.notice(Notice::LiveDump);
    }
    let aliases = if req.elf_virtual { virtual_aliases(dump, &segments, observer) } else { Vec::new() };
    preallocate(&file, elf_metadata_len(segments.len(), aliases.len(), notes.len(), page), &partial)?;
    let mut sink = SeekSink::new(file);
    let mut source = WithNotes { mem: dump.mem.as_mut(), notes };
    let report = save_elf(&mut source, &mut sink, &segments, &aliases, req.level & 1 != 0, |pfn| filter.keep(pfn))
        .what(|| format!("cannot write {}", partial.display()))?;
    let file = sink.into_inner();
    if let Some(reason) = &report.incomplete_reason {
        let _ = file.sync_all();
        let incomplete = Incomplete {
            reason: format!("{reason}; ELF e_flags bit 0 set"),
            pages: report.pages_written,
            partial: Some(partial),
        };
        return Ok((dest.display().to_string(), Written::Elf(report), Some(incomplete)));
    }
    let syncing = Instant::now();
    file.sync_all().what(|| format!("cannot flush {}", partial.display()))?;
    timings.fsync = Some(syncing.elapsed());
    commit(&partial, dest)?;
    Ok((dest.display().to_string(), Written::Elf(report), None))
}

/// The kernel image mapping: `__START_KERNEL_map` up to the module area (`KERNEL_IMAGE_SIZE`
/// is at most 1 GiB).
const KERNEL_TEXT_AREA: u64 = 1 << 30;

/// Whether [start, end) lies inside the union of `segs`' physical ranges.
fn covered(segs: &[ElfSegment], start: u64, end: u64) -> bool {
    let mut at = start;
    loop {
        match segs.iter().find(|s| s.paddr <= at && at < s.paddr + s.len) {
            Some(s) if s.paddr + s.len >= end => return true,
            Some(s) => at = s.paddr + s.len,
            None => return false,
        }
    }
}

/// Runs the walk may return (24 MiB of them, and 56 MiB of program headers): past that, the
/// file keeps the kernel's own layout, with a warning.
const MAX_ALIASES: usize = 1 << 20;

/// The crashed kernel's virtual ranges that `segments` do not already give an address,
/// from its page tables. Without VMCOREINFO or readable tables the ELF file has the
/// kernel's own layout, and a warning says why.
fn virtual_aliases(dump: &mut Dump, segments: &[ElfSegment], observer: &mut dyn Observer) -> Vec<ElfSegment> {
    let layout = match dump
        .vmcoreinfo()
        .map_err(|e| e.to_string())
        .and_then(|info| X86_64Layout::from_vmcoreinfo(&info).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(why) => {
            observer.notice(Notice::Warning(format!(
                "ELF output has addresses for the kernel text and direct map only (as /proc/vmcore): \
                 the page tables cannot be found: {why}"
            )));
            return Vec::new();
        }
    };
    let skip: Vec<(u64, u64)> =
        segments.iter().filter(|s| s.vaddr != 0).map(|s| (s.vaddr, s.vaddr.saturating_add(s.len))).collect();
    let mut mem = KernelMemory::new(PhysAdapter::new(dump.mem.as_mut()), layout);
    match mem.kernel_mappings(&skip, MAX_ALIASES) {
        Ok(found) => {
            if found.unreadable_tables > 0 {
                observer.notice(Notice::Warning(format!(
                    "{} page-table pages are not in the source: the virtual ranges they map have no PT_LOAD",
                    found.unreadable_tables
                )));
            }
            found.runs.iter().map(|m| ElfSegment { paddr: m.paddr, vaddr: m.vaddr, len: m.len }).collect()
        }
        Err(e) => {
            observer.notice(Notice::Warning(format!(
                "ELF output has addresses for the kernel text and direct map only (as /proc/vmcore): {e}"
            )));
            Vec::new()
        }
    }
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

/// The notes of a live dump: `LIVE_DUMP=<now>` added to `vmcoreinfo` (so readers do not look
/// for a panic) and that text as the VMCOREINFO note, and crash's live-dump note (`SNAP`,
/// `NT_TASKSTRUCT`) with the address of the task that took the dump, found in the copy of
/// its `task_struct` that /proc/kcore gives its reader (0 when it cannot be found).
fn live_notes(notes: &[u8], vmcoreinfo: &mut Vec<u8>) -> Vec<u8> {
    use kdump_kernel::live::{NT_TASKSTRUCT, SNAP_NOTE_NAME, task_address};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    vmcoreinfo.extend_from_slice(format!("{}={now}\n", kdump_kernel::vmcoreinfo::LIVE_DUMP_KEY).as_bytes());
    let task = kdump_dumpfile::notes::parse_notes(notes, true)
        .map_while(|n| n.ok())
        .find(|n| n.name == b"CORE" && n.ntype == NT_TASKSTRUCT)
        .and_then(|n| task_address(n.desc))
        .unwrap_or(0);
    // /proc/kcore's notes (the source of every live dump) hold no SNAP note of their own.
    let mut out = kdump_dumpfile::notes::with_vmcoreinfo(notes, vmcoreinfo);
    out.resize(out.len().next_multiple_of(4), 0);
    push_note(&mut out, SNAP_NOTE_NAME, NT_TASKSTRUCT, &task.to_le_bytes());
    out
}

/// True for `/proc/kcore`: the running kernel's memory, not a crashed one's.
fn is_running_kernel(source: &Path) -> bool {
    std::fs::canonicalize(source).is_ok_and(|p| p == Path::new("/proc/kcore"))
}

/// `DEST.incomplete`: where a file is written until it is complete.
pub fn partial_name(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".incomplete");
    PathBuf::from(name)
}

/// Creates a new file 0600, refusing to follow a symlink or reuse a file (`force` removes an
/// old one first).
pub fn create_new(path: &Path, force: bool) -> Result<File> {
    if force {
        let _ = std::fs::remove_file(path);
    }
    kdump_sys::file::create_private(path)
        .what(|| format!("cannot create {} (use -f to replace an old one)", path.display()))
}

/// Allocates the headers, bitmaps and descriptor table on disk before any
/// page is written: if the disk fills up later, the file can still be
/// finished as incomplete without needing more space. Filesystems without
/// fallocate still work, just without this guarantee.
pub(crate) fn preallocate(file: &File, len: u64, path: &Path) -> Result<()> {
    kdump_sys::file::reserve_space_if_supported(file, len).map(|_| ()).what(|| {
        format!(
            "cannot reserve {:.1} MiB for the dump's headers and page table in {}",
            len as f64 / (1 << 20) as f64,
            path.display()
        )
    })
}

/// Makes a complete, flushed `partial` visible as `dest`, durably.
pub fn commit(partial: &Path, dest: &Path) -> Result<()> {
    std::fs::rename(partial, dest).what(|| format!("cannot rename {} to {}", partial.display(), dest.display()))?;
    if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The kdump header fields a reader uses: kernel identity, CPUs, notes.
fn kdump_config(dump: &mut Dump, codec: Codec, level: u32) -> Result<KdumpConfig> {
    let page_size = u32::try_from(dump.mem.page_size())
        .map_err(|_| Error::Refused(format!("page size {} is not supported", dump.mem.page_size())))?;
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
            let id = kdump_kernel::identity::identity(&mut mem, &info);
            cfg.utsname.release = id.release.unwrap_or_default();
            cfg.utsname.version = id.version.unwrap_or_default();
            cfg.utsname.machine = id.machine.unwrap_or_default();
            cfg.utsname.nodename = id.nodename.unwrap_or_default();
            let cpus = kdump_kernel::prstatus::cpu_states(&cfg.notes);
            if let Some(cpu) = kdump_kernel::crashing::find(&mut mem, &info, &cpus)
                && cpu.method != kdump_kernel::crashing::CrashingCpuMethod::Guess
            {
                cfg.current_cpu = cpu.index as u32;
            }
        }
    }
    Ok(cfg)
}

/// `-R`: a flattened stream from `input` rebuilt into the file `dest` (atomically, as a dump).
pub fn rebuild(input: impl Read, dest: &Path, force: bool) -> Result<u64> {
    let partial = partial_name(dest);
    let file = create_new(&partial, force)?;
    let mut out = std::io::BufWriter::new(file);
    let len = rebuild_flattened(input, &mut out).what(|| "cannot rebuild the flattened stream".to_string())?;
    let file = out.into_inner().map_err(|e| e.into_error()).what(|| "cannot write the rebuilt file".to_string())?;
    file.sync_all().what(|| format!("cannot flush {}", partial.display()))?;
    commit(&partial, dest)?;
    Ok(len)
}

/// An error and its causes on one line, as a notice.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
