//! `kdump dump` (and `makedumpfile`): save a dump, with makedumpfile's options.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use kdump_collector::filter::MemUsageReport;
use kdump_collector::save::create_new;
use kdump_collector::{Notice, Observer, SaveRequest, Saved, Sink, SplitTarget, Written};
use kdump_dumpfile::Codec;
use kdump_kernel::pages::PageClass;
use kdump_save::Progress;
use kdump_sys::mapped::ReadMode;
use kdump_sys::usage::peak_rss_bytes;

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
    /// With -E, the default: a PT_LOAD for every kernel virtual range the crashed kernel's
    /// page tables map (modules, vmalloc and vmap, per-CPU, vmemmap), so `gdb -c` reads them.
    #[arg(long = "virtual", overrides_with = "no_virtual")]
    pub virtual_ranges: bool,
    /// With -E: addresses for the kernel text and direct map only, as in /proc/vmcore.
    #[arg(long = "no-virtual", overrides_with = "virtual_ranges")]
    pub no_virtual: bool,
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
    /// Also leave out the struct pages (vmemmap) that describe only left-out pages: much
    /// smaller dumps of large machines; the header says so (makedumpfile's -e).
    #[arg(short = 'e')]
    pub exclude_vmemmap: bool,
    /// Save the dump as several files, SOURCE DEST1 DEST2 …, written at once (a thread each),
    /// each holding about as many pages (makedumpfile's split format: `kdump info` and `kdump
    /// dmesg` read the files together, --reassemble joins them).
    #[arg(long = "split")]
    pub split: bool,
    /// Join the files of a --split dump into one kdump-compressed file: PART1 PART2 … OUT
    /// (the parts in any order; their pages are copied as stored).
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
    /// With --split: the parts' boundaries fall on multiples of SIZE KiB (a multiple of the page
    /// size), as makedumpfile's do. Default: on any page, for the most even parts.
    #[arg(long = "splitblock-size", value_name = "SIZE")]
    pub splitblock_size: Option<u64>,
    /// Stop the kdump-compressed file at SIZE bytes (K, M and G suffixes): the dump ends there,
    /// marked incomplete, left as DEST.incomplete, as on a full disk.
    #[arg(short = 'L', value_name = "SIZE", value_parser = parse_size)]
    pub size_limit: Option<u64>,
    /// Print the version and exit.
    #[arg(short = 'v')]
    pub version: bool,
    /// Write a VMCOREINFO file, for `-i` on a dump that lacks one: the running kernel's (from
    /// /proc/kcore), or with -x, what that debug vmlinux tells (makedumpfile's -g: its symbols and
    /// DWARF, without the values known only at run time).
    #[arg(short = 'g', value_name = "VMCOREINFO")]
    pub generate_vmcoreinfo: Option<PathBuf>,
    /// The crashed kernel's debug vmlinux (makedumpfile's). With -g: the VMCOREINFO source. With a
    /// dump: checked to be the dump's kernel (build ID, else release), which is refused otherwise;
    /// the dump's own VMCOREINFO and kallsyms are what is read, so no vmlinux is needed.
    #[arg(short = 'x', value_name = "VMLINUX")]
    pub vmlinux: Option<PathBuf>,
    /// makedumpfile: erase symbols named in a filter config. Refused (not built).
    #[arg(long = "config", value_name = "FILTERCONFIGFILE")]
    pub filter_config: Option<PathBuf>,
    /// makedumpfile: eppic filter macros. Refused (no eppic interpreter).
    #[arg(long = "eppic", value_name = "EPPICMACRO")]
    pub eppic: Option<PathBuf>,
    /// makedumpfile: a filtering extension (.so). Refused (no plugins).
    #[arg(long = "extension", value_name = "EXTENSION.SO")]
    pub extension: Option<PathBuf>,
    /// makedumpfile: Xen's xen-syms. Refused (Xen dumps are not supported).
    #[arg(long = "xen-syms", value_name = "XEN-SYMS")]
    pub xen_syms: Option<PathBuf>,
    /// makedumpfile: Xen's VMCOREINFO. Refused (Xen dumps are not supported).
    #[arg(long = "xen-vmcoreinfo", value_name = "VMCOREINFO")]
    pub xen_vmcoreinfo: Option<PathBuf>,
    /// makedumpfile: Xen domain-0 filtering. Refused (Xen dumps are not supported).
    #[arg(short = 'X')]
    pub xen_dom0: bool,
    /// makedumpfile: Xen's physical start. Refused (Xen dumps are not supported).
    #[arg(long = "xen_phys_start", value_name = "ADDRESS")]
    pub xen_phys_start: Option<String>,
    /// makedumpfile: translate a virtual address. Refused (use `kdump info` and a debugger such as crash or drgn).
    #[arg(long = "vtop", value_name = "ADDRESS")]
    pub vtop: Option<String>,
    /// makedumpfile: the log since it was last cleared. Refused (not built: `--dump-dmesg` saves the whole log).
    #[arg(long = "partial-dmesg")]
    pub partial_dmesg: bool,
    /// makedumpfile: sadump disk sets. Refused (sadump is not supported).
    #[arg(long = "diskset", value_name = "VMCORE")]
    pub diskset: Vec<PathBuf>,
    /// SOURCE then DEST (with -F: SOURCE only; with -R: DEST only).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `-L`'s SIZE: bytes, or with a K, M or G suffix (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("{text:?}: a size in bytes, or with a K, M or G suffix")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?}: a size in bytes, or with a K, M or G suffix"))?;
    n.checked_mul(1 << shift).filter(|&b| b > 0).ok_or_else(|| format!("{text:?} is not a usable size"))
}

