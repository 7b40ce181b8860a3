//! The ELF layouts kdump reads and writes, declared once: the file header, program headers and
//! note header of ELF64 and ELF32, little-endian (x86), as `#[repr(C)]` structs of unaligned
//! little-endian fields whose sizes and offsets are checked at compile time. The crash
//! kernel's ELF core headers (`kexec -c`), the dumps we write (`-E`), the vmcores and
//! `/proc/kcore` we read and the vmlinux images we load all use these.
#![no_std]
#![forbid(unsafe_code)]
#![deny(clippy::cast_possible_truncation)]

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `\x7fELF`.
pub const ELFMAG: [u8; 4] = *b"\x7fELF";
/// Index of the class byte in `e_ident`.
pub const EI_CLASS: usize = 4;
/// Index of the byte-order byte in `e_ident`.
pub const EI_DATA: usize = 5;
/// `e_ident[EI_CLASS]`: 32-bit.
pub const ELFCLASS32: u8 = 1;
/// `e_ident[EI_CLASS]`: 64-bit.
pub const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]`: little-endian.
pub const ELFDATA2LSB: u8 = 1;
/// `e_ident[EI_DATA]`: big-endian.
pub const ELFDATA2MSB: u8 = 2;
/// `e_version` and `e_ident[EI_VERSION]`.
pub const EV_CURRENT: u8 = 1;
/// An executable (a vmlinux).
pub const ET_EXEC: u16 = 2;
/// A core file (a vmcore, /proc/kcore, the ELF core headers).
pub const ET_CORE: u16 = 4;
/// Intel 80386.
pub const EM_386: u16 = 3;
/// AMD x86-64.
pub const EM_X86_64: u16 = 62;
/// A loadable segment.
pub const PT_LOAD: u32 = 1;
/// A segment of notes.
pub const PT_NOTE: u32 = 4;
/// Segment flags: readable, writable, executable (what vmcores carry).
pub const PF_RWX: u32 = 7;
/// The note of a CPU's registers at the crash.
pub const NT_PRSTATUS: u32 = 1;

/// `Elf64_Ehdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)] // the fields are the ELF specification's
pub struct Elf64Ehdr {
    pub e_ident: [u8; 16],
    pub e_type: U16,
    pub e_machine: U16,
    pub e_version: U32,
    pub e_entry: U64,
    pub e_phoff: U64,
    pub e_shoff: U64,
    pub e_flags: U32,
    pub e_ehsize: U16,
    pub e_phentsize: U16,
    pub e_phnum: U16,
    pub e_shentsize: U16,
    pub e_shnum: U16,
    pub e_shstrndx: U16,
}

/// `Elf64_Phdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)]
pub struct Elf64Phdr {
    pub p_type: U32,
    pub p_flags: U32,
    pub p_offset: U64,
    pub p_vaddr: U64,
    pub p_paddr: U64,
    pub p_filesz: U64,
    pub p_memsz: U64,
    pub p_align: U64,
}

/// `Elf64_Shdr`: only section header 0 is written, to hold a program header count of
/// [`PN_XNUM`] or more in `sh_info` (ELF extended numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)]
pub struct Elf64Shdr {
    pub sh_name: U32,
    pub sh_type: U32,
    pub sh_flags: U64,
    pub sh_addr: U64,
    pub sh_offset: U64,
    pub sh_size: U64,
    pub sh_link: U32,
    pub sh_info: U32,
    pub sh_addralign: U64,
    pub sh_entsize: U64,
}

/// `e_phnum` saying the count is in section header 0's `sh_info`.
pub const PN_XNUM: u16 = 0xffff;

/// `Elf32_Ehdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)]
pub struct Elf32Ehdr {
    pub e_ident: [u8; 16],
    pub e_type: U16,
    pub e_machine: U16,
    pub e_version: U32,
    pub e_entry: U32,
    pub e_phoff: U32,
    pub e_shoff: U32,
    pub e_flags: U32,
    pub e_ehsize: U16,
    pub e_phentsize: U16,
    pub e_phnum: U16,
    pub e_shentsize: U16,
    pub e_shnum: U16,
    pub e_shstrndx: U16,
}

