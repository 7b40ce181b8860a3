//! ELF output (`kdump dump -E`): what gdb, crash and drgn open directly.
//!
//! One pass, bounded memory. The program headers are written last, into
//! room reserved at the start of the file: one PT_NOTE, one PT_LOAD per
//! source segment, and extra PT_LOADs where a segment is split around a run
//! of at least [`SPLIT_PAGES`] dropped pages (as makedumpfile does). When the
//! reserve is used up, dropped pages are written as zeros instead of split,
//! so the file stays correct. A dropped run at the end of a segment becomes
//! `p_filesz < p_memsz` (readers zero-fill it).
//!
//! Virtual aliases (the crashed kernel's page tables, walked by the caller) add PT_LOADs
//! after those: each gives a kernel virtual range (module, vmalloc and vmap memory,
//! vmemmap, per-CPU, fixmap) a `p_vaddr` and points at page data already in the file, so
//! `gdb -c` reads any kernel address and no page is stored twice. They come right after the
//! first physical PT_LOAD (crash takes its offset as the end of the headers), so the last
//! PT_LOAD is a physical one (makedumpfile finds PAGE_OFFSET from it).

use std::io;

use kdump_dumpfile::{PageState, PhysMem, WriteAt};
use kdump_elf::{
    AsBytes, ELF64_EHDR_SIZE, ELF64_PHDR_SIZE, ELF64_SHDR_SIZE, EM_X86_64, Elf64Ehdr, Elf64Phdr, Elf64Shdr, PN_XNUM,
    PT_LOAD, PT_NOTE,
};

/// Dropped pages in a row that justify a new PT_LOAD.
pub const SPLIT_PAGES: u64 = 256;
/// PT_LOADs reserved beyond one per source segment.
pub const EXTRA_SEGMENTS: u64 = 4096;
/// ELF `e_flags` bit set when the dump is incomplete (makedumpfile's convention).
pub const ELF_FLAG_INCOMPLETE: u32 = 1;

const EHDR: u64 = ELF64_EHDR_SIZE as u64;
const PHDR: u64 = ELF64_PHDR_SIZE as u64;
const SHDR: u64 = ELF64_SHDR_SIZE as u64;

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
    /// PT_LOAD headers written (physical and virtual).
    pub segments: u64,
    /// Of those, PT_LOADs that alias a virtual range to page data already written.
    pub virtual_segments: u64,
    /// Virtual ranges (or pieces of one) left out because the reserved headers ran out.
    pub virtual_left_out: u64,
    /// File size.
    pub file_size: u64,
    /// Why the dump is incomplete, when it is.
    pub incomplete_reason: Option<String>,
}

/// Bytes before the first page of data: headers, reserved program headers
/// and notes, rounded up to a page. Preallocate them to survive a full disk.
pub fn elf_metadata_len(segments: usize, aliases: usize, notes_len: usize, page_size: u64) -> u64 {
    let phdrs = phdr_slots(segments, aliases);
    let notes_end = EHDR + phdrs * PHDR + notes_len as u64;
    let end = if phdrs >= u64::from(PN_XNUM) { notes_end.next_multiple_of(8) + SHDR } else { notes_end };
    end.div_ceil(page_size) * page_size
}

/// Program headers reserved: the note, one per segment, [`EXTRA_SEGMENTS`] for splits, and
/// for virtual aliases one each plus [`EXTRA_SEGMENTS`] for aliases a split cuts in two.
fn phdr_slots(segments: usize, aliases: usize) -> u64 {
    1 + segments as u64 + EXTRA_SEGMENTS + alias_slots(aliases)
}

