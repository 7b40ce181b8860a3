//! ELF output (`kdump dump -E`): what gdb, crash and drgn open directly.
//!
//! One pass, bounded memory. The program headers are written last, into
//! room reserved at the start of the file: one PT_NOTE, one PT_LOAD per
//! source segment, and extra PT_LOADs where a segment is split around a run
//! of at least [`SPLIT_PAGES`] dropped pages (as makedumpfile does). When the
//! reserve is used up, dropped pages are written as zeros instead of split,
//! so the file stays correct. A dropped run at the end of a segment becomes
//! `p_filesz < p_memsz` (readers zero-fill it).

use std::io;

use kdump_dumpfile::{PageState, PhysMem, WriteAt};
use kdump_elf::{AsBytes, ELF64_EHDR_SIZE, ELF64_PHDR_SIZE, EM_X86_64, Elf64Ehdr, Elf64Phdr, PT_LOAD, PT_NOTE};

/// Dropped pages in a row that justify a new PT_LOAD.
pub const SPLIT_PAGES: u64 = 256;
/// PT_LOADs reserved beyond one per source segment.
pub const EXTRA_SEGMENTS: u64 = 4096;
/// ELF `e_flags` bit set when the dump is incomplete (makedumpfile's convention).
pub const ELF_FLAG_INCOMPLETE: u32 = 1;

const EHDR: u64 = ELF64_EHDR_SIZE as u64;
const PHDR: u64 = ELF64_PHDR_SIZE as u64;

/// A region of the source to write as PT_LOADs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfSegment {
    /// Physical start (page aligned).
    pub paddr: u64,
    /// Virtual address of `paddr` in the crashed kernel (0 when unknown).
    pub vaddr: u64,
    /// Length in bytes (a multiple of the page size).
    pub len: u64,
}

#[derive(Debug, Clone, Copy)]
struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

impl Phdr {
    fn bytes(&self) -> [u8; PHDR as usize] {
        let mut h = Elf64Phdr::core(self.kind, self.offset, self.vaddr, self.paddr, self.filesz, self.memsz);
        // Notes carry no permissions (as makedumpfile writes them).
        if self.kind != PT_LOAD {
            h.p_flags = 0.into();
        }
        h.as_bytes().try_into().expect("the size is asserted in kdump-elf")
    }
}

/// What [`save_elf`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfReport {
    /// Pages written as data.
    pub pages_written: u64,
    /// Pages dropped (filtered, zero, or absent in the source).
    pub pages_dropped: u64,
    /// PT_LOAD headers written.
    pub segments: u64,
    /// File size.
    pub file_size: u64,
    /// Why the dump is incomplete, when it is.
    pub incomplete_reason: Option<String>,
}

/// Bytes before the first page of data: headers, reserved program headers
/// and notes, rounded up to a page. Preallocate them to survive a full disk.
pub fn elf_metadata_len(segments: usize, notes_len: usize, page_size: u64) -> u64 {
    let phdrs = 1 + segments as u64 + EXTRA_SEGMENTS;
    (EHDR + phdrs * PHDR + notes_len as u64).div_ceil(page_size) * page_size
}

/// Appends page data at the end of the file through a 1 MiB staging buffer.
struct DataWriter<'a, S> {
    sink: &'a mut S,
    staged: Vec<u8>,
    /// Everything before this offset reached the sink.
    flushed_end: u64,
    /// Offset of the next byte appended (flushed plus staged).
    end: u64,
    failure: Option<io::Error>,
}

impl<S: WriteAt> DataWriter<'_, S> {
    fn append(&mut self, bytes: &[u8]) {
        self.staged.extend_from_slice(bytes);
        self.end += bytes.len() as u64;
        if self.staged.len() >= 1 << 20 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.failure.is_none() && !self.staged.is_empty() {
            match self.sink.write_at(self.flushed_end, &self.staged) {
                Ok(()) => self.flushed_end += self.staged.len() as u64,
                Err(e) => self.failure = Some(e),
            }
        }
        self.staged.clear();
    }
}

/// The PT_LOAD being built, in pages of its source segment.
#[derive(Debug, Clone, Copy)]
struct OpenLoad {
    first: u64,
    covered: u64,
    data: u64,
    offset: u64,
}