/// `Elf32_Phdr` (its field order differs from ELF64's: flags come late).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)]
pub struct Elf32Phdr {
    pub p_type: U32,
    pub p_offset: U32,
    pub p_vaddr: U32,
    pub p_paddr: U32,
    pub p_filesz: U32,
    pub p_memsz: U32,
    pub p_flags: U32,
    pub p_align: U32,
}

/// `Elf64_Nhdr` (the same in ELF32): followed by the name and the descriptor, each padded to 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)]
pub struct Nhdr {
    pub n_namesz: U32,
    pub n_descsz: U32,
    pub n_type: U32,
}

// The sizes and a few offsets the specification fixes: a wrong field type fails the build.
const _: () = {
    assert!(size_of::<Elf64Ehdr>() == 64);
    assert!(offset_of!(Elf64Ehdr, e_phoff) == 32);
    assert!(offset_of!(Elf64Ehdr, e_flags) == 48);
    assert!(offset_of!(Elf64Ehdr, e_phnum) == 56);
    assert!(size_of::<Elf64Phdr>() == 56);
    assert!(offset_of!(Elf64Phdr, p_paddr) == 24);
    assert!(offset_of!(Elf64Phdr, p_memsz) == 40);
    assert!(size_of::<Elf32Ehdr>() == 52);
    assert!(offset_of!(Elf32Ehdr, e_phnum) == 44);
    assert!(size_of::<Elf32Phdr>() == 32);
    assert!(size_of::<Elf64Shdr>() == 64);
    assert!(offset_of!(Elf64Shdr, sh_info) == 44);
    assert!(offset_of!(Elf32Phdr, p_flags) == 24);
    assert!(size_of::<Nhdr>() == 12);
};

/// Bytes of an ELF64 file header.
pub const ELF64_EHDR_SIZE: usize = size_of::<Elf64Ehdr>();
/// Bytes of an ELF64 program header.
pub const ELF64_PHDR_SIZE: usize = size_of::<Elf64Phdr>();
/// Bytes of an ELF64 section header.
pub const ELF64_SHDR_SIZE: usize = size_of::<Elf64Shdr>();
/// Bytes of an ELF32 file header.
pub const ELF32_EHDR_SIZE: usize = size_of::<Elf32Ehdr>();
/// Bytes of an ELF32 program header.
pub const ELF32_PHDR_SIZE: usize = size_of::<Elf32Phdr>();

// The same sizes in the header fields' own types (`e_ehsize`, `e_phentsize`, `e_phoff`).
const EHSIZE64: u16 = 64;
const PHENTSIZE64: u16 = 56;
const SHENTSIZE64: u16 = 64;
const EHSIZE32: u16 = 52;
const PHENTSIZE32: u16 = 32;
const _: () = assert!(
    EHSIZE64 as usize == ELF64_EHDR_SIZE
        && PHENTSIZE64 as usize == ELF64_PHDR_SIZE
        && SHENTSIZE64 as usize == ELF64_SHDR_SIZE
        && EHSIZE32 as usize == ELF32_EHDR_SIZE
        && PHENTSIZE32 as usize == ELF32_PHDR_SIZE
);

fn ident(class: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&ELFMAG);
    id[EI_CLASS] = class;
    id[EI_DATA] = ELFDATA2LSB;
    id[6] = EV_CURRENT;
    id
}