fn alias_slots(aliases: usize) -> u64 {
    if aliases == 0 { 0 } else { aliases as u64 + EXTRA_SEGMENTS }
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

/// Writes an ELF64 vmcore of `segments` of `src` into `sink`, then PT_LOADs giving each of
/// `aliases` (virtual ranges over physical memory, `len` bytes from `paddr` seen at `vaddr`)
/// the part of its pages stored in the file. `keep(pfn)`
/// decides which pages are dumped (before they are read); `drop_zero` drops all-zero pages.
/// A write error stops the dump; the file then describes only the data that
/// reached the sink and has [`ELF_FLAG_INCOMPLETE`] set.
pub fn save_elf<M, S, K>(
    src: &mut M,
    sink: &mut S,
    segments: &[ElfSegment],
    aliases: &[ElfSegment],
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
    let slots = phdr_slots(segments.len(), aliases.len());
    let notes_off = EHDR + slots * PHDR;
    let start = elf_metadata_len(segments.len(), aliases.len(), notes.len(), page);
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
    let (virtual_loads, left_out) = alias_loads(&loads, aliases, alias_slots(aliases.len()));
    report.virtual_segments = virtual_loads.len() as u64;
    report.virtual_left_out = left_out;
    // The aliases go after the first physical PT_LOAD (crash takes its offset as the end of
    // the headers) and before the others: makedumpfile takes the last PT_LOAD below the
    // kernel text mapping as the direct map, to find PAGE_OFFSET.
    let at = loads.len().min(1);
    loads.splice(at..at, virtual_loads);
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
    let phnum = u32::try_from(1 + loads.len()).map_err(|_| io::Error::other("too many program headers"))?;
    let shoff = (notes_off + notes.len() as u64).next_multiple_of(8);
    let header = Elf64Ehdr::core_any(EM_X86_64, phnum, flags, shoff);
    if header.e_phnum.get() == PN_XNUM {
        sink.write_at(shoff, Elf64Shdr::extended_count(phnum).as_bytes())?;
    }
    sink.write_at(0, header.as_bytes())?;
    sink.flush()?;
    report.segments = loads.len() as u64;
    report.file_size = durable;
    report.incomplete_reason = failure.map(|e| e.to_string());
    Ok(report)
}

/// The PT_LOADs of `aliases` over the physical `loads` written: a piece for each stored
/// run an alias crosses, at most `room` of them (the rest are counted, not written).
fn alias_loads(loads: &[Phdr], aliases: &[ElfSegment], room: u64) -> (Vec<Phdr>, u64) {
    if aliases.is_empty() {
        return (Vec::new(), 0);
    }
    // Stored physical runs (start, end, file offset): sorted, overlaps trimmed (the kernel
    // text PT_LOAD repeats RAM), neighbours contiguous in memory and file merged.
    let mut stored: Vec<(u64, u64, u64)> =
        loads.iter().filter(|l| l.filesz > 0).map(|l| (l.paddr, l.paddr + l.filesz, l.offset)).collect();
    stored.sort_unstable_by_key(|r| r.0);
    let mut runs: Vec<(u64, u64, u64)> = Vec::with_capacity(stored.len());
    for (start, end, offset) in stored {
        let from = runs.last().map_or(start, |r| r.1.max(start));
        if from >= end {
            continue;
        }
        let offset = offset + (from - start);
        match runs.last_mut() {
            Some(r) if r.1 == from && r.2 + (r.1 - r.0) == offset => r.1 = end,
            _ => runs.push((from, end, offset)),
        }
    }
    let mut out = Vec::new();
    let mut left_out = 0u64;
    for a in aliases {
        let (start, end) = (a.paddr, a.paddr.saturating_add(a.len));
        let mut i = runs.partition_point(|r| r.1 <= start);
        while let Some(&(run_start, run_end, offset)) = runs.get(i).filter(|r| r.0 < end) {
            let (s, e) = (start.max(run_start), end.min(run_end));
            if out.len() as u64 >= room {
                left_out += 1;
            } else {
                out.push(Phdr {
                    kind: PT_LOAD,
                    offset: offset + (s - run_start),
                    vaddr: a.vaddr.wrapping_add(s - start),
                    paddr: s,
                    filesz: e - s,
                    memsz: e - s,
                });
            }
            i += 1;
        }
    }
    (out, left_out)
}
