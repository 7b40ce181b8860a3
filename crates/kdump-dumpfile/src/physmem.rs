//! The physical-memory read interface shared by all dump readers.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use crate::error::{Error, Result};

/// A half-open range of page frame numbers, `start..end`.
pub type PfnRange = Range<u64>;

/// What a reader knows about one page after [`PhysMem::read_page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageState {
    /// The page's contents were in the dump and are now in the buffer.
    Present,
    /// The dump says the page is RAM but stores no bytes for it and defines it as zero
    /// (ELF `p_filesz < p_memsz`). It may have been zero or filtered out: ELF cannot tell.
    /// The buffer is zero-filled.
    ZeroFilled,
    /// The page is RAM but was filtered out when the dump was made. The buffer is zero-filled.
    Excluded,
    /// The page should be in the dump but is not: the dump is incomplete (for example the disk
    /// filled up). The buffer is zero-filled.
    Lost,
    /// The page frame is not RAM (a hole in the physical address map). The buffer is zero-filled.
    NotRam,
}

impl PageState {
    /// Whether the buffer holds real page contents (`Present`).
    pub fn is_present(self) -> bool {
        self == PageState::Present
    }
}

/// Random read access to the physical memory stored in a dump, page by page.
pub trait PhysMem {
    /// Page size in bytes (a power of two, at least 512).
    fn page_size(&self) -> u64;

    /// One past the highest page frame number the dump can describe.
    fn max_pfn(&self) -> u64;

    /// Sorted, non-overlapping, non-adjacent ranges of page frames that are RAM.
    fn ram_ranges(&self) -> &[PfnRange];

    /// Reads page `pfn` into `buf`, which must be exactly [`page_size`](Self::page_size) bytes.
    ///
    /// Pages that are not [`PageState::Present`] are zero-filled.
    fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> Result<PageState>;

    /// The raw ELF notes (concatenated PT_NOTE contents: `NT_PRSTATUS` per CPU, `VMCOREINFO`, …).
    fn notes(&self) -> &[u8];

    /// The VMCOREINFO text (`KEY=VALUE` lines), if the dump carries one.
    fn vmcoreinfo(&self) -> Option<&[u8]>;

    /// Whether the dump has page `pfn` (stored, or lost by an incomplete dump), found
    /// without reading the page: false for pages left out when the dump was made and for
    /// frames that are not RAM. By default every RAM page (an ELF vmcore's).
    fn has_page(&mut self, pfn: u64) -> Result<bool> {
        Ok(ranges_contain(self.ram_ranges(), pfn))
    }
}

/// Checks that `buf` has exactly `page_size` bytes.
/// `v` as a length or index of memory: a size read from a file that this machine cannot hold
/// is corrupt, never truncated.
pub(crate) fn usize_of(v: u64, what: &'static str) -> Result<usize> {
    usize::try_from(v).map_err(|_| crate::error::corrupt(what, format!("{v:#x} does not fit in memory")))
}

pub(crate) fn check_buf(buf: &[u8], page_size: u64) -> Result<()> {
    if buf.len() as u64 != page_size {
        return Err(Error::InvalidArgument(format!(
            "page buffer has {} bytes but the page size is {page_size}; pass a buffer of exactly page_size() bytes",
            buf.len()
        )));
    }
    Ok(())
}

/// Merges overlapping or adjacent ranges and drops empty ones.
pub(crate) fn normalize_ranges(mut ranges: Vec<PfnRange>) -> Vec<PfnRange> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<PfnRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Whether `pfn` lies in one of the sorted ranges.
pub(crate) fn ranges_contain(ranges: &[PfnRange], pfn: u64) -> bool {
    let idx = ranges.partition_point(|r| r.end <= pfn);
    ranges.get(idx).is_some_and(|r| r.start <= pfn)
}

/// Length of a seekable input (restores the position to the start).
pub(crate) fn stream_len<R: Seek>(r: &mut R) -> Result<u64> {
    let len = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    Ok(len)
}

/// Reads `buf.len()` bytes at `offset`, reporting a typed truncation error when the input is too short.
pub(crate) fn read_at<R: Read + Seek>(
    r: &mut R,
    file_len: u64,
    offset: u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<()> {
    let needed = buf.len() as u64;
    if offset.checked_add(needed).is_none_or(|end| end > file_len) {
        return Err(Error::Truncated { what, offset, needed, len: file_len });
    }
    r.seek(SeekFrom::Start(offset))?;
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Truncated { what, offset, needed, len: file_len }
        } else {
            Error::Io(e)
        }
    })
}

pub(crate) fn u16_at(b: &[u8], off: usize, le: bool) -> u16 {
    let a = [b[off], b[off + 1]];
    if le { u16::from_le_bytes(a) } else { u16::from_be_bytes(a) }
}

pub(crate) fn u32_at(b: &[u8], off: usize, le: bool) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
}

pub(crate) fn u64_at(b: &[u8], off: usize, le: bool) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    if le { u64::from_le_bytes(a) } else { u64::from_be_bytes(a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_merges() {
        assert_eq!(normalize_ranges(vec![5..9, 0..2, 2..3, 8..10, 4..4]), vec![0..3, 5..10]);
        let r = normalize_ranges(vec![1..3, 10..20]);
        assert!(!ranges_contain(&r, 0));
        assert!(ranges_contain(&r, 1));
        assert!(!ranges_contain(&r, 3));
        assert!(ranges_contain(&r, 19));
        assert!(!ranges_contain(&r, 20));
    }
}
