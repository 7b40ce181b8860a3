//! A dump source: any format we read, opened over `mmap` windows (or `read`), and adapted for
//! the kernel decoders.

use std::borrow::BorrowMut;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use kdump_dumpfile::{
    AnyDump, FoundVmcoreinfo, KdumpReader, PageState, PhysMem, SetUse, SplitReader, VmcoreinfoScan, open_dump,
};
use kdump_kernel::memory::X86_64Layout;
use kdump_kernel::{KernelMemory, PhysRead, Vmcoreinfo};
use kdump_sys::mapped::{MappedReader, PathTracker, ReadMode};

use crate::error::{Context, Error, Result};

/// An open dump: its physical memory and what kind of file it is.
pub struct Dump {
    /// Its physical memory, page by page.
    pub mem: Box<dyn PhysMem>,
    /// What kind of file it is.
    pub format: DumpFormat,
    /// The source's PT_LOADs as (paddr, vaddr, memsz), for an ELF source.
    pub elf_segments: Option<Vec<(u64, u64, u64)>>,
    /// How the file is being read (mmap or read()), for reports.
    pub read_path: PathTracker,
    /// The kernel's VMCOREINFO note found in memory, for a dump without one
    /// (QEMU `dump-guest-memory`); see [`Dump::resolve_vmcoreinfo`].
    found: Option<FoundVmcoreinfo>,
    /// VMCOREINFO given by the user (`makedumpfile -i FILE`), for a dump without a note.
    given: Option<Vec<u8>>,
}

/// Notes the memory scan checks before giving up on finding one that validates:
/// more than one means stale copies (e.g. of a kernel that ran before a kexec).
const MAX_CANDIDATES: usize = 8;

/// What the file is, for reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpFormat {
    /// `elf`, `kdump-compressed` or `flattened`.
    pub kind: &'static str,
    /// makedumpfile dump level, when the format records it.
    pub dump_level: Option<i32>,
    /// Page codec(s), when the format records them.
    pub codec: Option<String>,
    /// False when the file says it is incomplete (e.g. the disk filled up).
    pub complete: bool,
    /// For a dump written by `--split`: which of its pages the given file(s) hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitFormat>,
}

/// The part(s) of a `--split` dump that were opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SplitFormat {
    /// Files given: every part of the set, or one alone.
    pub files: usize,
    /// First PFN they hold.
    pub start_pfn: u64,
    /// One past the last PFN they hold.
    pub end_pfn: u64,
    /// The dump's PFN limit (`max_mapnr`): a whole set holds `0..max_pfn`.
    pub max_pfn: u64,
}

impl SplitFormat {
    /// Whether the files hold every page of the dump (a whole set).
    pub fn is_whole(&self) -> bool {
        self.start_pfn == 0 && self.end_pfn == self.max_pfn
    }
}

impl std::fmt::Debug for Dump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dump").field("format", &self.format).finish_non_exhaustive()
    }
}

fn kdump_format<R: Read + Seek>(r: &KdumpReader<R>, kind: &'static str) -> DumpFormat {
    let status = r.header().status;
    let mut codecs = Vec::new();
    for (bit, name) in [(0x1, "zlib"), (0x2, "lzo"), (0x4, "snappy"), (0x20, "zstd")] {
        if status & bit != 0 {
            codecs.push(name);
        }
    }
    DumpFormat {
        kind,
        dump_level: Some(r.sub_header().dump_level),
        codec: Some(if codecs.is_empty() { "none".to_string() } else { codecs.join("+") }),
        complete: !r.is_incomplete(),
        split: r.split_range().map(|range| SplitFormat {
            files: 1,
            start_pfn: range.start,
            end_pfn: range.end,
            max_pfn: r.max_pfn(),
        }),
    }
}

/// The environment variable that turns off `mmap` of dump sources (as `--non-mmap` does).
pub const NO_MMAP_ENV: &str = "KDUMP_NO_MMAP";

/// How sources are read: `mmap` windows unless `KDUMP_NO_MMAP` is set (to anything but `0` or empty).
pub fn read_mode_from_env() -> ReadMode {
    match std::env::var_os(NO_MMAP_ENV) {
        Some(v) if !v.is_empty() && v != "0" => ReadMode::Read,
        _ => ReadMode::Auto,
    }
}

/// Opens `path`, recognising ELF vmcores, kdump-compressed and flattened files.
pub fn open(path: &Path) -> Result<Dump> {
    open_with(path, read_mode_from_env())
}

