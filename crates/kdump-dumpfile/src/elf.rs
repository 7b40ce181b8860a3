//! ELF vmcore reader (`/proc/vmcore`, `makedumpfile -E`, QEMU `dump-guest-memory` ELF).
//!
//! An ELF core (`ET_CORE`) with PT_NOTE segments (CPU registers, VMCOREINFO) and one PT_LOAD
//! per physical memory range. `p_paddr` is the physical address; bytes between `p_filesz`
//! and `p_memsz` are zero (makedumpfile uses this for excluded tails). Overlapping PT_LOADs
//! (the kernel-text segment duplicates part of RAM) are resolved first-come-first-served.

use std::io::{Read, Seek};

use crate::error::{Error, Result, corrupt};
use crate::notes::find_vmcoreinfo;
use crate::physmem::{
    PageState, PfnRange, PhysMem, check_buf, normalize_ranges, read_at, stream_len, u16_at, u32_at, u64_at, usize_of,
};

use kdump_elf::{AsBytes, ELF64_EHDR_SIZE, ELF64_PHDR_SIZE, Elf64Ehdr, Elf64Phdr};
pub use kdump_elf::{EM_386, EM_X86_64, ET_CORE, PT_LOAD, PT_NOTE};
/// Most note bytes this reader accepts (all PT_NOTEs together).
pub const MAX_NOTES_SIZE: u64 = 64 << 20;
/// Most program headers this reader accepts.
pub const MAX_PHDRS: u64 = 1 << 20;

/// One PT_LOAD segment as found in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// File offset of the segment's bytes.
    pub offset: u64,
    /// Virtual address (`p_vaddr`).
    pub vaddr: u64,
    /// Physical address (`p_paddr`).
    pub paddr: u64,
    /// Bytes stored in the file.
    pub filesz: u64,
    /// Bytes of memory described (the rest beyond `filesz` is zero).
    pub memsz: u64,
}

/// A run of physical addresses `[start, end)`, stored in the file at `file_off` or zero-filled.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: u64,
    end: u64,
    file_off: Option<u64>,
}

/// Reader for ELF vmcores (ELF32 and ELF64, either byte order).
#[derive(Debug)]
pub struct ElfVmcore<R> {
    inner: R,
    file_len: u64,
    class64: bool,
    little_endian: bool,
    machine: u16,
    e_flags: u32,
    page_size: u64,
    segments: Vec<LoadSegment>,
    pieces: Vec<Piece>,
    ram: Vec<PfnRange>,
    max_pfn: u64,
    notes: Vec<u8>,
    vmcoreinfo: Option<std::ops::Range<usize>>,
}

impl<R: Read + Seek> ElfVmcore<R> {
    /// Opens an ELF vmcore. The page size is taken from VMCOREINFO `PAGESIZE=`, else 4096.
    pub fn open(inner: R) -> Result<Self> {
        Self::open_with_page_size(inner, None)
    }

