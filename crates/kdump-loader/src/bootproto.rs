//! The x86 boot protocol's layouts (Documentation/arch/x86/boot.rst, zero-page.rst), declared
//! once: `struct setup_header` (at 0x1f1 of a bzImage and of the zero page), `struct
//! boot_params` (the zero page, with only the fields kexec fills named), an e820 entry and a
//! `setup_data` header. Little-endian, unaligned fields, so `#[repr(C)]` adds no padding; the
//! offsets the documents give are asserted at compile time.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Where the setup header starts, in a bzImage and in the zero page.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;

/// `struct setup_header` up to protocol 2.15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)] // the fields are boot.rst's
pub struct SetupHeader {
    pub setup_sects: u8,
    pub root_flags: U16,
    pub syssize: U32,
    pub ram_size: U16,
    pub vid_mode: U16,
    pub root_dev: U16,
    pub boot_flag: U16,
    pub jump: U16,
    pub header: [u8; 4],
    pub version: U16,
    pub realmode_swtch: U32,
    pub start_sys_seg: U16,
    pub kernel_version: U16,
    pub type_of_loader: u8,
    pub loadflags: u8,
    pub setup_move_size: U16,
    pub code32_start: U32,
    pub ramdisk_image: U32,
    pub ramdisk_size: U32,
    pub bootsect_kludge: U32,
    pub heap_end_ptr: U16,
    pub ext_loader_ver: u8,
    pub ext_loader_type: u8,
    pub cmd_line_ptr: U32,
    pub initrd_addr_max: U32,
    pub kernel_alignment: U32,
    pub relocatable_kernel: u8,
    pub min_alignment: u8,
    pub xloadflags: U16,
    pub cmdline_size: U32,
    pub hardware_subarch: U32,
    pub hardware_subarch_data: U64,
    pub payload_offset: U32,
    pub payload_length: U32,
    pub setup_data: U64,
    pub pref_address: U64,
    pub init_size: U32,
    pub handover_offset: U32,
    pub kernel_info_offset: U32,
}

/// One e820 entry (`struct boot_e820_entry`, packed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)]
pub struct E820Raw {
    pub addr: U64,
    pub size: U64,
    pub kind: U32,
}

/// Entries that fit in `boot_params.e820_table`.
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// `struct setup_data` without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)]
pub struct SetupDataHeader {
    pub next: U64,
    pub kind: U32,
    pub len: U32,
}

/// `struct boot_params`, the zero page: the fields kexec fills by name, the rest reserved.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
#[allow(missing_docs)]
pub struct BootParams {
    _screen_apm_tboot_ist: [u8; 0x70],
    pub acpi_rsdp_addr: U64,
    _hd_info_sys_desc_olpc: [u8; 0x48],
    pub ext_ramdisk_image: U32,
    pub ext_ramdisk_size: U32,
    pub ext_cmd_line_ptr: U32,
    _cc_blob_edid_efi_alt_mem: [u8; 0x11c],
    pub e820_entries: u8,
    _edd_kbd_secure_boot_sentinel: [u8; 8],
    pub hdr: SetupHeader,
    _edd_mbr_sig_buffer: [u8; 0x64],
    pub e820_table: [E820Raw; E820_MAX_ENTRIES_ZEROPAGE],
    _eddbuf: [u8; 0x330],
}

impl BootParams {
    /// A zero page of zeros.
    pub fn zeroed() -> Self {
        Self::new_zeroed()
    }
}

const _: () = {
    assert!(size_of::<SetupHeader>() == 0x26c - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, version) == 0x206 - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, type_of_loader) == 0x210 - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, code32_start) == 0x214 - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, cmd_line_ptr) == 0x228 - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, kernel_alignment) == 0x230 - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, xloadflags) == 0x236 - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, setup_data) == 0x250 - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, pref_address) == 0x258 - SETUP_HEADER_OFFSET);
    assert!(offset_of!(SetupHeader, init_size) == 0x260 - SETUP_HEADER_OFFSET);
    assert!(size_of::<E820Raw>() == 20);
    assert!(size_of::<SetupDataHeader>() == 16);
    assert!(size_of::<BootParams>() == 4096);
    assert!(offset_of!(BootParams, acpi_rsdp_addr) == 0x070);
    assert!(offset_of!(BootParams, ext_ramdisk_image) == 0x0c0);
    assert!(offset_of!(BootParams, ext_cmd_line_ptr) == 0x0c8);
    assert!(offset_of!(BootParams, e820_entries) == 0x1e8);
    assert!(offset_of!(BootParams, hdr) == SETUP_HEADER_OFFSET);
    assert!(offset_of!(BootParams, e820_table) == 0x2d0);
};

/// The setup header of `bytes` (a bzImage), and how many of its bytes the file holds (a
/// short file's missing fields read as zero).
pub fn setup_header_of(bytes: &[u8]) -> (SetupHeader, usize) {
    let mut hdr = SetupHeader::new_zeroed();
    let held = bytes.get(SETUP_HEADER_OFFSET..).unwrap_or_default();
    let n = held.len().min(size_of::<SetupHeader>());
    hdr.as_mut_bytes()[..n].copy_from_slice(&held[..n]);
    (hdr, n)
}