/// Like [`open`], reading the file as `mode` says.
pub fn open_with(path: &Path, mode: ReadMode) -> Result<Dump> {
    let file = match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && path == Path::new("/proc/kcore") => {
            return Err(Error::Refused(kcore_refusal(&e)));
        }
        opened => opened.what(|| format!("cannot open the dump {}", path.display()))?,
    };
    let reader = MappedReader::new(file, mode).what(|| format!("cannot open the dump {}", path.display()))?;
    let read_path = reader.tracker();
    let dump = open_dump(reader).what(|| format!("cannot read the dump {}", path.display()))?;
    let elf_segments = match &dump {
        AnyDump::Elf(elf) => Some(elf.segments().iter().map(|s| (s.paddr, s.vaddr, s.memsz)).collect()),
        _ => None,
    };
    let format = match &dump {
        AnyDump::Elf(elf) => {
            DumpFormat { kind: "elf", dump_level: None, codec: None, complete: elf.e_flags() & 1 == 0, split: None }
        }
        AnyDump::Kdump(r) => kdump_format(r, "kdump-compressed"),
        AnyDump::Flattened(r) => kdump_format(r, "flattened"),
    };
    Ok(Dump { mem: Box::new(dump), format, elf_segments, read_path, found: None, given: None })
}

/// Why /proc/kcore (a live dump's source) could not be opened, with the way out.
fn kcore_refusal(e: &std::io::Error) -> String {
    if kdump_sys::locked_for_confidentiality(&kdump_sys::SysRoot::host()) {
        format!(
            "cannot open /proc/kcore ({e}): the kernel is locked down for confidentiality, which closes \
             /proc/kcore, so a live dump is not possible; dump after a crash instead (kdump setup), or boot \
             with lockdown=integrity"
        )
    } else {
        format!("cannot open /proc/kcore ({e}): a live dump needs root (CAP_SYS_RAWIO)")
    }
}

/// Opens one dump, or every part of a dump written by `--split` (in any order) as one.
pub fn open_set(paths: &[PathBuf]) -> Result<Dump> {
    match paths {
        [] => Err(Error::Refused("no dump given".to_string())),
        [one] => open(one),
        _ => open_split(paths, read_mode_from_env(), SetUse::Read),
    }
}

fn open_split(paths: &[PathBuf], mode: ReadMode, to: SetUse) -> Result<Dump> {
    let (set, read_path) = open_split_set(paths, mode, to)?;
    let first = &set.parts()[0];
    let mut format = kdump_format(first, "kdump-compressed");
    format.complete = !set.is_incomplete();
    format.split =
        Some(SplitFormat { files: paths.len(), start_pfn: 0, end_pfn: set.max_pfn(), max_pfn: set.max_pfn() });
    Ok(Dump { mem: Box::new(set), format, elf_segments: None, read_path, found: None, given: None })
}

/// Opens every part of a split dump (in any order) and checks that they are one whole set,
/// as `to` needs: the cause and the fix are in the error.
pub fn open_split_set(
    paths: &[PathBuf],
    mode: ReadMode,
    to: SetUse,
) -> Result<(SplitReader<MappedReader>, PathTracker)> {
    let mut parts = Vec::with_capacity(paths.len());
    let mut tracker = None;
    for path in paths {
        let name = path.display().to_string();
        let file = File::open(path).what(|| format!("cannot open the split part {name}"))?;
        let reader = MappedReader::new(file, mode).what(|| format!("cannot open the split part {name}"))?;
        tracker.get_or_insert_with(|| reader.tracker());
        let part = KdumpReader::open(reader).map_err(|e| match e {
            kdump_dumpfile::Error::BadMagic { .. } => Error::Refused(format!(
                "{name} is not a kdump-compressed file: only the parts a `--split` run wrote can be given together"
            )),
            e => Error::Dump { what: format!("cannot read the split part {name}"), source: e },
        })?;
        parts.push((name, part));
    }
    let set = SplitReader::new(parts, to).map_err(|e| match e {
        kdump_dumpfile::Error::SplitSet(why) => Error::Refused(why),
        e => Error::Dump { what: "cannot read the split dump".to_string(), source: e },
    })?;
    let tracker = tracker.ok_or_else(|| Error::Refused("no split parts given".to_string()))?;
    Ok((set, tracker))
}

impl Dump {
    /// For one part of a split dump given alone: what is missing and what to do.
    pub fn split_warning(&self, name: &str) -> Option<String> {
        let s = self.format.split.as_ref().filter(|s| !s.is_whole())?;
        Some(format!(
            "{name} is one part of a split dump (PFNs {:#x}-{:#x} of {:#x}): pages in the other parts read as \
             missing; give every part (`kdump info PART1 PART2 …`), or join them first with \
             `kdump dump --reassemble PART1 PART2 … OUT`",
            s.start_pfn, s.end_pfn, s.max_pfn
        ))
    }