impl DumpArgs {
    /// The first option given that does not apply here, with why and what to use instead.
    pub fn refused(&self) -> Option<&'static str> {
        let xen =
            self.xen_syms.is_some() || self.xen_vmcoreinfo.is_some() || self.xen_dom0 || self.xen_phys_start.is_some();
        [
            (self.filter_config.is_some(), "--config (erasing symbols) is not supported: filter by dump level (-d)"),
            (self.eppic.is_some(), "--eppic is not supported: there is no eppic interpreter; filter by dump level (-d)"),
            (self.extension.is_some(), "--extension is not supported: there are no filtering plugins; filter by dump level (-d)"),
            (xen, "Xen options (--xen-syms, --xen-vmcoreinfo, -X, --xen_phys_start) are not supported: Xen hypervisor dumps are not read"),
            (self.vtop.is_some(), "--vtop is not supported: use crash or drgn on the dump to translate addresses"),
            (self.partial_dmesg, "--partial-dmesg is not built yet: --dump-dmesg saves the whole log"),
            (!self.diskset.is_empty(), "--diskset is not supported: sadump dumps are not read"),
        ]
        .into_iter()
        .find_map(|(given, why)| given.then_some(why))
    }

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
        if self.splitblock_size.is_some() && !self.split {
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
    if a.non_mmap { ReadMode::Read } else { kdump_collector::source::read_mode_from_env() }
}

/// How much `kdump dump` says on stderr: makedumpfile's message level and our extras.
#[derive(Debug, Clone, Copy)]
pub struct Messages {
    /// makedumpfile's message level: 0 prints only errors.
    pub level: u32,
    /// Print the time of each stage.
    pub timings: bool,
    /// Print the pages left out per class even at message level 0.
    pub show_stats: bool,
}

impl Messages {
    /// The default: progress and a summary, no timings.
    pub const DEFAULT: Messages = Messages { level: 7, timings: false, show_stats: false };

    /// The message level for the end-of-dump report: `--show-stats` prints it even at 0.
    fn report_level(&self) -> u32 {
        if self.show_stats { self.level.max(1) } else { self.level }
    }

    fn timings_on(&self) -> bool {
        self.timings || self.level & ML_PRINT_DEBUG_MSG != 0
    }
}

