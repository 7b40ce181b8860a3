//! The on-disk headers: `disk_dump_header`, `kdump_sub_header`, `page_desc`, `new_utsname`.
//!
//! Each layout is declared once, as a `#[repr(C)]` struct of little-endian fields (`Raw*`, the
//! 64-bit layout makedumpfile writes) with its size and offsets asserted at compile time; the
//! public types are the same fields as plain integers, converted through it.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{I32, I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct disk_dump_header` on 64-bit: the timestamp (`struct timeval`) is 8-aligned, so six
/// bytes of padding follow the names.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawDiskDumpHeader {
    signature: [u8; 8],
    header_version: I32,
    utsname: [[u8; 65]; 6],
    _pad: [u8; 6],
    timestamp_sec: I64,
    timestamp_usec: I64,
    status: U32,
    block_size: I32,
    sub_hdr_size: I32,
    bitmap_blocks: U32,
    max_mapnr: U32,
    total_ram_blocks: U32,
    device_blocks: U32,
    written_blocks: U32,
    current_cpu: U32,
    nr_cpus: I32,
}

/// `struct kdump_sub_header` (version 6, the whole of it).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawKdumpSubHeader {
    phys_base: U64,
    dump_level: I32,
    split: I32,
    start_pfn: U64,
    end_pfn: U64,
    offset_vmcoreinfo: U64,
    size_vmcoreinfo: U64,
    offset_note: U64,
    size_note: U64,
    offset_eraseinfo: U64,
    size_eraseinfo: U64,
    start_pfn_64: U64,
    end_pfn_64: U64,
    max_mapnr_64: U64,
}

/// `struct page_desc`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawPageDesc {
    offset: I64,
    size: U32,
    flags: U32,
    page_flags: U64,
}

const _: () = {
    assert!(size_of::<RawDiskDumpHeader>() == 464);
    assert!(offset_of!(RawDiskDumpHeader, utsname) == 12);
    assert!(offset_of!(RawDiskDumpHeader, timestamp_sec) == 408);
    assert!(offset_of!(RawDiskDumpHeader, status) == 424);
    assert!(offset_of!(RawDiskDumpHeader, max_mapnr) == 440);
    assert!(offset_of!(RawDiskDumpHeader, nr_cpus) == 460);
    assert!(size_of::<RawKdumpSubHeader>() == 104);
    assert!(offset_of!(RawKdumpSubHeader, offset_vmcoreinfo) == 32);
    assert!(offset_of!(RawKdumpSubHeader, max_mapnr_64) == 96);
    assert!(size_of::<RawPageDesc>() == 24);
};

/// Reads a layout from the front of `b`; short input reads as zeros (callers check lengths).
fn read_raw<T: FromBytes + IntoBytes>(b: &[u8]) -> T {
    let mut raw = T::new_zeroed();
    let dst = raw.as_mut_bytes();
    let n = dst.len().min(b.len());
    dst[..n].copy_from_slice(&b[..n]);
    raw
}

/// `disk_dump_header` (64-bit layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDumpHeader {
    /// `"KDUMP   "`.
    pub signature: [u8; 8],
    /// 1..=6.
    pub header_version: i32,
    /// `new_utsname`: sysname, nodename, release, version, machine, domainname (65 bytes each).
    pub utsname: [[u8; 65]; 6],
    /// Dump time, seconds.
    pub timestamp_sec: i64,
    /// Dump time, microseconds.
    pub timestamp_usec: i64,
    /// Codec bit and `FLAG_INCOMPLETE`/`FLAG_EXCLUDED_VMEMMAP`.
    pub status: u32,
    /// Block size = page size.
    pub block_size: i32,
    /// Blocks taken by the sub-header and notes.
    pub sub_hdr_size: i32,
    /// Blocks of both bitmaps together.
    pub bitmap_blocks: u32,
    /// PFN limit, truncated to 32 bits (the real one is in the sub-header from version 6).
    pub max_mapnr: u32,
    /// Unused by readers.
    pub total_ram_blocks: u32,
    /// Unused by readers.
    pub device_blocks: u32,
    /// Unused by readers.
    pub written_blocks: u32,
    /// CPU that crashed.
    pub current_cpu: u32,
    /// Number of CPUs.
    pub nr_cpus: i32,
}

