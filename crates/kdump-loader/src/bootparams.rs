//! The zero page (`struct boot_params`) a bzImage's 64-bit entry point reads through `%rsi`,
//! with the memory map as e820 entries (`SETUP_E820_EXT` setup_data past 128).
//! The layouts are declared in [`crate::bootproto`].

use serde::Serialize;
use zerocopy::IntoBytes;

pub use crate::bootproto::E820_MAX_ENTRIES_ZEROPAGE;
use crate::bootproto::{BootParams, E820Raw, SETUP_HEADER_OFFSET, SetupDataHeader};
use crate::hex::Hex;

/// Size of `struct boot_params`.
pub const BOOT_PARAMS_SIZE: usize = size_of::<BootParams>();
/// `SETUP_E820_EXT` setup_data type.
pub const SETUP_E820_EXT: u32 = 1;
/// Bytes of one e820 entry (`u64 addr, u64 size, u32 type`, packed).
pub const E820_ENTRY_SIZE: usize = size_of::<E820Raw>();
/// Bytes of a setup_data header (`u64 next, u32 type, u32 len`).
pub const SETUP_DATA_HEADER: usize = size_of::<SetupDataHeader>();
/// `type_of_loader` for kexec-tools-like loaders (boot.rst: 0xD = kexec-tools).
pub const LOADER_TYPE_KEXEC: u8 = 0xd0;

/// One e820 entry for the capture kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct E820Entry {
    /// Start.
    pub addr: Hex,
    /// Length.
    pub size: Hex,
    /// e820 type (1 RAM, 2 reserved, 3 ACPI, 4 NVS, 7 PMEM, 12 PRAM).
    #[serde(rename = "type")]
    pub kind: u32,
}

impl E820Entry {
    fn raw(&self) -> E820Raw {
        E820Raw { addr: self.addr.0.into(), size: self.size.0.into(), kind: self.kind.into() }
    }
}

/// What goes into the zero page.
#[derive(Debug, Clone)]
pub struct BootParamsInput<'a> {
    /// The whole bzImage (its setup header is copied).
    pub kernel: &'a [u8],
    /// Physical address of the kernel's protected-mode part.
    pub kernel_addr: u64,
    /// Physical address of this zero page (the segment start).
    pub addr: u64,
    /// Command line (without NUL).
    pub cmdline: &'a str,
    /// Offset of the command line from `addr`.
    pub cmdline_offset: usize,
    /// Offset of the setup_data node from `addr` (used only past 128 e820 entries).
    pub setup_data_offset: usize,
    /// Initrd physical address and size.
    pub initrd: Option<(u64, u64)>,
    /// e820 map, sorted.
    pub e820: &'a [E820Entry],
    /// ACPI RSDP physical address, if known.
    pub acpi_rsdp: Option<u64>,
}

/// End (exclusive) of the setup header in a bzImage: `0x202 + byte at 0x201` (the jump
/// offset), at most the setup code.
pub fn setup_header_end(kernel: &[u8]) -> usize {
    let end = 0x202 + usize::from(kernel.get(0x201).copied().unwrap_or(0));
    end.min(BOOT_PARAMS_SIZE).min(kernel.len())
}