impl Elf64Ehdr {
    /// The header of a little-endian ELF64 core file for `machine` with `phnum` program
    /// headers right after it and no sections.
    pub fn core(machine: u16, phnum: u16, flags: u32) -> Self {
        Self {
            e_ident: ident(ELFCLASS64),
            e_type: ET_CORE.into(),
            e_machine: machine.into(),
            e_version: u32::from(EV_CURRENT).into(),
            e_entry: 0.into(),
            e_phoff: u64::from(EHSIZE64).into(),
            e_shoff: 0.into(),
            e_flags: flags.into(),
            e_ehsize: EHSIZE64.into(),
            e_phentsize: PHENTSIZE64.into(),
            e_phnum: phnum.into(),
            e_shentsize: 0.into(),
            e_shnum: 0.into(),
            e_shstrndx: 0.into(),
        }
    }
}

impl Elf64Ehdr {
    /// [`Elf64Ehdr::core`] for any number of program headers: from [`PN_XNUM`] on, `e_phnum`
    /// is `PN_XNUM` and the count goes in the section header at `shoff` ([`Elf64Shdr::extended_count`]).
    pub fn core_any(machine: u16, phnum: u32, flags: u32, shoff: u64) -> Self {
        match u16::try_from(phnum) {
            Ok(n) if n < PN_XNUM => Self::core(machine, n, flags),
            _ => Self {
                e_shoff: shoff.into(),
                e_shentsize: SHENTSIZE64.into(),
                e_shnum: 1.into(),
                ..Self::core(machine, PN_XNUM, flags)
            },
        }
    }
}

impl Elf64Shdr {
    /// Section header 0 of a file whose program header count is `phnum` (extended numbering).
    pub fn extended_count(phnum: u32) -> Self {
        Self {
            sh_name: 0.into(),
            sh_type: 0.into(),
            sh_flags: 0.into(),
            sh_addr: 0.into(),
            sh_offset: 0.into(),
            sh_size: 0.into(),
            sh_link: 0.into(),
            sh_info: phnum.into(),
            sh_addralign: 0.into(),
            sh_entsize: 0.into(),
        }
    }
}

impl Elf32Ehdr {
    /// The header of a little-endian ELF32 core file for `machine` with `phnum` program
    /// headers right after it and no sections.
    pub fn core(machine: u16, phnum: u16, flags: u32) -> Self {
        Self {
            e_ident: ident(ELFCLASS32),
            e_type: ET_CORE.into(),
            e_machine: machine.into(),
            e_version: u32::from(EV_CURRENT).into(),
            e_entry: 0.into(),
            e_phoff: u32::from(EHSIZE32).into(),
            e_shoff: 0.into(),
            e_flags: flags.into(),
            e_ehsize: EHSIZE32.into(),
            e_phentsize: PHENTSIZE32.into(),
            e_phnum: phnum.into(),
            e_shentsize: 0.into(),
            e_shnum: 0.into(),
            e_shstrndx: 0.into(),
        }
    }
}

impl Elf64Phdr {
    /// A segment of a core file (flags RWX, no alignment), as vmcores carry them.
    pub fn core(p_type: u32, offset: u64, vaddr: u64, paddr: u64, filesz: u64, memsz: u64) -> Self {
        Self {
            p_type: p_type.into(),
            p_flags: PF_RWX.into(),
            p_offset: offset.into(),
            p_vaddr: vaddr.into(),
            p_paddr: paddr.into(),
            p_filesz: filesz.into(),
            p_memsz: memsz.into(),
            p_align: 0.into(),
        }
    }
}

impl Elf32Phdr {
    /// A segment of a core file (flags RWX, no alignment).
    pub fn core(p_type: u32, offset: u32, vaddr: u32, paddr: u32, filesz: u32, memsz: u32) -> Self {
        Self {
            p_type: p_type.into(),
            p_offset: offset.into(),
            p_vaddr: vaddr.into(),
            p_paddr: paddr.into(),
            p_filesz: filesz.into(),
            p_memsz: memsz.into(),
            p_flags: PF_RWX.into(),
            p_align: 0.into(),
        }
    }
}

pub use zerocopy::{FromBytes as ReadBytes, IntoBytes as AsBytes};
