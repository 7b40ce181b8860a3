//! The on-disk headers: `disk_dump_header`, `kdump_sub_header`, `page_desc`, `new_utsname`.

use crate::physmem::{u32_at, u64_at};

fn put_i32(b: &mut [u8], off: usize, v: i32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
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
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.signature);
        put_i32(&mut b, 8, self.header_version);
        for (i, f) in self.utsname.iter().enumerate() {
            b[12 + 65 * i..12 + 65 * (i + 1)].copy_from_slice(f);
        }
        put_u64(&mut b, 408, self.timestamp_sec as u64);
        put_u64(&mut b, 416, self.timestamp_usec as u64);
        put_u32(&mut b, 424, self.status);
        put_i32(&mut b, 428, self.block_size);
        put_i32(&mut b, 432, self.sub_hdr_size);
        put_u32(&mut b, 436, self.bitmap_blocks);
        put_u32(&mut b, 440, self.max_mapnr);
        put_u32(&mut b, 444, self.total_ram_blocks);
        put_u32(&mut b, 448, self.device_blocks);
        put_u32(&mut b, 452, self.written_blocks);
        put_u32(&mut b, 456, self.current_cpu);
        put_i32(&mut b, 460, self.nr_cpus);
        b
    }

    /// Decodes (little-endian); `b` must hold at least [`Self::SIZE`] bytes.
    pub fn parse(b: &[u8]) -> Self {
        let mut utsname = [[0u8; 65]; 6];
        for (i, f) in utsname.iter_mut().enumerate() {
            f.copy_from_slice(&b[12 + 65 * i..12 + 65 * (i + 1)]);
        }
        DiskDumpHeader {
            signature: b[0..8].try_into().expect("8 bytes"),
            header_version: u32_at(b, 8, true) as i32,
            utsname,
            timestamp_sec: u64_at(b, 408, true) as i64,
            timestamp_usec: u64_at(b, 416, true) as i64,
            status: u32_at(b, 424, true),
            block_size: u32_at(b, 428, true) as i32,
            sub_hdr_size: u32_at(b, 432, true) as i32,
            bitmap_blocks: u32_at(b, 436, true),
            max_mapnr: u32_at(b, 440, true),
            total_ram_blocks: u32_at(b, 444, true),
            device_blocks: u32_at(b, 448, true),
            written_blocks: u32_at(b, 452, true),
            current_cpu: u32_at(b, 456, true),
            nr_cpus: u32_at(b, 460, true) as i32,
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
        let mut b = [0u8; Self::SIZE];
        put_u64(&mut b, 0, self.phys_base);
        put_i32(&mut b, 8, self.dump_level);
        put_i32(&mut b, 12, self.split);
        let rest = [
            self.start_pfn,
            self.end_pfn,
            self.offset_vmcoreinfo,
            self.size_vmcoreinfo,
            self.offset_note,
            self.size_note,
            self.offset_eraseinfo,
            self.size_eraseinfo,
            self.start_pfn_64,
            self.end_pfn_64,
            self.max_mapnr_64,
        ];
        for (i, v) in rest.iter().enumerate() {
            put_u64(&mut b, 16 + 8 * i, *v);
        }
        b
    }

    /// Decodes the fields that exist in `header_version` (others stay 0).
    pub fn parse(b: &[u8], header_version: i32) -> Self {
        let q = |i: usize| u64_at(b, 16 + 8 * i, true);
        let mut s = KdumpSubHeader { phys_base: u64_at(b, 0, true), ..Default::default() };
        if header_version >= 1 {
            s.dump_level = u32_at(b, 8, true) as i32;
        }
        if header_version >= 2 {
            s.split = u32_at(b, 12, true) as i32;
            s.start_pfn = q(0);
            s.end_pfn = q(1);
        }
        if header_version >= 3 {
            s.offset_vmcoreinfo = q(2);
            s.size_vmcoreinfo = q(3);
        }
        if header_version >= 4 {
            s.offset_note = q(4);
            s.size_note = q(5);
        }
        if header_version >= 5 {
            s.offset_eraseinfo = q(6);
            s.size_eraseinfo = q(7);
        }
        if header_version >= 6 {
            s.start_pfn_64 = q(8);
            s.end_pfn_64 = q(9);
            s.max_mapnr_64 = q(10);
        }
        s
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
        let mut b = [0u8; Self::SIZE];
        put_u64(&mut b, 0, self.offset as u64);
        put_u32(&mut b, 8, self.size);
        put_u32(&mut b, 12, self.flags);
        put_u64(&mut b, 16, self.page_flags);
        b
    }

    /// Decodes (little-endian).
    pub fn parse(b: &[u8]) -> Self {
        PageDesc {
            offset: u64_at(b, 0, true) as i64,
            size: u32_at(b, 8, true),
            flags: u32_at(b, 12, true),
            page_flags: u64_at(b, 16, true),
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
