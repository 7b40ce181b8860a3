//! Reading the crashed kernel's virtual memory: x86_64 page tables walked
//! from `init_top_pgt`, 4- and 5-level, with the kernel-text shortcut.

use crate::vmcoreinfo::Vmcoreinfo;
use crate::{Error, Result};

/// Physical memory of a dump. Implemented by the dump readers (ELF,
/// kdump-compressed, …) and by in-memory images in tests.
pub trait PhysRead {
    /// Fills `buf` from physical address `paddr`; the range may span pages.
    /// A page that is not in the dump is [`Error::NotInDump`].
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<()>;
}

/// Where the kernel image is mapped on x86_64 (`__START_KERNEL_map`).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
const PAGE_SIZE: u64 = 4096;
const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDRESS_BITS: u64 = 0x000f_ffff_ffff_f000;

/// What address translation needs from VMCOREINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X86_64Layout {
    /// Physical address the kernel text was loaded at, minus its link address (`NUMBER(phys_base)`).
    pub phys_base: u64,
    /// Virtual address of the top-level page table (`SYMBOL(init_top_pgt)`).
    pub top_pgt: u64,
    /// 5-level paging (`NUMBER(pgtable_l5_enabled)`).
    pub five_level: bool,
    /// Memory-encryption bit to strip from entries (`NUMBER(sme_mask)`).
    pub sme_mask: u64,
    /// Size of the kernel-text mapping (`NUMBER(KERNEL_IMAGE_SIZE)`, 1 GiB by default).
    pub kernel_image_size: u64,
}

impl X86_64Layout {
    /// Reads the layout from VMCOREINFO. `init_top_pgt` falls back to the
    /// pre-4.13 name `init_level4_pgt`; optional keys default as the kernel does.
    pub fn from_vmcoreinfo(info: &Vmcoreinfo) -> Result<Self> {
        let top_pgt = info.symbol("init_top_pgt").or_else(|_| info.symbol("init_level4_pgt"))?;
        let phys_base = info.number("phys_base")? as u64;
        Ok(Self {
            phys_base,
            top_pgt,
            five_level: info.number("pgtable_l5_enabled").unwrap_or(0) == 1,
            sme_mask: info.number("sme_mask").unwrap_or(0) as u64,
            kernel_image_size: info.number("KERNEL_IMAGE_SIZE").map_or(1 << 30, |v| v as u64),
        })
    }

    /// The physical address of a kernel-text (or kernel data/bss) address, if it is one.
    /// `phys_base` is negative under KASLR when the kernel sits below its link address,
    /// hence the wrapping arithmetic.
    pub fn text_to_phys(&self, vaddr: u64) -> Option<u64> {
        (vaddr >= START_KERNEL_MAP && vaddr - START_KERNEL_MAP < self.kernel_image_size)
            .then(|| (vaddr - START_KERNEL_MAP).wrapping_add(self.phys_base))
    }
}

/// The crashed kernel's virtual memory over a dump's physical memory.
#[derive(Debug)]
pub struct KernelMemory<P> {
    phys: P,
    layout: X86_64Layout,
    /// Last translated mapping (virtual base, physical base, size: 4 KiB, 2 MiB or 1 GiB):
    /// reads are mostly sequential, and vmemmap and the direct map use large pages.
    last: Option<(u64, u64, u64)>,
}

impl<P: PhysRead> KernelMemory<P> {
    /// Wraps physical memory with a translation layout.
    pub fn new(phys: P, layout: X86_64Layout) -> Self {
        Self { phys, layout, last: None }
    }

    /// The layout in use.
    pub fn layout(&self) -> &X86_64Layout {
        &self.layout
    }

    /// The physical memory underneath.
    pub fn phys(&mut self) -> &mut P {
        &mut self.phys
    }