/// Builds the segment: zero page, then the command line, then setup_data if needed.
pub fn build(p: &BootParamsInput<'_>) -> Vec<u8> {
    let (low, ext): (&[E820Entry], &[E820Entry]) = if p.e820.len() > E820_MAX_ENTRIES_ZEROPAGE {
        p.e820.split_at(E820_MAX_ENTRIES_ZEROPAGE)
    } else {
        (p.e820, &[])
    };
    let mut len = p.cmdline_offset + p.cmdline.len() + 1;
    if !ext.is_empty() {
        len = len.max(p.setup_data_offset + SETUP_DATA_HEADER + ext.len() * E820_ENTRY_SIZE);
    }
    let mut bp = BootParams::zeroed();
    // The image's own setup header, as far as its jump says it goes.
    let end = setup_header_end(p.kernel);
    if end > SETUP_HEADER_OFFSET {
        bp.as_mut_bytes()[SETUP_HEADER_OFFSET..end].copy_from_slice(&p.kernel[SETUP_HEADER_OFFSET..end]);
    }
    bp.hdr.type_of_loader = LOADER_TYPE_KEXEC;
    bp.hdr.code32_start = (p.kernel_addr as u32).into();
    let cmdline_addr = p.addr + p.cmdline_offset as u64;
    bp.hdr.cmd_line_ptr = (cmdline_addr as u32).into();
    bp.ext_cmd_line_ptr = ((cmdline_addr >> 32) as u32).into();
    if let Some((addr, size)) = p.initrd {
        bp.hdr.ramdisk_image = (addr as u32).into();
        bp.hdr.ramdisk_size = (size as u32).into();
        bp.ext_ramdisk_image = ((addr >> 32) as u32).into();
        bp.ext_ramdisk_size = ((size >> 32) as u32).into();
    }
    if let Some(rsdp) = p.acpi_rsdp {
        bp.acpi_rsdp_addr = rsdp.into();
    }
    bp.e820_entries = low.len() as u8;
    for (slot, e) in bp.e820_table.iter_mut().zip(low) {
        *slot = e.raw();
    }
    bp.hdr.setup_data = 0.into();
    if !ext.is_empty() {
        bp.hdr.setup_data = (p.addr + p.setup_data_offset as u64).into();
    }
    let mut b = bp.as_bytes().to_vec();
    b.resize(len.max(BOOT_PARAMS_SIZE), 0);
    if !ext.is_empty() {
        let node = p.setup_data_offset;
        let header = SetupDataHeader {
            next: 0.into(),
            kind: SETUP_E820_EXT.into(),
            len: ((ext.len() * E820_ENTRY_SIZE) as u32).into(),
        };
        let mut data = header.as_bytes().to_vec();
        ext.iter().for_each(|e| data.extend_from_slice(e.raw().as_bytes()));
        b[node..node + data.len()].copy_from_slice(&data);
    }
    b[p.cmdline_offset..p.cmdline_offset + p.cmdline.len()].copy_from_slice(p.cmdline.as_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::fake_bzimage;

    fn e(addr: u64) -> E820Entry {
        E820Entry { addr: Hex(addr), size: Hex(0x1000), kind: 1 }
    }

    #[test]
    fn fills_the_zero_page() {
        let mut kernel = fake_bzimage();
        kernel[0x200] = 0xeb;
        kernel[0x201] = 0x6a;
        let e820 = [e(0x1000), e(0x2000)];
        let b = build(&BootParamsInput {
            kernel: &kernel,
            kernel_addr: 0x2400_0000,
            addr: 0x1_2345_6000,
            cmdline: "console=ttyS0",
            cmdline_offset: 4096,
            setup_data_offset: 8192,
            initrd: Some((0x1_1000_0000, 0x20_0000)),
            e820: &e820,
            acpi_rsdp: Some(0xf59d0),
        });
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!(&b[0x202..0x206], b"HdrS");
        assert_eq!(b[0x1ef], 0, "sentinel stays 0 so the kernel keeps our fields");
        assert_eq!(u32_at(0x230), 0x20_0000, "kernel_alignment copied");
        assert_eq!(b[0x210], 0xd0);
        assert_eq!(u32_at(0x228), 0x2345_7000);
        assert_eq!(u32_at(0x0c8), 1);
        assert_eq!(u32_at(0x218), 0x1000_0000);
        assert_eq!(u32_at(0x0c0), 1);
        assert_eq!(b[0x1e8], 2);
        assert_eq!(u32_at(0x2d0 + 20), 0x2000);
        assert_eq!(&b[4096..4096 + 14], b"console=ttyS0\0");
        assert_eq!(u64::from_le_bytes(b[0x70..0x78].try_into().unwrap()), 0xf59d0);
        assert_eq!(u64::from_le_bytes(b[0x250..0x258].try_into().unwrap()), 0);
    }

    #[test]
    fn spills_past_128_entries_into_setup_data() {
        let e820: Vec<E820Entry> = (0..200u64).map(|i| e(0x1000 * (i + 1))).collect();
        let b = build(&BootParamsInput {
            kernel: &fake_bzimage(),
            kernel_addr: 0x100_0000,
            addr: 0x10_0000,
            cmdline: "x",
            cmdline_offset: 4096,
            setup_data_offset: 8192,
            initrd: None,
            e820: &e820,
            acpi_rsdp: None,
        });
        assert_eq!(b[0x1e8], 128);
        assert_eq!(u64::from_le_bytes(b[0x250..0x258].try_into().unwrap()), 0x10_0000 + 8192);
        assert_eq!(u32::from_le_bytes(b[8192 + 8..8192 + 12].try_into().unwrap()), SETUP_E820_EXT);
        assert_eq!(u32::from_le_bytes(b[8192 + 12..8192 + 16].try_into().unwrap()), 72 * 20);
        let first_ext = u64::from_le_bytes(b[8192 + 16..8192 + 24].try_into().unwrap());
        assert_eq!(first_ext, 0x1000 * 129);
        assert_eq!(b.len(), 8192 + 16 + 72 * 20);
    }
}