    /// Opens an ELF vmcore with an explicit page size (overrides VMCOREINFO).
    pub fn open_with_page_size(mut inner: R, page_size: Option<u64>) -> Result<Self> {
        let file_len = stream_len(&mut inner)?;
        let mut ident = [0u8; 16];
        read_at(&mut inner, file_len, 0, &mut ident, "ELF identification")?;
        if &ident[0..4] != b"\x7fELF" {
            return Err(Error::BadMagic { expected: "an ELF file", found: ident[0..4].to_vec() });
        }
        let class64 = match ident[4] {
            1 => false,
            2 => true,
            c => return Err(corrupt("ELF header", format!("EI_CLASS {c} is neither ELFCLASS32 nor ELFCLASS64"))),
        };
        let le = match ident[5] {
            1 => true,
            2 => false,
            d => return Err(corrupt("ELF header", format!("EI_DATA {d} is neither little- nor big-endian"))),
        };
        let ehsize = if class64 { 64 } else { 52 };
        let mut eh = vec![0u8; ehsize];
        read_at(&mut inner, file_len, 0, &mut eh, "ELF header")?;
        let e_type = u16_at(&eh, 16, le);
        if e_type != ET_CORE {
            return Err(Error::Unsupported {
                what: "ELF file type",
                detail: format!("e_type {e_type} is not ET_CORE (4); pass a vmcore, not an executable or object"),
            });
        }
        let machine = u16_at(&eh, 18, le);
        let (phoff, shoff, e_flags, phentsize, phnum16) = if class64 {
            (u64_at(&eh, 32, le), u64_at(&eh, 40, le), u32_at(&eh, 48, le), u16_at(&eh, 54, le), u16_at(&eh, 56, le))
        } else {
            (
                u64::from(u32_at(&eh, 28, le)),
                u64::from(u32_at(&eh, 32, le)),
                u32_at(&eh, 36, le),
                u16_at(&eh, 42, le),
                u16_at(&eh, 44, le),
            )
        };
        let want_phent = if class64 { 56 } else { 32 };
        if u64::from(phentsize) != want_phent {
            return Err(corrupt("ELF header", format!("e_phentsize {phentsize}, expected {want_phent}")));
        }
        // PN_XNUM: the real count is in section header 0's sh_info.
        let phnum = if phnum16 == 0xffff {
            let (shsize, info_off) = if class64 { (64usize, 44usize) } else { (40, 28) };
            let mut sh = vec![0u8; shsize];
            read_at(&mut inner, file_len, shoff, &mut sh, "ELF section header 0 (PN_XNUM)")?;
            u64::from(u32_at(&sh, info_off, le))
        } else {
            u64::from(phnum16)
        };
        if phnum > MAX_PHDRS {
            return Err(corrupt("ELF header", format!("{phnum} program headers (more than {MAX_PHDRS})")));
        }
        let ph_bytes = phnum * want_phent;
        if phoff.checked_add(ph_bytes).is_none_or(|e| e > file_len) {
            return Err(Error::Truncated {
                what: "ELF program headers",
                offset: phoff,
                needed: ph_bytes,
                len: file_len,
            });
        }
        let mut ph = vec![0u8; usize_of(ph_bytes, "ELF program headers")?];
        read_at(&mut inner, file_len, phoff, &mut ph, "ELF program headers")?;

        let mut segments = Vec::new();
        let mut note_ranges = Vec::new();
        let mut note_total = 0u64;
        // The table was read whole above: every entry is in `ph`.
        for (i, p) in ph.chunks_exact(usize::from(phentsize)).enumerate() {
            let p_type = u32_at(p, 0, le);
            let seg = if class64 {
                LoadSegment {
                    offset: u64_at(p, 8, le),
                    vaddr: u64_at(p, 16, le),
                    paddr: u64_at(p, 24, le),
                    filesz: u64_at(p, 32, le),
                    memsz: u64_at(p, 40, le),
                }
            } else {
                LoadSegment {
                    offset: u64::from(u32_at(p, 4, le)),
                    vaddr: u64::from(u32_at(p, 8, le)),
                    paddr: u64::from(u32_at(p, 12, le)),
                    filesz: u64::from(u32_at(p, 16, le)),
                    memsz: u64::from(u32_at(p, 20, le)),
                }
            };
            // A PT_LOAD at physical address -1 has none: /proc/kcore's vmalloc, module and
            // vmemmap ranges. Reading physical memory, there is nowhere to place it.
            let no_paddr = seg.paddr == if class64 { u64::MAX } else { u64::from(u32::MAX) };
            match p_type {
                PT_LOAD if no_paddr => {}
                PT_LOAD => {
                    if seg.offset.checked_add(seg.filesz).is_none_or(|e| e > file_len) {
                        return Err(Error::Truncated {
                            what: "ELF PT_LOAD segment",
                            offset: seg.offset,
                            needed: seg.filesz,
                            len: file_len,
                        });
                    }
                    if seg.filesz > seg.memsz {
                        return Err(corrupt(
                            "ELF PT_LOAD",
                            format!("program header {i}: p_filesz {:#x} > p_memsz {:#x}", seg.filesz, seg.memsz),
                        ));
                    }
                    if seg.paddr.checked_add(seg.memsz).is_none() {
                        return Err(corrupt("ELF PT_LOAD", format!("program header {i}: p_paddr + p_memsz overflows")));
                    }
                    segments.push(seg);
                }
                PT_NOTE => {
                    if seg.offset.checked_add(seg.filesz).is_none_or(|e| e > file_len) {
                        return Err(Error::Truncated {
                            what: "ELF PT_NOTE segment",
                            offset: seg.offset,
                            needed: seg.filesz,
                            len: file_len,
                        });
                    }
                    note_total += seg.filesz;
                    if note_total > MAX_NOTES_SIZE {
                        return Err(corrupt("ELF PT_NOTE", format!("notes exceed {MAX_NOTES_SIZE} bytes")));
                    }
                    note_ranges.push((seg.offset, seg.filesz));
                }
                _ => {}
            }
        }
        let mut notes = Vec::with_capacity(usize_of(note_total, "ELF notes")?);
        for (off, size) in note_ranges {
            let start = notes.len();
            notes.resize(start + usize_of(size, "ELF PT_NOTE segment")?, 0);
            read_at(&mut inner, file_len, off, &mut notes[start..], "ELF PT_NOTE segment")?;
        }
        let vmcoreinfo = find_vmcoreinfo(&notes, le).map(|(off, d)| off..off + d.len());

        let page_size = match page_size {
            Some(p) => p,
            None => vmcoreinfo
                .as_ref()
                .and_then(|r| vmcoreinfo_value(&notes[r.clone()], "PAGESIZE"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(4096),
        };
        if !page_size.is_power_of_two() || !(512..=(1 << 24)).contains(&page_size) {
            return Err(corrupt("page size", format!("{page_size} is not a power of two between 512 and 16 MiB")));
        }

        // First-come-first-served map of physical address pieces.
        let mut order: Vec<usize> = (0..segments.len()).collect();
        order.sort_by_key(|&i| (segments[i].paddr, std::cmp::Reverse(segments[i].memsz)));
        let mut pieces = Vec::new();
        let mut covered = 0u64;
        for i in order {
            let s = segments[i];
            let end = s.paddr + s.memsz;
            let file_end = s.paddr + s.filesz;
            let start = s.paddr.max(covered);
            if start >= end {
                continue;
            }
            if start < file_end {
                pieces.push(Piece { start, end: file_end, file_off: Some(s.offset + (start - s.paddr)) });
            }
            let zstart = start.max(file_end);
            if zstart < end {
                pieces.push(Piece { start: zstart, end, file_off: None });
            }
            covered = end;
        }
        let ram = normalize_ranges(pieces.iter().map(|p| p.start / page_size..p.end.div_ceil(page_size)).collect());
        let max_pfn = ram.last().map_or(0, |r| r.end);
        Ok(Self {
            inner,
            file_len,
            class64,
            little_endian: le,
            machine,
            e_flags,
            page_size,
            segments,
            pieces,
            ram,
            max_pfn,
            notes,
            vmcoreinfo,
        })
    }

    /// Whether the file is ELF64.
    pub fn is_elf64(&self) -> bool {
        self.class64
    }

    /// Whether the file is little-endian.
    pub fn is_little_endian(&self) -> bool {
        self.little_endian
    }

    /// `e_machine` (62 = x86-64, 3 = i386, …).
    pub fn machine(&self) -> u16 {
        self.machine
    }

    /// `e_flags`; makedumpfile sets bit 0 when its ELF output is incomplete.
    pub fn e_flags(&self) -> u32 {
        self.e_flags
    }

    /// The PT_LOAD segments in file order (for virtual-to-physical translation by `p_vaddr`).
    pub fn segments(&self) -> &[LoadSegment] {
        &self.segments
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Looks up `KEY=` in VMCOREINFO text.
pub fn vmcoreinfo_value<'a>(text: &'a [u8], key: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

impl<R: Read + Seek> PhysMem for ElfVmcore<R> {
    fn page_size(&self) -> u64 {
        self.page_size
    }

    fn max_pfn(&self) -> u64 {
        self.max_pfn
    }

    fn ram_ranges(&self) -> &[PfnRange] {
        &self.ram
    }

    fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> Result<PageState> {
        check_buf(buf, self.page_size)?;
        buf.fill(0);
        let Some(start) = pfn.checked_mul(self.page_size).filter(|_| pfn < self.max_pfn) else {
            return Ok(PageState::NotRam);
        };
        let end = start.saturating_add(self.page_size);
        let mut idx = self.pieces.partition_point(|p| p.end <= start);
        let (mut any_file, mut any_zero) = (false, false);
        while let Some(p) = self.pieces.get(idx).copied() {
            if p.start >= end {
                break;
            }
            let s = p.start.max(start);
            let e = p.end.min(end);
            match p.file_off {
                Some(off) => {
                    let dst = &mut buf[usize_of(s - start, "ELF PT_LOAD")?..usize_of(e - start, "ELF PT_LOAD")?];
                    read_at(&mut self.inner, self.file_len, off + (s - p.start), dst, "ELF PT_LOAD data")?;
                    any_file = true;
                }
                None => any_zero = true,
            }
            idx += 1;
        }
        Ok(if any_file {
            PageState::Present
        } else if any_zero {
            PageState::ZeroFilled
        } else {
            PageState::NotRam
        })
    }

    fn notes(&self) -> &[u8] {
        &self.notes
    }

    fn vmcoreinfo(&self) -> Option<&[u8]> {
        self.vmcoreinfo.clone().map(|r| &self.notes[r])
    }
}

/// Writes a minimal ELF64 little-endian vmcore: one PT_NOTE, one PT_LOAD per segment.
///
/// `segments` are `(paddr, memsz, bytes)` with `bytes.len() <= memsz` (the rest is zero).
/// Meant for tests and small fixtures; it holds everything in memory.
pub fn write_elf64_vmcore<W: std::io::Write>(
    out: &mut W,
    machine: u16,
    notes: &[u8],
    segments: &[(u64, u64, &[u8])],
) -> Result<()> {
    let phnum = 1 + segments.len();
    let phnum16 = u16::try_from(phnum)
        .ok()
        .filter(|&n| n < 0xffff)
        .ok_or_else(|| Error::InvalidArgument("too many segments for this simple writer".into()))?;
    let mut h = Elf64Ehdr::core(machine, phnum16, 0).as_bytes().to_vec();
    let mut off = (ELF64_EHDR_SIZE + ELF64_PHDR_SIZE * phnum) as u64;
    let mut ph = |t: u32, o: u64, paddr: u64, filesz: u64, memsz: u64| {
        h.extend_from_slice(Elf64Phdr::core(t, o, 0, paddr, filesz, memsz).as_bytes());
    };
    ph(PT_NOTE, off, 0, notes.len() as u64, notes.len() as u64);
    off += notes.len() as u64;
    for (paddr, memsz, bytes) in segments {
        if bytes.len() as u64 > *memsz {
            return Err(Error::InvalidArgument("segment bytes longer than memsz".into()));
        }
        ph(PT_LOAD, off, *paddr, bytes.len() as u64, *memsz);
        off += bytes.len() as u64;
    }
    out.write_all(&h)?;
    out.write_all(notes)?;
    for (_, _, bytes) in segments {
        out.write_all(bytes)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use super::*;
    use crate::notes::push_note;
    use std::io::Cursor;

    fn sample() -> Vec<u8> {
        let mut notes = Vec::new();
        push_note(&mut notes, b"CORE", 1, &[0xaa; 336]);
        push_note(&mut notes, b"VMCOREINFO", 0, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
        let a = vec![1u8; 0x9fc00 - 0x1000];
        let b = vec![2u8; 0x3000];
        let mut out = Vec::new();
        write_elf64_vmcore(&mut out, EM_X86_64, &notes, &[(0x1000, a.len() as u64, &a), (0x100000, 0x5000, &b)])
            .unwrap();
        out
    }

    #[test]
    fn header_offsets() {
        let f = sample();
        assert_eq!(&f[0..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([f[56], f[57]]), 3); // e_phnum
        assert_eq!(u32::from_le_bytes(f[64..68].try_into().unwrap()), PT_NOTE);
        assert_eq!(u32::from_le_bytes(f[120..124].try_into().unwrap()), PT_LOAD);
    }

    #[test]
    fn reads_pages() {
        let mut v = ElfVmcore::open(Cursor::new(sample())).unwrap();
        assert!(v.is_elf64());
        assert_eq!(v.page_size(), 4096);
        assert_eq!(v.ram_ranges(), &[1..0xa0, 0x100..0x105]);
        assert_eq!(v.vmcoreinfo().unwrap(), b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
        let mut buf = vec![0u8; 4096];
        assert_eq!(v.read_page(0, &mut buf).unwrap(), PageState::NotRam);
        assert_eq!(v.read_page(1, &mut buf).unwrap(), PageState::Present);
        assert!(buf.iter().all(|&b| b == 1));
        // partial last page of the low range: 0x9f000..0x9fc00 present, rest zero
        assert_eq!(v.read_page(0x9f, &mut buf).unwrap(), PageState::Present);
        assert!(buf[..0xc00].iter().all(|&b| b == 1) && buf[0xc00..].iter().all(|&b| b == 0));
        assert_eq!(v.read_page(0x102, &mut buf).unwrap(), PageState::Present);
        assert!(buf.iter().all(|&b| b == 2));
        assert_eq!(v.read_page(0x103, &mut buf).unwrap(), PageState::ZeroFilled);
        assert_eq!(v.read_page(0x105, &mut buf).unwrap(), PageState::NotRam);
        assert_eq!(v.read_page(u64::MAX, &mut buf).unwrap(), PageState::NotRam);
        assert!(v.read_page(1, &mut [0u8; 10]).is_err());
    }

    #[test]
    fn truncations_are_errors() {
        let f = sample();
        // Everything up to the end of the first PT_LOAD's data matters.
        for cut in 0..f.len() - 1 {
            if cut % 97 != 0 && cut > 400 {
                continue;
            }
            assert!(ElfVmcore::open(Cursor::new(f[..cut].to_vec())).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn elf32_core() {
        let mut notes = Vec::new();
        push_note(&mut notes, b"VMCOREINFO", 0, b"PAGESIZE=4096\n");
        let mut f = vec![0u8; 52];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 1; // ELFCLASS32
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_CORE.to_le_bytes());
        f[18..20].copy_from_slice(&EM_386.to_le_bytes());
        f[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
        f[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
        f[44..46].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
        let data_off = 52 + 64;
        let ph = |t: u32, off: u32, paddr: u32, filesz: u32, memsz: u32| {
            let mut p = [0u8; 32];
            for (i, v) in [t, off, 0xc000_0000 + paddr, paddr, filesz, memsz].iter().enumerate() {
                p[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
            }
            p
        };
        f.extend_from_slice(&ph(PT_NOTE, data_off, 0, notes.len() as u32, notes.len() as u32));
        f.extend_from_slice(&ph(PT_LOAD, data_off + notes.len() as u32, 0x2000, 0x1000, 0x2000));
        f.extend_from_slice(&notes);
        f.extend_from_slice(&[9u8; 0x1000]);
        let mut v = ElfVmcore::open(Cursor::new(f)).unwrap();
        assert!(!v.is_elf64());
        assert_eq!(v.machine(), EM_386);
        assert_eq!(v.ram_ranges(), std::slice::from_ref(&(2..4)));
        assert_eq!(v.segments()[0].vaddr, 0xc000_2000);
        let mut buf = vec![0u8; 4096];
        assert_eq!(v.read_page(2, &mut buf).unwrap(), PageState::Present);
        assert!(buf.iter().all(|&b| b == 9));
        assert_eq!(v.read_page(3, &mut buf).unwrap(), PageState::ZeroFilled);
        assert_eq!(v.vmcoreinfo().unwrap(), b"PAGESIZE=4096\n");
    }

    #[test]
    fn garbage_fields() {
        let f = sample();
        for (off, val) in [(4usize, 9u8), (5, 7), (16, 2), (54, 0), (56, 0xff), (57, 0xff), (100, 0xff), (103, 0xff)] {
            let mut g = f.clone();
            g[off] = val;
            let _ = ElfVmcore::open(Cursor::new(g)); // must not panic
        }
        let mut g = f.clone();
        g[4] = 9;
        assert!(ElfVmcore::open(Cursor::new(g)).is_err());
    }
}