    /// Translates a kernel virtual address by walking the page tables.
    pub fn translate(&mut self, vaddr: u64) -> Result<u64> {
        if let Some((v, p, size)) = self.last
            && vaddr.wrapping_sub(v) < size
        {
            return Ok(p + (vaddr - v));
        }
        let (paddr, size) = self.walk(vaddr)?;
        let offset = vaddr & (size - 1);
        self.last = Some((vaddr - offset, paddr - offset, size));
        Ok(paddr)
    }

    /// The physical address and the size of the mapping that holds it.
    fn walk(&mut self, vaddr: u64) -> Result<(u64, u64)> {
        let top = self.layout.text_to_phys(self.layout.top_pgt).ok_or_else(|| {
            Error::Corrupt(format!("init_top_pgt {:#x} is outside the kernel image", self.layout.top_pgt))
        })?;
        let shifts: &[u32] = if self.layout.five_level { &[48, 39, 30, 21, 12] } else { &[39, 30, 21, 12] };
        let mask = ADDRESS_BITS & !self.layout.sme_mask;
        let mut table = top;
        for &shift in shifts {
            let index = (vaddr >> shift) & 0x1ff;
            let mut raw = [0u8; 8];
            self.phys.read_phys(table + index * 8, &mut raw)?;
            let entry = u64::from_le_bytes(raw);
            if entry & PRESENT == 0 {
                return Err(Error::NotMapped(vaddr));
            }
            let size = 1u64 << shift;
            if shift == 12 || ((shift == 21 || shift == 30) && entry & PAGE_SIZE_BIT != 0) {
                return Ok(((entry & mask & !(size - 1)) + (vaddr & (size - 1)), size));
            }
            table = entry & mask;
        }
        unreachable!("the last level always returns")
    }

    /// The physical address of kernel virtual address `vaddr`: the kernel image directly
    /// (`phys_base`), anything else through the page tables.
    pub fn phys_addr(&mut self, vaddr: u64) -> Result<u64> {
        match self.layout.text_to_phys(vaddr) {
            Some(p) => Ok(p),
            None => self.translate(vaddr),
        }
    }