impl DiskDumpHeader {
    /// Size of the structure on 64-bit.
    pub const SIZE: usize = 464;

    /// Encodes (little-endian).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let raw = RawDiskDumpHeader {
            signature: self.signature,
            header_version: self.header_version.into(),
            utsname: self.utsname,
            _pad: [0; 6],
            timestamp_sec: self.timestamp_sec.into(),
            timestamp_usec: self.timestamp_usec.into(),
            status: self.status.into(),
            block_size: self.block_size.into(),
            sub_hdr_size: self.sub_hdr_size.into(),
            bitmap_blocks: self.bitmap_blocks.into(),
            max_mapnr: self.max_mapnr.into(),
            total_ram_blocks: self.total_ram_blocks.into(),
            device_blocks: self.device_blocks.into(),
            written_blocks: self.written_blocks.into(),
            current_cpu: self.current_cpu.into(),
            nr_cpus: self.nr_cpus.into(),
        };
        raw.as_bytes().try_into().expect("the size is asserted above")
    }

    /// Decodes (little-endian); `b` should hold [`Self::SIZE`] bytes (missing ones read as 0).
    pub fn parse(b: &[u8]) -> Self {
        let raw: RawDiskDumpHeader = read_raw(b);
        DiskDumpHeader {
            signature: raw.signature,
            header_version: raw.header_version.get(),
            utsname: raw.utsname,
            timestamp_sec: raw.timestamp_sec.get(),
            timestamp_usec: raw.timestamp_usec.get(),
            status: raw.status.get(),
            block_size: raw.block_size.get(),
            sub_hdr_size: raw.sub_hdr_size.get(),
            bitmap_blocks: raw.bitmap_blocks.get(),
            max_mapnr: raw.max_mapnr.get(),
            total_ram_blocks: raw.total_ram_blocks.get(),
            device_blocks: raw.device_blocks.get(),
            written_blocks: raw.written_blocks.get(),
            current_cpu: raw.current_cpu.get(),
            nr_cpus: raw.nr_cpus.get(),
        }
    }

    /// A utsname field as text (up to its NUL).
    pub fn utsname_field(&self, i: usize) -> String {
        let f = &self.utsname[i.min(5)];
        let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    }
}

/// `kdump_sub_header` (64-bit layout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KdumpSubHeader {
    /// Physical base of the kernel (x86_64 `phys_base`).
    pub phys_base: u64,
    /// makedumpfile dump level (`-d`).
    pub dump_level: i32,
    /// Non-zero in `--split` files.
    pub split: i32,
    /// Split range start (32-bit era).
    pub start_pfn: u64,
    /// Split range end (32-bit era).
    pub end_pfn: u64,
    /// File offset of the VMCOREINFO text (v3+).
    pub offset_vmcoreinfo: u64,
    /// Its size.
    pub size_vmcoreinfo: u64,
    /// File offset of the ELF notes (v4+).
    pub offset_note: u64,
    /// Their size.
    pub size_note: u64,
    /// File offset of the erase info (v5+).
    pub offset_eraseinfo: u64,
    /// Its size.
    pub size_eraseinfo: u64,
    /// Split range start (v6+).
    pub start_pfn_64: u64,
    /// Split range end (v6+).
    pub end_pfn_64: u64,
    /// Full PFN limit (v6+).
    pub max_mapnr_64: u64,
}

impl KdumpSubHeader {
    /// Size of the structure on 64-bit.
    pub const SIZE: usize = 104;