pub fn run(a: &DumpArgs) -> anyhow::Result<()> {
    if a.version {
        println!(
            "kdump {} (makedumpfile-compatible command line; kdump-compressed format version 6)",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(());
    }
    if let Some(why) = a.refused() {
        bail!("{why}");
    }
    if let Some(out) = &a.generate_vmcoreinfo {
        return match &a.vmlinux {
            Some(vmlinux) => vmcoreinfo_from_vmlinux(vmlinux, out, a.force),
            None => generate_vmcoreinfo(out, a.force),
        };
    }
    if a.size_limit.is_some() && (a.elf || a.flatten) {
        bail!("-L limits a kdump-compressed file: leave out -E and -F");
    }
    if a.split && a.reassemble {
        bail!("--split writes a split dump and --reassemble joins one: give one of them");
    }
    if a.split && a.flatten {
        bail!("--split writes files and -F one stream: leave out one of them (makedumpfile refuses both too)");
    }
    if a.split && a.elf {
        bail!("--split writes kdump-compressed files (as makedumpfile): leave out -E");
    }
    if a.reassemble
        && (a.level != 0
            || codec(a)? != Codec::None
            || a.elf
            || a.flatten
            || a.vmcoreinfo.is_some()
            || a.exclude_vmemmap
            || a.size_limit.is_some()
            || a.dry_run)
    {
        bail!(
            "--reassemble copies the parts' pages as they are stored: leave out -d, -c/-l/-p/-z, -E, -F, -i, -e, -L \
             and --dry-run"
        );
    }
    if a.message_level > 0 {
        for note in a.ignored_options() {
            eprintln!("kdump: {note}");
        }
    }
    if a.rebuild {
        let [dest] = a.files.as_slice() else { bail!("usage: kdump dump -R DEST < flattened-stream") };
        kdump_collector::save::rebuild(std::io::stdin().lock(), dest, a.force)
            .context("cannot rebuild the flattened stream from standard input")?;
        return Ok(());
    }
    if let (Some(vmlinux), Some(source)) = (&a.vmlinux, a.files.first())
        && !a.reassemble
    {
        check_vmlinux(vmlinux, source, a.vmcoreinfo.as_deref())?;
    }
    if a.dump_dmesg {
        let [source, dest] = a.files.as_slice() else { bail!("usage: kdump dump --dump-dmesg SOURCE LOGFILE") };
        return dump_dmesg(source, dest, a.force);
    }
    if a.mem_usage {
        let [source] = a.files.as_slice() else { bail!("usage: kdump dump --mem-usage SOURCE") };
        print_mem_usage(&kdump_collector::filter::mem_usage(source, read_mode(a))?);
        return Ok(());
    }
    let req = SaveRequest {
        level: a.level,
        codec: codec(a)?,
        elf: a.elf,
        threads: a.threads,
        read_mode: read_mode(a),
        exclude_vmemmap: a.exclude_vmemmap,
        size_limit: a.size_limit,
        elf_virtual: !a.no_virtual,
        vmcoreinfo: match &a.vmcoreinfo {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("-i: cannot read {}", path.display()))?),
            None => None,
        },
    };
    let msgs = Messages { level: a.message_level, timings: a.timings || a.debug, show_stats: a.show_stats };
    if a.elf && a.flatten {
        bail!("ELF output (-E) is uncompressed and needs a seekable file: leave out -F");
    }
    if a.level > 31 {
        bail!("dump level {} is out of range: use 0 to 31", a.level);
    }
    if a.check_params {
        let (fits, what) = match (a.flatten, a.split, a.reassemble) {
            (_, true, _) => (a.files.len() >= 3, "SOURCE DEST1 DEST2 …"),
            (_, _, true) => (a.files.len() >= 2, "PART1 PART2 … OUT"),
            (true, _, _) => (a.files.len() == 1, "SOURCE"),
            _ => (a.files.len() == 2, "SOURCE DEST"),
        };
        if !fits {
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
        save(source, Sink::Flattened { stream: &mut nowhere, name: "nowhere (--dry-run)" }, &req, msgs)?;
        return Ok(());
    }
    if a.reassemble {
        let [parts @ .., out] = a.files.as_slice() else { bail!("usage: kdump dump --reassemble PART1 PART2 … OUT") };
        return reassemble(parts, out, a.force, a.message_level);
    }
    if a.split {
        let [source, dests @ ..] = a.files.as_slice() else {
            bail!("usage: kdump dump --split [OPTIONS] SOURCE DEST1 DEST2 [DEST3 …]")
        };
        if dests.len() < 2 {
            bail!("usage: kdump dump --split [OPTIONS] SOURCE DEST1 DEST2 [DEST3 …] (at least two files to write)");
        }
        let target = SplitTarget { dests: dests.to_vec(), force: a.force, splitblock_kib: a.splitblock_size };
        report(msgs, |printer| kdump_collector::save_split(source, &target, &req, printer))?;
        return Ok(());
    }
    match (a.flatten, a.files.as_slice()) {
        (true, [source]) => {
            let mut stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
            save(source, Sink::Flattened { stream: &mut stdout, name: "standard output" }, &req, msgs)?;
        }
        (false, [source, dest]) => {
            save(source, Sink::File { path: dest, force: a.force }, &req, msgs)?;
        }
        (true, _) => bail!("usage: kdump dump -F [OPTIONS] SOURCE > stream"),
        (false, _) => bail!("usage: kdump dump [OPTIONS] SOURCE DEST"),
    }
    Ok(())
}