/// Writes an ELF64 vmcore of `segments` of `src` into `sink`. `keep(pfn)`
/// decides which pages are dumped (before they are read); `drop_zero` drops all-zero pages.
/// A write error stops the dump; the file then describes only the data that
/// reached the sink and has [`ELF_FLAG_INCOMPLETE`] set.
pub fn save_elf<M, S, K>(
    src: &mut M,
    sink: &mut S,
    segments: &[ElfSegment],
    drop_zero: bool,
    mut keep: K,
) -> io::Result<ElfReport>
where
    M: PhysMem + ?Sized,
    S: WriteAt,
    K: FnMut(u64) -> bool,
{
    let page = src.page_size();
    let notes = src.notes().to_vec();
    let notes_off = EHDR + (1 + segments.len() as u64 + EXTRA_SEGMENTS) * PHDR;
    let start = elf_metadata_len(segments.len(), notes.len(), page);
    let mut out =
        DataWriter { sink, staged: Vec::with_capacity(1 << 20), flushed_end: start, end: start, failure: None };
    let mut loads: Vec<Phdr> = Vec::new();
    let mut report = ElfReport::default();
    let mut splits = 0u64;
    let mut buf = vec![0u8; page as usize];
    let zeros = vec![0u8; page as usize];

    for seg in segments {
        let close = |o: OpenLoad, trailing: u64| Phdr {
            kind: PT_LOAD,
            offset: o.offset,
            vaddr: if seg.vaddr == 0 { 0 } else { seg.vaddr + o.first * page },
            paddr: seg.paddr + o.first * page,
            filesz: o.data * page,
            memsz: (o.covered + trailing) * page,
        };
        let mut open: Option<OpenLoad> = None;
        let mut dropped_run = 0u64;
        for i in 0..seg.len / page {
            if out.failure.is_some() {
                break;
            }
            let pfn = seg.paddr / page + i;
            let wanted = keep(pfn)
                && matches!(src.read_page(pfn, &mut buf), Ok(PageState::Present | PageState::ZeroFilled))
                && !(drop_zero && buf == zeros);
            if !wanted {
                report.pages_dropped += 1;
                dropped_run += 1;
                continue;
            }
            match open {
                // A long gap closes the PT_LOAD, while reserved headers remain.
                Some(o) if dropped_run >= SPLIT_PAGES && splits < EXTRA_SEGMENTS => {
                    loads.push(close(o, 0));
                    splits += 1;
                    open = None;
                }
                // A short gap is written as zeros, keeping the PT_LOAD contiguous.
                Some(ref mut o) => {
                    for _ in 0..dropped_run {
                        out.append(&zeros);
                    }
                    o.covered += dropped_run;
                    o.data += dropped_run;
                    report.pages_dropped -= dropped_run;
                    report.pages_written += dropped_run;
                }
                None => {}
            }
            dropped_run = 0;
            let o = open.get_or_insert(OpenLoad { first: i, covered: 0, data: 0, offset: out.end });
            o.covered += 1;
            o.data += 1;
            out.append(&buf);
            report.pages_written += 1;
        }
        if let Some(o) = open {
            loads.push(close(o, dropped_run));
        }
        if out.failure.is_some() {
            break;
        }
    }
    out.flush();
    let durable = out.flushed_end;
    let failure = out.failure.take();
    let sink = out.sink;

    // After a failure, describe only what reached the file.
    if failure.is_some() {
        for l in &mut loads {
            let have = durable.saturating_sub(l.offset).min(l.filesz) / page * page;
            report.pages_written -= (l.filesz - have) / page;
            l.filesz = have;
        }
        loads.retain(|l| l.filesz > 0);
    }
    let mut table = Phdr {
        kind: PT_NOTE,
        offset: notes_off,
        vaddr: 0,
        paddr: 0,
        filesz: notes.len() as u64,
        memsz: notes.len() as u64,
    }
    .bytes()
    .to_vec();
    for l in &loads {
        table.extend_from_slice(&l.bytes());
    }
    sink.write_at(notes_off, &notes)?;
    sink.write_at(EHDR, &table)?;
    let flags = if failure.is_some() { ELF_FLAG_INCOMPLETE } else { 0 };
    let phnum = u16::try_from(1 + loads.len()).map_err(|_| io::Error::other("too many program headers"))?;
    sink.write_at(0, ehdr(phnum, flags).as_bytes())?;
    sink.flush()?;
    report.segments = loads.len() as u64;
    report.file_size = durable;
    report.incomplete_reason = failure.map(|e| e.to_string());
    Ok(report)
}

fn ehdr(phnum: u16, flags: u32) -> Elf64Ehdr {
    Elf64Ehdr::core(EM_X86_64, phnum, flags)
}