    /// Makes sure VMCOREINFO is known: the dump's note, else the kernel's own note
    /// found by scanning the dump's memory (dumps made by QEMU carry none). Returns
    /// the physical address it was found at, or `None` for the dump's note. The
    /// scan reads RAM pages in address order until a note validates (all of them
    /// when none does), at most once per `Dump`.
    pub fn resolve_vmcoreinfo(&mut self) -> Result<Option<u64>> {
        if self.mem.vmcoreinfo().is_some() || self.given.is_some() {
            return Ok(None);
        }
        if let Some(found) = &self.found {
            return Ok(Some(found.paddr));
        }
        // The live note is the one whose own page tables lead to a utsname with
        // its release; a stale copy's KASLR offset would not. The first that
        // validates ends the scan; else the first found is used.
        let mut scan = VmcoreinfoScan::new(self.mem.as_ref());
        let mut first = None;
        for _ in 0..MAX_CANDIDATES {
            let next = scan
                .next_note(self.mem.as_mut())
                .what(|| "the dump has no VMCOREINFO note, and reading its memory to find one failed".to_string())?;
            let Some(found) = next else { break };
            if self.validates(&Vmcoreinfo::parse(&found.text)) {
                first = Some(found);
                break;
            }
            first.get_or_insert(found);
        }
        let Some(found) = first else {
            return Err(Error::Undecodable(format!(
                "the dump has no VMCOREINFO note, and none was found in its memory ({} pages scanned, {} not in the \
                 dump): it cannot be decoded without one. A Linux 4.13+ guest keeps its note in a page of its own; \
                 dump the guest's whole memory (no filtering) while it runs Linux",
                scan.pages_scanned, scan.pages_absent
            )));
        };
        let paddr = found.paddr;
        self.found = Some(found);
        Ok(Some(paddr))
    }

    fn validates(&mut self, info: &Vmcoreinfo) -> bool {
        let Ok(layout) = X86_64Layout::from_vmcoreinfo(info) else { return false };
        let mut mem = KernelMemory::new(PhysAdapter::new(self.mem.as_mut()), layout);
        let id = kdump_kernel::identity::identity(&mut mem, info);
        id.version.is_some() && id.release.as_deref() == info.osrelease()
    }

    /// The VMCOREINFO text: the dump's note, or the one [`resolve_vmcoreinfo`](Self::resolve_vmcoreinfo) found.
    pub fn vmcoreinfo_raw(&self) -> Option<&[u8]> {
        self.mem.vmcoreinfo().or(self.given.as_deref()).or(self.found.as_ref().map(|f| f.text.as_slice()))
    }

    /// Uses `text` (a VMCOREINFO file, as `makedumpfile -g` writes and `-i` reads) where the
    /// dump has no note of its own; the dump's note wins. Returns a warning when both exist
    /// and name different releases.
    pub fn give_vmcoreinfo(&mut self, text: Vec<u8>) -> Option<String> {
        if let Some(own) = self.mem.vmcoreinfo() {
            let release = |t: &[u8]| Vmcoreinfo::parse(t).osrelease().map(str::to_string);
            let (theirs, ours) = (release(&text), release(own));
            return (theirs != ours).then(|| {
                format!(
                    "the dump's own VMCOREINFO (release {}) is used, not the given one (release {})",
                    ours.unwrap_or_default(),
                    theirs.unwrap_or_default()
                )
            });
        }
        self.given = Some(text);
        None
    }

    /// VMCOREINFO, parsed (from memory when the dump has no note).
    pub fn vmcoreinfo(&mut self) -> Result<Vmcoreinfo> {
        self.resolve_vmcoreinfo()?;
        let raw = self
            .vmcoreinfo_raw()
            .ok_or_else(|| Error::Undecodable("VMCOREINFO is missing after it was resolved".to_string()))?;
        Ok(Vmcoreinfo::parse(raw))
    }
}

/// The line that says where VMCOREINFO came from when the dump has no note.
pub fn found_in_memory(paddr: u64) -> String {
    format!("found in memory at {paddr:#x}, the dump has no note")
}

/// Byte-addressed reads over a page-based dump, caching the last page. `M`
/// is a borrowed (`&mut dyn PhysMem`) or owned (`Box<dyn PhysMem>`) dump.
pub struct PhysAdapter<M> {
    mem: M,
    page: Vec<u8>,
    cached: Option<u64>,
}

impl<M> std::fmt::Debug for PhysAdapter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhysAdapter").field("cached", &self.cached).finish_non_exhaustive()
    }
}

impl<M: BorrowMut<dyn PhysMem>> PhysAdapter<M> {
    /// Reads through `mem`.
    pub fn new(mem: M) -> Self {
        let size = mem.borrow().page_size() as usize;
        Self { mem, page: vec![0; size], cached: None }
    }
}

impl<M: BorrowMut<dyn PhysMem>> PhysRead for PhysAdapter<M> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> kdump_kernel::Result<()> {
        let size = self.page.len() as u64;
        let mut done = 0usize;
        while done < buf.len() {
            let addr = paddr + done as u64;
            let pfn = addr / size;
            if self.cached != Some(pfn) {
                self.cached = None;
                let state = self
                    .mem
                    .borrow_mut()
                    .read_page(pfn, &mut self.page)
                    .map_err(|e| kdump_kernel::Error::Read { addr, reason: e.to_string() })?;
                match state {
                    PageState::Present | PageState::ZeroFilled => {}
                    _ => return Err(kdump_kernel::Error::NotInDump(addr)),
                }
                self.cached = Some(pfn);
            }
            let off = (addr % size) as usize;
            let n = (self.page.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&self.page[off..off + n]);
            done += n;
        }
        Ok(())
    }
}