/// `-g FILE`: the running kernel's VMCOREINFO (the note /proc/kcore carries), as `-i` reads it.
fn generate_vmcoreinfo(out: &Path, force: bool) -> anyhow::Result<()> {
    let kcore = Path::new("/proc/kcore");
    let dump = kdump_collector::source::open(kcore).context("-g: cannot read the running kernel's memory")?;
    let text = dump
        .vmcoreinfo_raw()
        .context("-g: /proc/kcore carries no VMCOREINFO note (a kernel without CONFIG_CRASH_CORE)")?
        .to_vec();
    if out.exists() && !force {
        bail!("{} exists: use -f to overwrite it", out.display());
    }
    std::fs::write(out, &text).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("kdump: the running kernel's VMCOREINFO ({} bytes) written to {}", text.len(), out.display());
    Ok(())
}

/// `-g FILE -x VMLINUX`: what the debug vmlinux tells of VMCOREINFO (see [`kdump_debuginfo`]).
fn vmcoreinfo_from_vmlinux(vmlinux: &Path, out: &Path, force: bool) -> anyhow::Result<()> {
    if out.exists() && !force {
        bail!("{} exists: use -f to overwrite it", out.display());
    }
    let data = kdump_sys::mapped::MappedFile::open(vmlinux)
        .with_context(|| format!("-x: cannot read {}", vmlinux.display()))?;
    let text = kdump_debuginfo::vmcoreinfo(data.bytes()).with_context(|| format!("-x {}", vmlinux.display()))?;
    std::fs::write(out, &text).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "kdump: VMCOREINFO of {} ({} keys) written to {}; the values known only at run time (KERNELOFFSET, \
         phys_base, mem_section) are not in a vmlinux",
        vmlinux.display(),
        text.lines().count(),
        out.display()
    );
    Ok(())
}