    /// Encodes (little-endian).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let raw = RawKdumpSubHeader {
            phys_base: self.phys_base.into(),
            dump_level: self.dump_level.into(),
            split: self.split.into(),
            start_pfn: self.start_pfn.into(),
            end_pfn: self.end_pfn.into(),
            offset_vmcoreinfo: self.offset_vmcoreinfo.into(),
            size_vmcoreinfo: self.size_vmcoreinfo.into(),
            offset_note: self.offset_note.into(),
            size_note: self.size_note.into(),
            offset_eraseinfo: self.offset_eraseinfo.into(),
            size_eraseinfo: self.size_eraseinfo.into(),
            start_pfn_64: self.start_pfn_64.into(),
            end_pfn_64: self.end_pfn_64.into(),
            max_mapnr_64: self.max_mapnr_64.into(),
        };
        raw.as_bytes().try_into().expect("the size is asserted above")
    }

    /// Decodes the fields that exist in `header_version` (others stay 0).
    pub fn parse(b: &[u8], header_version: i32) -> Self {
        // A field beyond the version's sub-header is not the header's (it may be notes).
        let raw: RawKdumpSubHeader = read_raw(&b[..b.len().min(sub_hdr_bytes(header_version))]);
        KdumpSubHeader {
            phys_base: raw.phys_base.get(),
            dump_level: raw.dump_level.get(),
            split: raw.split.get(),
            start_pfn: raw.start_pfn.get(),
            end_pfn: raw.end_pfn.get(),
            offset_vmcoreinfo: raw.offset_vmcoreinfo.get(),
            size_vmcoreinfo: raw.size_vmcoreinfo.get(),
            offset_note: raw.offset_note.get(),
            size_note: raw.size_note.get(),
            offset_eraseinfo: raw.offset_eraseinfo.get(),
            size_eraseinfo: raw.size_eraseinfo.get(),
            start_pfn_64: raw.start_pfn_64.get(),
            end_pfn_64: raw.end_pfn_64.get(),
            max_mapnr_64: raw.max_mapnr_64.get(),
        }
    }
}

/// `page_desc`: where a page's bytes are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageDesc {
    /// Absolute file offset of the data; 0 means the page was lost (incomplete dump).
    pub offset: i64,
    /// Bytes stored.
    pub size: u32,
    /// Codec bit, 0 = raw.
    pub flags: u32,
    /// Unused (0).
    pub page_flags: u64,
}

impl PageDesc {
    /// Size of the structure.
    pub const SIZE: usize = 24;

    /// Encodes (little-endian).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let raw = RawPageDesc {
            offset: self.offset.into(),
            size: self.size.into(),
            flags: self.flags.into(),
            page_flags: self.page_flags.into(),
        };
        raw.as_bytes().try_into().expect("the size is asserted above")
    }

    /// Decodes (little-endian).
    pub fn parse(b: &[u8]) -> Self {
        let raw: RawPageDesc = read_raw(b);
        PageDesc {
            offset: raw.offset.get(),
            size: raw.size.get(),
            flags: raw.flags.get(),
            page_flags: raw.page_flags.get(),
        }
    }
}

/// The `new_utsname` strings stored in the header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utsname {
    /// e.g. "Linux".
    pub sysname: String,
    /// Host name.
    pub nodename: String,
    /// Kernel release (`uname -r`).
    pub release: String,
    /// Kernel version string.
    pub version: String,
    /// e.g. "x86_64".
    pub machine: String,
    /// NIS domain name.
    pub domainname: String,
}

impl Utsname {
    /// The strings of header fields (each up to its NUL; bytes that are not UTF-8 are replaced).
    pub fn from_fields(fields: &[[u8; 65]; 6]) -> Self {
        let text = |f: &[u8; 65]| {
            let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        Utsname {
            sysname: text(&fields[0]),
            nodename: text(&fields[1]),
            release: text(&fields[2]),
            version: text(&fields[3]),
            machine: text(&fields[4]),
            domainname: text(&fields[5]),
        }
    }

    pub(super) fn to_fields(&self) -> [[u8; 65]; 6] {
        let mut out = [[0u8; 65]; 6];
        for (dst, s) in out.iter_mut().zip([
            &self.sysname,
            &self.nodename,
            &self.release,
            &self.version,
            &self.machine,
            &self.domainname,
        ]) {
            let n = s.len().min(64);
            dst[..n].copy_from_slice(&s.as_bytes()[..n]);
        }
        out
    }
}

pub(super) fn sub_hdr_bytes(version: i32) -> usize {
    match version {
        ..=0 => 8,
        1 => 12,
        2 => 32,
        3 => 48,
        4 => 64,
        5 => 80,
        _ => 104,
    }
}
