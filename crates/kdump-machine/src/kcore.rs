//! The program headers of `/proc/kcore`: where the running kernel maps its text and the
//! direct map (both moved by KASLR), read from the ELF header the kernel builds for kcore.

use serde::{Deserialize, Serialize};

use kdump_elf::{ELF64_PHDR_SIZE, Elf64Ehdr, Elf64Phdr, PT_LOAD, ReadBytes};

use crate::ParseError;
use crate::machine::PhysRange;

/// Start of the kernel text mapping (`__START_KERNEL_map`).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// End of the kernel image mapping (`MODULES_VADDR` = `__START_KERNEL_map` + 1 GiB).
pub const KERNEL_IMAGE_END: u64 = 0xffff_ffff_c000_0000;
/// Lowest kernel address with 4-level paging: a direct map below it means 5-level paging.
pub const FOUR_LEVEL_KERNEL_START: u64 = 0xffff_8000_0000_0000;

/// One `PT_LOAD` of `/proc/kcore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KcoreLoad {
    /// File offset in `/proc/kcore`.
    pub offset: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// Physical address; `u64::MAX` for mappings without one (vmalloc, modules, vmemmap).
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The `PT_LOAD` headers of `/proc/kcore`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kcore {
    /// Every `PT_LOAD`, in file order.
    pub loads: Vec<KcoreLoad>,
}

fn bad(expected: &'static str) -> ParseError {
    ParseError::Value { what: "/proc/kcore", expected, text: String::new() }
}

impl Kcore {
    /// Parses the ELF64 header and program headers at the start of `/proc/kcore` (the
    /// first few KiB are enough; headers cut short are an error).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let (ehdr, _) = Elf64Ehdr::read_from_prefix(bytes).map_err(|_| bad("a complete ELF header"))?;
        if ehdr.e_ident[..6] != *b"\x7fELF\x02\x01" {
            return Err(bad("an ELF64 little-endian header"));
        }
        if usize::from(ehdr.e_phentsize.get()) != ELF64_PHDR_SIZE {
            return Err(bad("56-byte program headers"));
        }
        let phoff = usize::try_from(ehdr.e_phoff.get()).map_err(|_| bad("a sane e_phoff"))?;
        let table = bytes.get(phoff..).ok_or(bad("program headers within the bytes read"))?;
        let (phdrs, _) = <[Elf64Phdr]>::ref_from_prefix_with_elems(table, usize::from(ehdr.e_phnum.get()))
            .map_err(|_| bad("program headers within the bytes read"))?;
        let loads = phdrs
            .iter()
            .filter(|p| p.p_type.get() == PT_LOAD)
            .map(|p| KcoreLoad {
                offset: p.p_offset.get(),
                vaddr: p.p_vaddr.get(),
                paddr: p.p_paddr.get(),
                size: p.p_filesz.get(),
            })
            .collect();
        Ok(Self { loads })
    }

    /// The kernel text mapping (`_text` to `_end`): the `PT_LOAD` in the kernel image area,
    /// preferring the one that starts at `kernel_code` (`Kernel code` in /proc/iomem).
    pub fn kernel_text(&self, kernel_code: Option<PhysRange>) -> Option<KcoreLoad> {
        let text = self.loads.iter().filter(|l| (START_KERNEL_MAP..KERNEL_IMAGE_END).contains(&l.vaddr));
        let mut text: Vec<KcoreLoad> = text.copied().collect();
        if let Some(code) = kernel_code
            && let Some(exact) = text.iter().find(|l| l.paddr == code.start)
        {
            return Some(*exact);
        }
        text.sort_by_key(|l| l.vaddr);
        text.into_iter().find(|l| l.paddr != u64::MAX)
    }

    /// The direct-map base (`PAGE_OFFSET`, randomised by KASLR): `vaddr - paddr` of the
    /// lowest direct-map RAM `PT_LOAD`.
    pub fn direct_map_base(&self) -> Option<u64> {
        self.loads
            .iter()
            .filter(|l| l.paddr != u64::MAX && l.vaddr < START_KERNEL_MAP && l.vaddr >= l.paddr)
            .min_by_key(|l| l.paddr)
            .map(|l| l.vaddr - l.paddr)
    }
}

/// Paging levels implied by a direct-map base: 5 when it lies below the 4-level kernel half.
pub fn paging_levels(direct_map_base: u64) -> u8 {
    if direct_map_base < FOUR_LEVEL_KERNEL_START { 5 } else { 4 }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use super::*;

    pub(crate) fn fake_kcore(loads: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(loads.len() as u16 + 1).to_le_bytes());
        let mut note = vec![0u8; 56];
        note[0] = 4;
        b.extend(note);
        for (i, &(vaddr, paddr, size)) in loads.iter().enumerate() {
            let mut h = vec![0u8; 56];
            h[0] = 1;
            h[8..16].copy_from_slice(&(0x1000 * i as u64).to_le_bytes());
            h[16..24].copy_from_slice(&vaddr.to_le_bytes());
            h[24..32].copy_from_slice(&paddr.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            b.extend(h);
        }
        b
    }

    #[test]
    fn finds_text_and_direct_map() {
        let bytes = fake_kcore(&[
            (0xffff_ffff_b360_0000, 0x3360_0000, 0x280_0000),
            (0xffff_ffff_c000_0000, u64::MAX, 0x1000_0000),
            (0xff11_0000_0000_1000, 0x1000, 0x9f000),
            (0xff11_0000_0010_0000, 0x10_0000, 0x3fed_7000),
            (0xffd2_0000_0000_0000, u64::MAX, 0x1000_0000),
        ]);
        let k = Kcore::parse(&bytes).unwrap();
        assert_eq!(k.loads.len(), 5);
        let code = PhysRange { start: 0x3360_0000, end: 0x3440_1ef1 };
        assert_eq!(k.kernel_text(Some(code)).unwrap().vaddr, 0xffff_ffff_b360_0000);
        assert_eq!(k.direct_map_base(), Some(0xff11_0000_0000_0000));
        assert_eq!(paging_levels(0xff11_0000_0000_0000), 5);
        assert_eq!(paging_levels(0xffff_8880_0000_0000), 4);
    }

    #[test]
    fn refuses_garbage_and_cut_headers() {
        assert!(Kcore::parse(b"nope").is_err());
        let bytes = fake_kcore(&[(0xffff_ffff_8100_0000, 0x100_0000, 0x10_0000)]);
        assert!(Kcore::parse(&bytes[..100]).is_err());
        for len in 0..bytes.len() {
            let _ = Kcore::parse(&bytes[..len]);
        }
    }
}