/// `-x VMLINUX` with a dump: the vmlinux must be of the dump's kernel (the same build ID where
/// both have one, else the same release). The dump's VMCOREINFO (or `-i`'s) is what is read.
fn check_vmlinux(vmlinux: &Path, source: &Path, vmcoreinfo_file: Option<&Path>) -> anyhow::Result<()> {
    let data = kdump_sys::mapped::MappedFile::open(vmlinux)
        .with_context(|| format!("-x: cannot read {}", vmlinux.display()))?;
    let data = data.bytes();
    let info = match vmcoreinfo_file {
        Some(path) => std::fs::read(path).with_context(|| format!("-i: cannot read {}", path.display()))?,
        None => {
            let mut dump =
                kdump_collector::source::open(source).with_context(|| format!("cannot read {}", source.display()))?;
            // The note, or (a dump QEMU made) the kernel's VMCOREINFO found in its memory.
            match dump.vmcoreinfo() {
                Ok(_) => dump.vmcoreinfo_raw().map(<[u8]>::to_vec).unwrap_or_default(),
                Err(_) => bail!(
                    "{} has no VMCOREINFO (no note, none in its memory), and a vmlinux cannot give the values \
                     known only when its kernel ran (KERNELOFFSET, phys_base, mem_section): give -i VMCOREINFO, \
                     written by `kdump dump -g FILE` on the crashed kernel",
                    source.display()
                ),
            }
        }
    };
    let info = String::from_utf8_lossy(&info);
    let key = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).map(str::to_string);
    let (dump_release, dump_build_id) = (key("OSRELEASE="), key("BUILD-ID="));
    let mismatch = |what: &str, theirs: &str, ours: &str| {
        anyhow::anyhow!(
            "-x {}: it is the vmlinux of another kernel ({what} {theirs}, the dump's is {ours}): give the crashed \
             kernel's debug vmlinux, or leave out -x (the dump's own VMCOREINFO is enough)",
            vmlinux.display()
        )
    };
    if let (Some(ours), Some(theirs)) = (dump_build_id.as_deref(), kdump_debuginfo::build_id(data)) {
        if !theirs.eq_ignore_ascii_case(ours) {
            return Err(mismatch("build ID", &theirs, ours));
        }
        return Ok(());
    }
    let (release, _) = kdump_debuginfo::identity(data).with_context(|| format!("-x {}", vmlinux.display()))?;
    match dump_release {
        Some(ours) if ours != release => Err(mismatch("release", &release, &ours)),
        _ => Ok(()),
    }
}

/// Saves `source` to `sink` (see [`kdump_collector::save`]), printing as `msgs` says; an
/// incomplete dump is an error that says where its pages are.
pub fn save(source: &Path, sink: Sink<'_>, req: &SaveRequest, msgs: Messages) -> anyhow::Result<Saved> {
    report(msgs, |printer| kdump_collector::save(source, sink, req, printer))
}

/// Runs a save with a printer of its notices and progress, then prints its report.
fn report(msgs: Messages, save: impl FnOnce(&mut Printer) -> kdump_collector::Result<Saved>) -> anyhow::Result<Saved> {
    let mut printer = Printer { msgs, progress: ProgressPrinter::new(msgs.level) };
    let saved = save(&mut printer)?;
    print_filter_report(&saved, msgs.report_level());
    if msgs.timings_on() {
        print_timings(&saved);
    }
    print_outcome(&saved, msgs.level)?;
    Ok(saved)
}

/// Notices and progress on stderr.
struct Printer {
    msgs: Messages,
    progress: ProgressPrinter,
}

impl Observer for Printer {
    fn notice(&mut self, notice: Notice) {
        if self.msgs.level == 0 {
            return;
        }
        match notice {
            Notice::Warning(w) => eprintln!("kdump: warning: {w}"),
            Notice::VmcoreinfoFound(at) => eprintln!("kdump: VMCOREINFO {}", found_in_memory(at)),
            Notice::LiveDump => eprintln!("kdump: a live dump of the running kernel: memory changes while it is read"),
        }
    }

    fn progress(&self, p: Progress) {
        self.progress.show(p);
    }
}

/// The line that says where VMCOREINFO came from when the dump has no note.
pub fn found_in_memory(paddr: u64) -> String {
    format!("found in memory at {paddr:#x}, the dump has no note")
}

