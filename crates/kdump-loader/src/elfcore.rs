//! ELF core headers for the capture kernel (`elfcorehdr=`), as the 2005 kdump paper and
//! kexec-tools build them: one `PT_NOTE` per CPU crash-notes buffer, one for VMCOREINFO, a
//! `PT_LOAD` for the kernel text at its virtual address, and one `PT_LOAD` per RAM chunk of the
//! crashed kernel with `p_offset` = the physical address the bytes live at.

use serde::Serialize;

use kdump_elf::{AsBytes, ELF32_EHDR_SIZE, ELF32_PHDR_SIZE, ELF64_EHDR_SIZE, ELF64_PHDR_SIZE};
pub use kdump_elf::{EM_386, EM_X86_64, PT_LOAD, PT_NOTE};
use kdump_elf::{Elf32Ehdr, Elf32Phdr, Elf64Ehdr, Elf64Phdr};

use crate::hex::Hex;

/// One program header, before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Phdr {
    /// `PT_NOTE` or `PT_LOAD`.
    #[serde(rename = "type", serialize_with = "type_name")]
    pub p_type: u32,
    /// Where the capture kernel reads the bytes (physical).
    pub offset: Hex,
    /// Virtual address in the crashed kernel (0 for notes).
    pub vaddr: Hex,
    /// Physical address in the crashed kernel.
    pub paddr: Hex,
    /// Size (`p_filesz` = `p_memsz`).
    pub size: Hex,
}

fn type_name<S: serde::Serializer>(t: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match *t {
        PT_LOAD => "PT_LOAD",
        PT_NOTE => "PT_NOTE",
        _ => "other",
    })
}

/// ELF class of the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ElfClass {
    /// ELF64 (the default).
    Elf64,
    /// ELF32 (`--elf32-core-headers`): every address and size must fit in 32 bits.
    Elf32,
}

impl ElfClass {
    /// Bytes of the ELF header plus `n` program headers.
    pub fn size(self, n: usize) -> usize {
        match self {
            ElfClass::Elf64 => ELF64_EHDR_SIZE + ELF64_PHDR_SIZE * n,
            ElfClass::Elf32 => ELF32_EHDR_SIZE + ELF32_PHDR_SIZE * n,
        }
    }
}

/// A value that does not fit an ELF32 field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ELF32 core headers cannot describe {what} {value:#x} (above 4 GiB): drop --elf32-core-headers to use ELF64")]
pub struct Elf32Overflow {
    /// Which field.
    pub what: &'static str,
    /// The value.
    pub value: u64,
}

/// Encodes an ET_CORE file header and its program headers (no sections). ELF32 headers are
/// for `EM_386`, as kexec-tools writes them, and carry only physical addresses.
pub fn encode(class: ElfClass, phdrs: &[Phdr]) -> Result<Vec<u8>, Elf32Overflow> {
    let mut b = Vec::with_capacity(class.size(phdrs.len()));
    let phnum = u16::try_from(phdrs.len()).unwrap_or(u16::MAX);
    match class {
        ElfClass::Elf64 => {
            b.extend_from_slice(Elf64Ehdr::core(EM_X86_64, phnum, 0).as_bytes());
            for p in phdrs {
                let h = Elf64Phdr::core(p.p_type, p.offset.0, p.vaddr.0, p.paddr.0, p.size.0, p.size.0);
                b.extend_from_slice(h.as_bytes());
            }
        }
        ElfClass::Elf32 => {
            let narrow = |what, value: u64| u32::try_from(value).map_err(|_| Elf32Overflow { what, value });
            b.extend_from_slice(Elf32Ehdr::core(EM_386, phnum, 0).as_bytes());
            for p in phdrs {
                let offset = narrow("offset", p.offset.0)?;
                let paddr = narrow("physical address", p.paddr.0)?;
                narrow("end address", p.paddr.0.saturating_add(p.size.0.saturating_sub(1)))?;
                let size = narrow("size", p.size.0)?;
                // 64-bit virtual addresses do not fit: ELF32 headers carry only physical ones.
                b.extend_from_slice(Elf32Phdr::core(p.p_type, offset, 0, paddr, size, size).as_bytes());
            }
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ph(t: u32, offset: u64, vaddr: u64, paddr: u64, size: u64) -> Phdr {
        Phdr { p_type: t, offset: Hex(offset), vaddr: Hex(vaddr), paddr: Hex(paddr), size: Hex(size) }
    }

    #[test]
    fn elf64_layout() {
        let b = encode(ElfClass::Elf64, &[ph(PT_NOTE, 0x1000, 0, 0x1000, 368), ph(PT_LOAD, 0x2000, 0xff, 0x3000, 9)])
            .unwrap();
        assert_eq!(b.len(), 64 + 2 * 56);
        assert_eq!(&b[..7], b"\x7fELF\x02\x01\x01");
        assert_eq!(u16::from_le_bytes([b[16], b[17]]), 4);
        assert_eq!(u16::from_le_bytes([b[18], b[19]]), 62);
        assert_eq!(u16::from_le_bytes([b[56], b[57]]), 2);
        let h = 64 + 56;
        assert_eq!(u32::from_le_bytes(b[h..h + 4].try_into().unwrap()), PT_LOAD);
        assert_eq!(u64::from_le_bytes(b[h + 8..h + 16].try_into().unwrap()), 0x2000);
        assert_eq!(u64::from_le_bytes(b[h + 16..h + 24].try_into().unwrap()), 0xff);
        assert_eq!(u64::from_le_bytes(b[h + 24..h + 32].try_into().unwrap()), 0x3000);
        assert_eq!(u64::from_le_bytes(b[h + 40..h + 48].try_into().unwrap()), 9);
    }

    #[test]
    fn elf32_layout_and_overflow() {
        let b = encode(ElfClass::Elf32, &[ph(PT_LOAD, 0x2000, 0xffff_8880_0000_3000, 0x3000, 9)]).unwrap();
        assert_eq!(b.len(), 52 + 32);
        assert_eq!(b[4], 1);
        assert_eq!(u32::from_le_bytes(b[52 + 12..52 + 16].try_into().unwrap()), 0x3000);
        let err = encode(ElfClass::Elf32, &[ph(PT_LOAD, 0x1_0000_0000, 0, 0x1_0000_0000, 9)]).unwrap_err();
        assert!(err.to_string().contains("ELF64"), "{err}");
    }
}