    /// Reads `buf.len()` bytes at kernel virtual address `vaddr`.
    pub fn read(&mut self, vaddr: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let addr = vaddr.wrapping_add(done as u64);
            let in_page = crate::to_usize(PAGE_SIZE - (addr & (PAGE_SIZE - 1)));
            let n = in_page.min(buf.len() - done);
            let paddr = self.phys_addr(addr)?;
            self.phys.read_phys(paddr, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&mut self, vaddr: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(vaddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian u32.
    pub fn read_u32(&mut self, vaddr: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(vaddr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian u16.
    pub fn read_u16(&mut self, vaddr: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read(vaddr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads `len` bytes into a new vector, refusing sizes over `limit`
    /// (lengths come from the dump and are not trusted).
    pub fn read_vec(&mut self, vaddr: u64, len: u64, limit: u64, what: &str) -> Result<Vec<u8>> {
        if len > limit {
            return Err(Error::Corrupt(format!("{what} claims {len} bytes, more than the {limit} allowed")));
        }
        if len > 0 {
            // Probe the last byte before allocating: a bogus length fails fast.
            self.read(vaddr.wrapping_add(len - 1), &mut [0u8])?;
        }
        let mut v = vec![0u8; crate::to_usize(len)];
        self.read(vaddr, &mut v)?;
        Ok(v)
    }
}

/// A run of kernel virtual memory mapped onto contiguous physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address (page aligned).
    pub vaddr: u64,
    /// Physical address of `vaddr`.
    pub paddr: u64,
    /// Length in bytes (a multiple of 4 KiB).
    pub len: u64,
}

/// What [`KernelMemory::kernel_mappings`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mappings {
    /// Runs in virtual address order, merged where both addresses continue.
    pub runs: Vec<Mapping>,
    /// Page-table pages that could not be read (their part of the address space is left out).
    pub unreadable_tables: u64,
}

/// Page-table pages one walk reads at most: 1 Mi tables is 4 GiB of page tables, more than
/// any real kernel half has; a corrupt dump must not make the walk endless.
const MAX_TABLES: u64 = 1 << 20;

impl<P: PhysRead> KernelMemory<P> {
    /// Every present mapping of the kernel half of the address space (the upper half: text,
    /// modules, vmalloc and vmap, vmemmap, per-CPU, fixmap, cpu_entry_area, and the direct
    /// map), walked from `init_top_pgt`. Virtual ranges in `skip` (start, end) are not
    /// descended into (callers skip what they already describe, such as the direct map).
    /// At most `limit` runs are returned; more is an error, as is a table tree too big to be real.
    pub fn kernel_mappings(&mut self, skip: &[(u64, u64)], limit: usize) -> Result<Mappings> {
        let top = self.layout.text_to_phys(self.layout.top_pgt).ok_or_else(|| {
            Error::Corrupt(format!("init_top_pgt {:#x} is outside the kernel image", self.layout.top_pgt))
        })?;
        let levels: &[u32] = if self.layout.five_level { &[48, 39, 30, 21, 12] } else { &[39, 30, 21, 12] };
        let mut walk =
            Walk { found: Mappings::default(), skip, limit, tables: 0, mask: ADDRESS_BITS & !self.layout.sme_mask };
        // The kernel half is the upper 256 entries of the top table; addresses are sign-extended.
        let top_shift = levels[0];
        let canonical_bits = top_shift + 9;
        for index in 256..512u64 {
            let base = sign_extend(index << top_shift, canonical_bits);
            walk.table(&mut self.phys, top, index, levels, base)?;
        }
        Ok(walk.found)
    }
}

fn sign_extend(addr: u64, bits: u32) -> u64 {
    let shift = 64 - bits;
    (((addr << shift) as i64) >> shift) as u64
}

struct Walk<'a> {
    found: Mappings,
    skip: &'a [(u64, u64)],
    limit: usize,
    tables: u64,
    mask: u64,
}

impl Walk<'_> {
    /// Visits entry `only` of the table at `table` (or all 512 when `only` is 512 or more),
    /// whose first entry maps `base`.
    fn table(&mut self, phys: &mut impl PhysRead, table: u64, only: u64, levels: &[u32], base: u64) -> Result<()> {
        let shift = levels[0];
        self.tables += 1;
        if self.tables > MAX_TABLES {
            return Err(Error::Corrupt(format!("the kernel page tables have more than {MAX_TABLES} tables")));
        }
        let mut raw = vec![0u8; crate::to_usize(PAGE_SIZE)];
        if phys.read_phys(table, &mut raw).is_err() {
            self.found.unreadable_tables += 1;
            return Ok(());
        }
        let range = if only < 512 { only..only + 1 } else { 0..512 };
        for index in range {
            let i = crate::to_usize(index * 8);
            let entry = u64::from_le_bytes(raw[i..i + 8].try_into().expect("8 bytes"));
            if entry & PRESENT == 0 {
                continue;
            }
            let size = 1u64 << shift;
            // Entry `index` maps base + (index - first) * size; `base` is already at `only`.
            let vaddr = if only < 512 { base } else { base.wrapping_add(index * size) };
            let end = vaddr.wrapping_add(size);
            if self.skip.iter().any(|&(s, e)| vaddr >= s && end.wrapping_sub(1) < e) {
                continue;
            }
            let leaf = shift == 12 || ((shift == 21 || shift == 30) && entry & PAGE_SIZE_BIT != 0);
            if leaf {
                self.push(Mapping { vaddr, paddr: entry & self.mask & !(size - 1), len: size })?;
            } else if levels.len() > 1 {
                self.table(phys, entry & self.mask, 512, &levels[1..], vaddr)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, m: Mapping) -> Result<()> {
        // A page partly in a skipped range stays: only whole entries inside one are skipped.
        if let Some(last) = self.found.runs.last_mut()
            && last.vaddr.wrapping_add(last.len) == m.vaddr
            && last.paddr.wrapping_add(last.len) == m.paddr
        {
            last.len += m.len;
            return Ok(());
        }
        if self.found.runs.len() >= self.limit {
            return Err(Error::Corrupt(format!("the kernel maps more than {} separate ranges", self.limit)));
        }
        self.found.runs.push(m);
        Ok(())
    }
}

/// A physical memory image in a `Vec`, for tests and small fixtures.
#[derive(Debug, Clone, Default)]
pub struct FlatMemory {
    /// Byte `i` is physical address `base + i`.
    pub bytes: Vec<u8>,
    /// Physical address of `bytes[0]`.
    pub base: u64,
}

impl PhysRead for FlatMemory {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<()> {
        let start = crate::to_usize(paddr.checked_sub(self.base).ok_or(Error::NotInDump(paddr))?);
        let end = start.checked_add(buf.len()).ok_or(Error::NotInDump(paddr))?;
        let src = self.bytes.get(start..end).ok_or(Error::NotInDump(paddr))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
pub(crate) mod tests {
    use super::*;

    /// Builds a 4- or 5-level page table in `mem` mapping `vaddr` → `paddr`
    /// (4 KiB page, or 2 MiB when `large`). Tables are placed from `next_table` upward.
    pub(crate) fn map(
        mem: &mut FlatMemory,
        layout: &X86_64Layout,
        next_table: &mut u64,
        vaddr: u64,
        paddr: u64,
        large: bool,
    ) {
        let shifts: &[u32] = if layout.five_level { &[48, 39, 30, 21, 12] } else { &[39, 30, 21, 12] };
        let mut table = layout.text_to_phys(layout.top_pgt).unwrap();
        for &shift in shifts {
            let slot = (table + ((vaddr >> shift) & 0x1ff) * 8) as usize;
            let last = shift == 12 || (large && shift == 21);
            if last {
                let flags = if shift == 21 { PRESENT | PAGE_SIZE_BIT } else { PRESENT };
                mem.bytes[slot..slot + 8].copy_from_slice(&(paddr | flags).to_le_bytes());
                return;
            }
            let existing = u64::from_le_bytes(mem.bytes[slot..slot + 8].try_into().unwrap());
            table = if existing & PRESENT != 0 {
                existing & ADDRESS_BITS
            } else {
                let t = *next_table;
                *next_table += 4096;
                mem.bytes[slot..slot + 8].copy_from_slice(&(t | PRESENT).to_le_bytes());
                t
            };
        }
    }

    pub(crate) fn layout(five_level: bool) -> X86_64Layout {
        // The top table sits at physical 0x1000 (text address START_KERNEL_MAP + 0x1000, phys_base 0).
        X86_64Layout {
            phys_base: 0,
            top_pgt: START_KERNEL_MAP + 0x1000,
            five_level,
            sme_mask: 0,
            kernel_image_size: 1 << 30,
        }
    }

    #[test]
    fn lists_the_kernel_half_merged_skipping_what_callers_describe() {
        for five in [false, true] {
            let mut mem = FlatMemory { bytes: vec![0; 8 << 20], base: 0 };
            let l = layout(five);
            let mut next = 0x10_000;
            let vmalloc = if five { 0xffa0_0000_0000_0000u64 } else { 0xffff_c900_0000_0000u64 };
            let direct = if five { 0xff11_0000_0000_0000u64 } else { 0xffff_8880_0000_0000u64 };
            // Two pages contiguous in both spaces, then one elsewhere, a 2 MiB page, a user page.
            map(&mut mem, &l, &mut next, vmalloc, 0x40_0000, false);
            map(&mut mem, &l, &mut next, vmalloc + 0x1000, 0x40_1000, false);
            map(&mut mem, &l, &mut next, vmalloc + 0x2000, 0x50_0000, false);
            map(&mut mem, &l, &mut next, START_KERNEL_MAP + 0x20_0000, 0x60_0000, true);
            map(&mut mem, &l, &mut next, direct, 0x20_0000, true);
            map(&mut mem, &l, &mut next, 0x40_0000, 0x70_0000, false);
            let mut km = KernelMemory::new(mem.clone(), l);
            let all = km.kernel_mappings(&[], 100).unwrap();
            let runs = |r: &[Mapping]| r.iter().map(|m| (m.vaddr, m.paddr, m.len)).collect::<Vec<_>>();
            assert_eq!(
                runs(&all.runs),
                vec![
                    (direct, 0x20_0000, 0x20_0000),
                    (vmalloc, 0x40_0000, 0x2000),
                    (vmalloc + 0x2000, 0x50_0000, 0x1000),
                    (START_KERNEL_MAP + 0x20_0000, 0x60_0000, 0x20_0000),
                ],
                "five-level {five}"
            );
            let some = km.kernel_mappings(&[(direct, direct + (1 << 30))], 100).unwrap();
            assert_eq!(some.runs.len(), 3);
            assert!(km.kernel_mappings(&[], 2).is_err(), "the limit holds");
            // A table that points outside memory is counted, not fatal.
            let slot = (0x1000 + 511 * 8) as usize;
            mem.bytes[slot..slot + 8].copy_from_slice(&(0x7fff_f000u64 | PRESENT).to_le_bytes());
            let broken = KernelMemory::new(mem, l).kernel_mappings(&[], 100).unwrap();
            assert_eq!(broken.unreadable_tables, 1);
        }
    }

    #[test]
    fn walks_4_and_5_level_tables_with_small_and_large_pages() {
        for five in [false, true] {
            let mut mem = FlatMemory { bytes: vec![0; 8 << 20], base: 0 };
            let l = layout(five);
            let mut next = 0x10_000;
            let direct = 0xff11_0000_0000_0000u64;
            map(&mut mem, &l, &mut next, direct + 0x5000, 0x40_0000, false);
            map(&mut mem, &l, &mut next, direct + 0x20_0000, 0x60_0000, true);
            mem.bytes[0x40_0123] = 0xab;
            mem.bytes[0x61_2345] = 0xcd;
            let mut km = KernelMemory::new(mem, l);
            assert_eq!(km.translate(direct + 0x5123).unwrap(), 0x40_0123);
            assert_eq!(km.translate(direct + 0x21_2345).unwrap(), 0x61_2345);
            let mut b = [0u8; 1];
            km.read(direct + 0x21_2345, &mut b).unwrap();
            assert_eq!(b[0], 0xcd);
            assert_eq!(km.translate(direct + 0x9000), Err(Error::NotMapped(direct + 0x9000)));
            // Kernel text needs no walk.
            assert_eq!(km.layout().text_to_phys(START_KERNEL_MAP + 0x1234), Some(0x1234));
        }
    }

    #[test]
    fn negative_phys_base_as_under_kaslr() {
        // Debian 6.1 under QEMU: NUMBER(phys_base)=-245366784.
        let info = Vmcoreinfo::parse(b"SYMBOL(init_top_pgt)=ffffffff93c10000\nNUMBER(phys_base)=-245366784\n");
        let l = X86_64Layout::from_vmcoreinfo(&info).unwrap();
        assert_eq!(l.text_to_phys(0xffff_ffff_93c1_0000), Some(0x13c1_0000u64.wrapping_sub(245_366_784)));
    }

    #[test]
    fn reads_across_pages_and_refuses_huge_lengths() {
        let mut mem = FlatMemory { bytes: vec![0; 1 << 20], base: 0 };
        mem.bytes[0x2ffe..0x3002].copy_from_slice(&[1, 2, 3, 4]);
        let mut km = KernelMemory::new(mem, layout(false));
        assert_eq!(km.read_u32(START_KERNEL_MAP + 0x2ffe).unwrap(), 0x0403_0201);
        assert!(km.read_vec(START_KERNEL_MAP, 1 << 40, 1 << 30, "x").is_err());
        assert_eq!(km.read_u64(START_KERNEL_MAP + (2 << 20)), Err(Error::NotInDump(2 << 20)));
    }
}