/// Pages left out per class, and anything the filter had to keep.
fn print_filter_report(saved: &Saved, level: u32) {
    if level == 0 {
        return;
    }
    for w in &saved.late_warnings {
        eprintln!("kdump: warning: {w}");
    }
    if !saved.excluded.is_empty() {
        let parts: Vec<String> = saved.excluded.iter().map(|(c, n)| format!("{n} {}", c.name())).collect();
        eprintln!("kdump: dump level {} left out {} pages", saved.effective_level, parts.join(", "));
    }
    if let Some(n) = saved.vmemmap_excluded {
        eprintln!("kdump: -e left out {n} pages of struct pages (vmemmap) that describe only left-out pages");
    }
}

/// `--reassemble PART1 PART2 … OUT`.
fn reassemble(parts: &[PathBuf], out: &Path, force: bool, level: u32) -> anyhow::Result<()> {
    let progress = ProgressPrinter::new(level);
    let joined = kdump_collector::reassemble(parts, out, force, &mut |p| progress.show(p))?;
    if level > 0 {
        let w = &joined.written;
        eprintln!(
            "kdump: joined {} parts into {}: {} pages ({} zero, {} lost), {:.1} MiB in {:.1} s",
            joined.parts.len(),
            out.display(),
            w.pages,
            w.zero_pages,
            w.lost_pages,
            w.file_size as f64 / (1 << 20) as f64,
            joined.total.as_secs_f64()
        );
    }
    Ok(())
}

fn print_outcome(saved: &Saved, level: u32) -> anyhow::Result<()> {
    if let Written::Kdump(report) = &saved.written
        && report.unreadable_count > 0
    {
        eprintln!(
            "kdump: {} source pages could not be read and were left out (first PFNs: {:x?})",
            report.unreadable_count,
            &report.unreadable[..report.unreadable.len().min(8)]
        );
    }
    if let Some(inc) = &saved.incomplete {
        let e = anyhow::anyhow!(
            "the dump is INCOMPLETE: writing stopped ({}) after {} pages; readers will report the rest as missing",
            inc.reason,
            inc.pages
        );
        return Err(match &inc.partial {
            Some(p) => e.context(format!("the pages written so far are in {} (marked incomplete)", p.display())),
            None => e,
        });
    }
    if level == 0 {
        return Ok(());
    }
    let mib = saved.file_size() as f64 / (1 << 20) as f64;
    match &saved.written {
        Written::Kdump(r) => eprintln!(
            "kdump: saved {} pages ({} zero, {} stored raw) to {}: {mib:.1} MiB",
            r.written.pages, r.written.zero_pages, r.written.raw_pages, saved.dest
        ),
        Written::Elf(r) => {
            eprintln!(
                "kdump: saved {} pages in {} segments to {} ({} left out): {mib:.1} MiB",
                r.pages_written, r.segments, saved.dest, r.pages_dropped
            );
            if r.virtual_segments > 0 {
                eprintln!(
                    "kdump: {} of the segments give kernel virtual ranges (modules, vmalloc, per-CPU) their addresses",
                    r.virtual_segments
                );
            }
            if r.virtual_left_out > 0 {
                eprintln!(
                    "kdump: warning: {} virtual ranges have no PT_LOAD (the reserved program headers ran out)",
                    r.virtual_left_out
                );
            }
        }
    }
    for p in &saved.parts {
        let w = &p.report.written;
        eprintln!(
            "kdump:   {}: PFNs {:#x}-{:#x}, {} pages, {:.1} MiB",
            p.dest.display(),
            p.range.start,
            p.range.end,
            w.pages + w.lost_pages,
            w.file_size as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}

/// `kdump dump --mem-usage SOURCE`: pages per class and what each level would keep.
fn print_mem_usage(r: &MemUsageReport) {
    if let Some(at) = r.vmcoreinfo_found_at {
        eprintln!("kdump: VMCOREINFO {}", found_in_memory(at));
    }
    let usage = &r.usage;
    let page_size = r.page_size;
    let n = |c: PageClass| usage.count(c);
    println!("{:<14} {:>12} {:>10}  DESCRIPTION", "TYPE", "PAGES", "EXCLUDABLE");
    println!("{}", "-".repeat(70));
    let row = |name: &str, pages: u64, ex: bool, what: &str| {
        println!("{name:<14} {pages:>12} {:>10}  {what}", if ex { "yes" } else { "no" });
    };
    row("ZERO", usage.zero, true, "Pages filled with zero (among those level 31 keeps)");
    row("NON_PRI_CACHE", n(PageClass::Cache), true, "Cache pages without private flag");
    row("PRI_CACHE", n(PageClass::CachePrivate), true, "Cache pages with private flag");
    row("USER", n(PageClass::User), true, "User process pages");
    row("FREE", n(PageClass::Free), true, "Free pages");
    row("HWPOISON", n(PageClass::Hwpoison), true, "Hardware-poisoned pages (always excluded)");
    row("OFFLINE", n(PageClass::Offline), true, "Offline pages (always excluded)");
    row("KERN_DATA", usage.kernel_data(), false, "Dumpable kernel data");
    println!();
    println!("page size:              {page_size}");
    println!("Total pages on system:  {}", usage.total);
    println!("Total size on system:   {} Byte", usage.total * page_size);
    if r.absent > 0 {
        println!("Pages not in the source (already filtered or lost): {}", r.absent);
    }
    println!();
    println!("Dump size per level (pages x page size, before compression; with bit 1, zero pages only among");
    println!("those level 31 keeps are subtracted, so levels without every bit are upper bounds):");
    println!("{:>5} {:>12} {:>12}", "LEVEL", "PAGES", "MiB");
    for l in 0..32u32 {
        let pages = r.pages_at(l);
        println!("{l:>5} {pages:>12} {:>12.1}", (pages * page_size) as f64 / (1 << 20) as f64);
    }
    for w in &r.warnings {
        eprintln!("kdump: warning: {w}");
    }
}

fn dump_dmesg(source: &Path, dest: &Path, force: bool) -> anyhow::Result<()> {
    let mut dump = kdump_collector::source::open(source)?;
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
    start: std::cell::Cell<Option<std::time::Instant>>,
}

/// RAM bytes per page in the rate (x86_64).
const PAGE_BYTES: f64 = 4096.0;

/// The rate (MB of RAM looked at per second) and the time left, once there is a rate.
fn rate_and_eta(done: u64, total: u64, elapsed: std::time::Duration) -> Option<(f64, u64)> {
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs < 0.5 {
        return None;
    }
    let per_sec = done as f64 / secs;
    let left = (total.saturating_sub(done) as f64 / per_sec).ceil() as u64;
    Some((per_sec * PAGE_BYTES / 1e6, left))
}

/// `1:05` or `0:07`.
fn minutes(secs: u64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// The progress as a terminal shows it (one line redrawn) or as a serial console logs it.
fn progress_text(done: u64, total: u64, elapsed: std::time::Duration, tty: bool) -> String {
    let rate = rate_and_eta(done, total, elapsed);
    if tty {
        let pct = done as f64 * 100.0 / total as f64;
        match rate {
            Some((mb, left)) if done < total => {
                format!("Copying data: [{pct:5.1} %] {mb:7.1} MB/s, {} left  ", minutes(left))
            }
            Some((mb, _)) => {
                format!("Copying data: [{pct:5.1} %] {mb:7.1} MB/s, {} in all", minutes(elapsed.as_secs()))
            }
            None => format!("Copying data: [{pct:5.1} %]"),
        }
    } else {
        let step = done * 10 / total;
        let base = format!("kdump: {}% ({done} of {total} pages", step * 10);
        match rate {
            Some((mb, left)) if done < total => format!("{base}, {mb:.1} MB/s of RAM, about {} left)", minutes(left)),
            Some((mb, _)) => format!("{base}, {mb:.1} MB/s of RAM, {} in all)", minutes(elapsed.as_secs())),
            None => format!("{base})"),
        }
    }
}

impl ProgressPrinter {
    fn new(level: u32) -> Self {
        Self {
            level,
            tty: std::io::stderr().is_terminal(),
            last_step: std::cell::Cell::new(u64::MAX),
            last_time: std::cell::Cell::new(None),
            start: std::cell::Cell::new(None),
        }
    }

    fn show(&self, p: Progress) {
        if self.level == 0 || p.total == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let start = *self.start.get().get_or_insert(now);
        self.start.set(Some(start));
        let elapsed = now.duration_since(start);
        let finished = p.done == p.total;
        let mut err = std::io::stderr().lock();
        if self.tty {
            let due = self.last_time.get().is_none_or(|t| now.duration_since(t).as_secs() >= 1);
            if !due && !finished {
                return;
            }
            self.last_time.set(Some(now));
            let _ = write!(err, "\r{}", progress_text(p.done, p.total, elapsed, true));
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let step = p.done * 10 / p.total;
            if step != self.last_step.get() {
                self.last_step.set(step);
                let _ = writeln!(err, "{}", progress_text(p.done, p.total, elapsed, false));
            }
        }
    }
}

/// `--timings` (or message level bit 16): per-stage times and the peak memory.
fn print_timings(saved: &Saved) {
    let t = &saved.timings;
    let mb = |b: u64| b as f64 / 1e6;
    let rate = |b: u64, d: std::time::Duration| {
        let s = d.as_secs_f64();
        if s > 0.0 { format!("{:.1} MB/s", mb(b) / s) } else { "-".to_string() }
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "kdump: timings (source read by {}; stages in CPU seconds of their threads):", t.read_path);
    if let Some((d, pages)) = t.classification {
        let ram = pages * t.page_size;
        let _ = writeln!(
            err,
            "kdump:   classification {:8.3} s  {:>10.1} MB of RAM  {}",
            d.as_secs_f64(),
            mb(ram),
            rate(ram, d)
        );
    }
    if let Written::Kdump(r) = &saved.written {
        let st = &r.times;
        let read = st.bytes_read;
        let out = saved.file_size();
        let _ = writeln!(
            err,
            "kdump:   reading        {:8.3} s  {:>10.1} MB          {}",
            st.reading.as_secs_f64(),
            mb(read),
            rate(read, st.reading)
        );
        let _ = writeln!(
            err,
            "kdump:   compression    {:8.3} s  {:>10.1} MB in       {}",
            st.encoding.as_secs_f64(),
            mb(read),
            rate(read, st.encoding)
        );
        let _ = writeln!(
            err,
            "kdump:   writing        {:8.3} s  {:>10.1} MB out      {}",
            st.writing.as_secs_f64(),
            mb(out),
            rate(out, st.writing)
        );
    }
    if let Some(d) = t.fsync {
        let _ = writeln!(err, "kdump:   fsync          {:8.3} s", d.as_secs_f64());
    }
    let _ = writeln!(
        err,
        "kdump:   total          {:8.3} s  peak RSS {:.1} MiB",
        t.total.as_secs_f64(),
        peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64)
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn progress_says_the_rate_and_the_time_left_once_there_is_one() {
        let s = |secs| Duration::from_secs(secs);
        assert_eq!(progress_text(0, 1000, s(0), false), "kdump: 0% (0 of 1000 pages)");
        // 250,000 pages (1 GB of RAM) in 10 s: 102.4 MB/s; 750,000 more take 30 s.
        assert_eq!(
            progress_text(250_000, 1_000_000, s(10), false),
            "kdump: 20% (250000 of 1000000 pages, 102.4 MB/s of RAM, about 0:30 left)"
        );
        assert_eq!(
            progress_text(1_000_000, 1_000_000, s(75), false),
            "kdump: 100% (1000000 of 1000000 pages, 54.6 MB/s of RAM, 1:15 in all)"
        );
        assert_eq!(progress_text(250_000, 1_000_000, s(10), true), "Copying data: [ 25.0 %]   102.4 MB/s, 0:30 left  ");
        assert_eq!(progress_text(5, 10, Duration::from_millis(100), true), "Copying data: [ 50.0 %]");
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("3g"), Ok(3 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err() && parse_size("12X").is_err() && parse_size("K").is_err());
    }
}
