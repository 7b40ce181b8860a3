//! kdump-compressed format (makedumpfile's default output, signature `"KDUMP   "`).
//!
//! Layout (64-bit little-endian, `block` = page size):
//!
//! ```text
//! block 0        disk_dump_header (464 bytes), rest zero
//! block 1        kdump_sub_header (104 bytes), ELF notes at block+104 (VMCOREINFO inside)
//! block 1+S      1st bitmap (bit set: PFN is RAM)          S = sub_hdr_size in blocks
//! ...            2nd bitmap (bit set: PFN has a page_desc) each bitmap = bitmap_blocks/2 blocks
//! block 1+S+B    page_desc[] (24 bytes each), indexed by the rank of the PFN in the 2nd bitmap
//! ...            page data at absolute offsets (page_desc.offset); offset 0 = page lost
//! ```
//!
//! The [`KdumpWriter`] writes in a single pass with bounded memory: it reserves one
//! descriptor per RAM page, or per page the caller says it will append (`descriptor_slots`)
//! (an upper bound; absolute data offsets make the unused tail of the
//! table harmless), writes the 1st bitmap up front and the 2nd bitmap block by block as pages
//! are appended in PFN order. Pages that are never appended are excluded.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::codec::{Codec, Encoded, FLAG_INCOMPLETE, PageDecoder, PageEncoder};
use crate::error::{Error, Result, corrupt};
use crate::notes::{VMCOREINFO_NAME, find_vmcoreinfo, push_note};
use crate::physmem::{PageState, PfnRange, PhysMem, check_buf, normalize_ranges, read_at, stream_len, u32_at, u64_at};

/// Signature of kdump-compressed files.
pub const KDUMP_SIGNATURE: &[u8; 8] = b"KDUMP   ";
/// Header version written by this crate (and by makedumpfile and QEMU).
pub const HEADER_VERSION: i32 = 6;
/// Most note/VMCOREINFO bytes accepted by the reader.
pub const MAX_NOTES_SIZE: u64 = 64 << 20;
/// Most RAM ranges the reader builds from the 1st bitmap.
pub const MAX_RAM_RANGES: usize = 1 << 22;

/// Something that can write bytes at absolute offsets: a seekable file, or a flattened stream.
pub trait WriteAt {
    /// Writes all of `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Flushes buffered bytes to the underlying writer.
    fn flush(&mut self) -> io::Result<()>;
}

/// [`WriteAt`] over a `Write + Seek` value (a regular file).
#[derive(Debug)]
pub struct SeekSink<W> {
    inner: W,
    pos: Option<u64>,
}

impl<W: Write + Seek> SeekSink<W> {
    /// Wraps a seekable writer.
    pub fn new(inner: W) -> Self {
        SeekSink { inner, pos: None }
    }

    /// Gives back the writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write + Seek> WriteAt for SeekSink<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.pos != Some(offset) {
            self.pos = None;
            self.inner.seek(SeekFrom::Start(offset))?;
        }
        self.pos = None;
        self.inner.write_all(data)?;
        self.pos = Some(offset + data.len() as u64);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: WriteAt + ?Sized> WriteAt for &mut T {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}

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
    fn to_fields(&self) -> [[u8; 65]; 6] {
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

/// What to write; see [`KdumpWriter::new`].
#[derive(Debug, Clone)]
pub struct KdumpConfig {
    /// Page (= block) size: a power of two, 512..=16 MiB.
    pub page_size: u32,
    /// One past the highest PFN (`max_mapnr`).
    pub max_pfn: u64,
    /// RAM page ranges (the 1st bitmap). Pages outside them cannot be appended.
    pub ram_ranges: Vec<PfnRange>,
    /// Codec for page data.
    pub codec: Codec,
    /// Store all-zero pages as one shared zero page (dump level bit 1).
    pub share_zero_pages: bool,
    /// Recorded dump level (makedumpfile `-d`).
    pub dump_level: i32,
    /// utsname strings.
    pub utsname: Utsname,
    /// Dump time (seconds, microseconds).
    pub timestamp: (i64, i64),
    /// Number of CPUs.
    pub nr_cpus: i32,
    /// Crashed CPU.
    pub current_cpu: u32,
    /// x86_64 `phys_base`.
    pub phys_base: u64,
    /// Raw ELF notes (PT_NOTE contents) to store.
    pub notes: Vec<u8>,
    /// VMCOREINFO text; appended to the notes as a `VMCOREINFO` note unless the notes already
    /// have one.
    pub vmcoreinfo: Option<Vec<u8>>,
    /// At most this many pages will be appended: the page-descriptor table is sized for it
    /// (24 bytes a page) instead of for every RAM page. A filtered dump counts its pages first
    /// and passes the count, so excluded pages cost nothing on disk.
    pub descriptor_slots: Option<u64>,
}

impl KdumpConfig {
    /// A configuration with everything optional left empty.
    pub fn new(page_size: u32, max_pfn: u64, ram_ranges: Vec<PfnRange>, codec: Codec) -> Self {
        KdumpConfig {
            page_size,
            max_pfn,
            ram_ranges,
            codec,
            share_zero_pages: false,
            dump_level: 0,
            utsname: Utsname { sysname: "Linux".into(), ..Default::default() },
            timestamp: (0, 0),
            nr_cpus: 1,
            current_cpu: 0,
            phys_base: 0,
            notes: Vec::new(),
            vmcoreinfo: None,
            descriptor_slots: None,
        }
    }
}

/// What [`KdumpWriter::finish`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteSummary {
    /// Pages with a descriptor.
    pub pages: u64,
    /// Of which shared zero pages.
    pub zero_pages: u64,
    /// Of which stored raw.
    pub raw_pages: u64,
    /// End of the data written (= file size).
    pub file_size: u64,
    /// Whether the file was marked incomplete.
    pub incomplete: bool,
}

const DATA_FLUSH: usize = 1 << 20;
const DESC_FLUSH: usize = 2730 * PageDesc::SIZE;

/// Streaming writer of kdump-compressed files; see the [module docs](self).
#[derive(Debug)]
pub struct KdumpWriter<S: WriteAt> {
    sink: S,
    header: DiskDumpHeader,
    block: u64,
    max_pfn: u64,
    ram: Vec<PfnRange>,
    ram_cursor: usize,
    bitmap2_off: u64,
    bitmap_bytes: u64,
    desc_off: u64,
    /// End of the descriptor table: where page data may start.
    metadata_end: u64,
    /// Descriptors the table holds.
    descriptor_slots: u64,
    zero_off: Option<u64>,
    encoder: PageEncoder,
    enc_buf: Vec<u8>,
    next_pfn: u64,
    cur_blk: u64,
    blk: Vec<u8>,
    blk_written_upto: u64,
    rank: u64,
    desc_buf: Vec<u8>,
    desc_buf_rank: u64,
    data_buf: Vec<u8>,
    data_buf_off: u64,
    durable_end: u64,
    failed: bool,
    summary: WriteSummary,
}

impl<S: WriteAt> KdumpWriter<S> {
    /// Starts a dump: writes the headers, notes and 1st bitmap and reserves the page
    /// descriptors (one per RAM page, or `descriptor_slots`). Then call [`append_page`](Self::append_page) or
    /// [`append_encoded`](Self::append_encoded) in increasing PFN order, then
    /// [`finish`](Self::finish) (or [`finish_incomplete`](Self::finish_incomplete) after an error).
    pub fn new(mut sink: S, cfg: KdumpConfig) -> Result<Self> {
        let ps = u64::from(cfg.page_size);
        if !ps.is_power_of_two() || !(512..=(1 << 24)).contains(&ps) {
            return Err(Error::InvalidArgument(format!(
                "page size {ps} must be a power of two between 512 and 16 MiB"
            )));
        }
        let ram = normalize_ranges(cfg.ram_ranges.clone());
        if ram.last().is_some_and(|r| r.end > cfg.max_pfn) {
            return Err(Error::InvalidArgument(format!(
                "RAM range ends at PFN {:#x}, beyond max_pfn {:#x}; raise max_pfn",
                ram.last().map_or(0, |r| r.end),
                cfg.max_pfn
            )));
        }
        if cfg.max_pfn > (1u64 << 52) {
            return Err(Error::InvalidArgument(format!("max_pfn {:#x} is implausibly large", cfg.max_pfn)));
        }
        // Notes, with VMCOREINFO inside.
        let mut notes = cfg.notes.clone();
        if let Some(v) = &cfg.vmcoreinfo
            && find_vmcoreinfo(&notes, true).is_none()
        {
            notes.resize(notes.len().next_multiple_of(4), 0);
            push_note(&mut notes, VMCOREINFO_NAME, 0, v);
        }
        let notes_off = ps + KdumpSubHeader::SIZE as u64;
        let sub_hdr_blocks = (KdumpSubHeader::SIZE as u64 + notes.len() as u64).div_ceil(ps);
        let bitmap_bytes = cfg.max_pfn.div_ceil(8).div_ceil(ps).max(1) * ps;
        let bitmap_blocks = 2 * bitmap_bytes / ps;
        if sub_hdr_blocks > i32::MAX as u64 || bitmap_blocks > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument("notes or bitmaps too large for the header fields".into()));
        }
        let bitmap1_off = ps * (1 + sub_hdr_blocks);
        let bitmap2_off = bitmap1_off + bitmap_bytes;
        let desc_off = bitmap2_off + bitmap_bytes;
        let n_ram: u64 = ram.iter().map(|r| r.end - r.start).sum();
        let n_desc = cfg.descriptor_slots.map_or(n_ram, |n| n.min(n_ram));
        let mut data_off = desc_off + n_desc * PageDesc::SIZE as u64;

        let mut sub = KdumpSubHeader {
            phys_base: cfg.phys_base,
            dump_level: cfg.dump_level,
            offset_note: notes_off,
            size_note: notes.len() as u64,
            max_mapnr_64: cfg.max_pfn,
            ..Default::default()
        };
        if let Some((off, d)) = find_vmcoreinfo(&notes, true) {
            sub.offset_vmcoreinfo = notes_off + off as u64;
            sub.size_vmcoreinfo = d.len() as u64;
        }
        let status = cfg.codec.flag();
        let header = DiskDumpHeader {
            signature: *KDUMP_SIGNATURE,
            header_version: HEADER_VERSION,
            utsname: cfg.utsname.to_fields(),
            timestamp_sec: cfg.timestamp.0,
            timestamp_usec: cfg.timestamp.1,
            status,
            block_size: cfg.page_size as i32,
            sub_hdr_size: sub_hdr_blocks as i32,
            bitmap_blocks: bitmap_blocks as u32,
            max_mapnr: cfg.max_pfn.min(u64::from(u32::MAX)) as u32,
            total_ram_blocks: 0,
            device_blocks: 0,
            written_blocks: 0,
            current_cpu: cfg.current_cpu,
            nr_cpus: cfg.nr_cpus,
        };
        // Header first, marked incomplete until finish().
        let mut first = vec![0u8; ps as usize];
        let mut h = header.clone();
        h.status |= FLAG_INCOMPLETE;
        first[..DiskDumpHeader::SIZE].copy_from_slice(&h.to_bytes());
        sink.write_at(0, &first)?;
        let mut subblk = vec![0u8; (sub_hdr_blocks * ps) as usize];
        subblk[..KdumpSubHeader::SIZE].copy_from_slice(&sub.to_bytes());
        subblk[KdumpSubHeader::SIZE..KdumpSubHeader::SIZE + notes.len()].copy_from_slice(&notes);
        sink.write_at(ps, &subblk)?;
        // 1st bitmap, one block at a time.
        let bits_per_blk = ps * 8;
        let mut blk = vec![0u8; ps as usize];
        let mut ri = 0usize;
        for b in 0..bitmap_bytes / ps {
            blk.fill(0);
            let lo = b * bits_per_blk;
            let hi = lo + bits_per_blk;
            while ri < ram.len() && ram[ri].end <= lo {
                ri += 1;
            }
            let mut j = ri;
            while j < ram.len() && ram[j].start < hi {
                let s = ram[j].start.max(lo) - lo;
                let e = ram[j].end.min(hi) - lo;
                set_bits(&mut blk, s, e);
                j += 1;
            }
            sink.write_at(bitmap1_off + b * ps, &blk)?;
        }
        let zero_off = if cfg.share_zero_pages {
            sink.write_at(data_off, &vec![0u8; ps as usize])?;
            let z = data_off;
            data_off += ps;
            Some(z)
        } else {
            None
        };
        Ok(KdumpWriter {
            sink,
            header,
            block: ps,
            max_pfn: cfg.max_pfn,
            ram,
            ram_cursor: 0,
            bitmap2_off,
            bitmap_bytes,
            desc_off,
            metadata_end: desc_off + n_desc * PageDesc::SIZE as u64,
            descriptor_slots: n_desc,
            zero_off,
            encoder: PageEncoder::new(cfg.codec, cfg.share_zero_pages)?,
            enc_buf: Vec::with_capacity(ps as usize * 2),
            next_pfn: 0,
            cur_blk: 0,
            blk: vec![0u8; ps as usize],
            blk_written_upto: 0,
            rank: 0,
            desc_buf: Vec::with_capacity(DESC_FLUSH + PageDesc::SIZE),
            desc_buf_rank: 0,
            data_buf: Vec::with_capacity(DATA_FLUSH + ps as usize),
            data_buf_off: data_off,
            durable_end: data_off,
            failed: false,
            summary: WriteSummary { pages: 0, zero_pages: 0, raw_pages: 0, file_size: data_off, incomplete: false },
        })
    }

    /// A fresh encoder with this writer's codec and zero-page setting, for compressing pages
    /// on other threads before [`append_encoded`](Self::append_encoded).
    pub fn new_encoder(&self) -> Result<PageEncoder> {
        PageEncoder::new(self.encoder.codec(), self.zero_off.is_some())
    }

    /// Page size.
    /// Bytes from the start of the file to the end of the descriptor table:
    /// headers, notes, both bitmaps and the descriptor table. A caller
    /// writing to a file can preallocate them, so that finishing an
    /// incomplete dump after the disk fills up needs no new space.
    pub fn metadata_len(&self) -> u64 {
        self.metadata_end
    }

    /// Page size in bytes.
    pub fn page_size(&self) -> u64 {
        self.block
    }

    /// Compresses and appends page `pfn`. PFNs must be strictly increasing and in RAM.
    pub fn append_page(&mut self, pfn: u64, page: &[u8]) -> Result<()> {
        check_buf(page, self.block)?;
        let mut buf = std::mem::take(&mut self.enc_buf);
        let r = self.encoder.encode(page, &mut buf).and_then(|e| self.append_encoded(pfn, e, &buf));
        self.enc_buf = buf;
        r
    }

    /// Appends a page encoded by [`PageEncoder::encode`] (`data` = its output buffer).
    pub fn append_encoded(&mut self, pfn: u64, enc: Encoded, data: &[u8]) -> Result<()> {
        if self.failed {
            return Err(Error::Usage("an earlier write failed; call finish_incomplete()".into()));
        }
        if pfn < self.next_pfn || pfn >= self.max_pfn {
            return Err(Error::Usage(format!(
                "page {pfn:#x} appended out of order or beyond max_pfn (next allowed {:#x}, max_pfn {:#x})",
                self.next_pfn, self.max_pfn
            )));
        }
        while self.ram_cursor < self.ram.len() && self.ram[self.ram_cursor].end <= pfn {
            self.ram_cursor += 1;
        }
        if self.ram.get(self.ram_cursor).is_none_or(|r| r.start > pfn) {
            return Err(Error::InvalidArgument(format!("page {pfn:#x} is not in a declared RAM range")));
        }
        if self.rank >= self.descriptor_slots {
            return Err(Error::Usage(format!(
                "page {pfn:#x} is one more than the {} pages the descriptor table was sized for",
                self.descriptor_slots
            )));
        }
        let desc = match enc {
            Encoded::Zero => {
                let Some(z) = self.zero_off else {
                    return Err(Error::Usage("Encoded::Zero but the writer does not share zero pages".into()));
                };
                self.summary.zero_pages += 1;
                PageDesc { offset: z as i64, size: self.block as u32, flags: 0, page_flags: 0 }
            }
            Encoded::Raw | Encoded::Compressed { .. } => {
                let flags = match enc {
                    Encoded::Compressed { flags } => flags,
                    _ => 0,
                };
                if flags == 0 && data.len() as u64 != self.block {
                    return Err(Error::InvalidArgument(format!(
                        "raw page has {} bytes, page size is {}",
                        data.len(),
                        self.block
                    )));
                }
                if flags != 0 && (data.is_empty() || data.len() as u64 > self.block) {
                    return Err(Error::InvalidArgument(format!("compressed page has {} bytes", data.len())));
                }
                if flags == 0 {
                    self.summary.raw_pages += 1;
                }
                let off = self.data_buf_off + self.data_buf.len() as u64;
                self.data_buf.extend_from_slice(data);
                PageDesc { offset: off as i64, size: data.len() as u32, flags, page_flags: 0 }
            }
        };
        self.set_bitmap2(pfn)?;
        if self.desc_buf.is_empty() {
            self.desc_buf_rank = self.rank;
        }
        self.desc_buf.extend_from_slice(&desc.to_bytes());
        self.rank += 1;
        self.summary.pages += 1;
        self.next_pfn = pfn + 1;
        if self.data_buf.len() >= DATA_FLUSH || self.desc_buf.len() >= DESC_FLUSH {
            self.flush_buffers()?;
        }
        Ok(())
    }

    fn io<T>(&mut self, r: io::Result<T>) -> Result<T> {
        r.map_err(|e| {
            self.failed = true;
            Error::Io(e)
        })
    }

    fn set_bitmap2(&mut self, pfn: u64) -> Result<()> {
        let bits = self.block * 8;
        let b = pfn / bits;
        if b != self.cur_blk {
            self.write_bitmap2_upto(b)?;
        }
        let bit = pfn % bits;
        self.blk[(bit / 8) as usize] |= 1 << (bit % 8);
        Ok(())
    }

    /// Writes the current 2nd-bitmap block and zero blocks up to (not including) block `b`.
    fn write_bitmap2_upto(&mut self, b: u64) -> Result<()> {
        let ps = self.block;
        let blocks = self.bitmap_bytes / ps;
        if self.cur_blk < blocks {
            let r = self.sink.write_at(self.bitmap2_off + self.cur_blk * ps, &self.blk);
            self.io(r)?;
        }
        self.blk.fill(0);
        for z in self.cur_blk + 1..b.min(blocks) {
            let r = self.sink.write_at(self.bitmap2_off + z * ps, &self.blk);
            self.io(r)?;
        }
        self.cur_blk = b;
        self.blk_written_upto = b;
        Ok(())
    }

    fn flush_buffers(&mut self) -> Result<()> {
        if !self.data_buf.is_empty() {
            let r = self.sink.write_at(self.data_buf_off, &self.data_buf);
            self.io(r)?;
            self.data_buf_off += self.data_buf.len() as u64;
            self.data_buf.clear();
            self.durable_end = self.data_buf_off;
        }
        if !self.desc_buf.is_empty() {
            let off = self.desc_off + self.desc_buf_rank * PageDesc::SIZE as u64;
            let r = self.sink.write_at(off, &self.desc_buf);
            self.io(r)?;
            self.desc_buf.clear();
        }
        Ok(())
    }

    /// Completes the file: remaining bitmap blocks, buffered data and descriptors, final header.
    pub fn finish(mut self) -> Result<(S, WriteSummary)> {
        if self.failed {
            return Err(Error::Usage("an earlier write failed; call finish_incomplete()".into()));
        }
        self.flush_buffers()?;
        let blocks = self.bitmap_bytes / self.block;
        self.write_bitmap2_upto(blocks)?;
        let hdr = self.header.to_bytes();
        let r = self.sink.write_at(0, &hdr);
        self.io(r)?;
        let r = self.sink.flush();
        self.io(r)?;
        self.summary.file_size = self.data_buf_off;
        Ok((self.sink, self.summary))
    }

    /// After a write error (e.g. `ENOSPC`), makes the most of what was written: pages whose
    /// data reached the sink stay readable, the rest of RAM is marked as lost (2nd-bitmap bit
    /// set, descriptor offset 0) and the header gets `DUMP_DH_COMPRESSED_INCOMPLETE`.
    ///
    /// Also usable without an error to end a dump early on purpose.
    pub fn finish_incomplete(self) -> Result<(S, WriteSummary)> {
        self.finish_incomplete_with(|_| true)
    }

    /// Like [`finish_incomplete`](Self::finish_incomplete), but only the pages not yet
    /// appended for which `would_keep(pfn)` is true are marked lost (the others were going to
    /// be excluded anyway), and never more than the descriptor table holds.
    pub fn finish_incomplete_with(mut self, mut would_keep: impl FnMut(u64) -> bool) -> Result<(S, WriteSummary)> {
        // Try to get buffered data out; if that fails, forget descriptors pointing into it.
        if !self.data_buf.is_empty() && self.sink.write_at(self.data_buf_off, &self.data_buf).is_ok() {
            self.data_buf_off += self.data_buf.len() as u64;
            self.durable_end = self.data_buf_off;
        }
        self.data_buf.clear();
        let durable = self.durable_end;
        for d in self.desc_buf.chunks_exact_mut(PageDesc::SIZE) {
            let pd = PageDesc::parse(d);
            if pd.offset as u64 + u64::from(pd.size) > durable && Some(pd.offset as u64) != self.zero_off {
                d.copy_from_slice(&PageDesc::default().to_bytes());
            }
        }
        if !self.desc_buf.is_empty() {
            let off = self.desc_off + self.desc_buf_rank * PageDesc::SIZE as u64;
            self.sink.write_at(off, &self.desc_buf)?;
            self.desc_buf.clear();
        }
        // The rest of the pages to dump, from next_pfn on: lost (their descriptors stay zero).
        let spare = self.descriptor_slots - self.rank;
        let mut lost = 0u64;
        let ps = self.block;
        let bits = ps * 8;
        let blocks = self.bitmap_bytes / ps;
        let mut b = self.cur_blk;
        while b < blocks {
            if b != self.cur_blk {
                self.blk.fill(0);
            }
            let lo = b * bits;
            let hi = lo + bits;
            for r in &self.ram {
                let s = r.start.max(lo).max(self.next_pfn);
                let e = r.end.min(hi);
                for pfn in s..e {
                    if lost >= spare {
                        break;
                    }
                    if would_keep(pfn) {
                        set_bits(&mut self.blk, pfn - lo, pfn - lo + 1);
                        lost += 1;
                    }
                }
            }
            self.sink.write_at(self.bitmap2_off + b * ps, &self.blk)?;
            b += 1;
        }
        let mut h = self.header.clone();
        h.status |= FLAG_INCOMPLETE;
        self.sink.write_at(0, &h.to_bytes())?;
        self.sink.flush()?;
        self.summary.file_size = self.durable_end;
        self.summary.incomplete = true;
        Ok((self.sink, self.summary))
    }
}

fn set_bits(blk: &mut [u8], s: u64, e: u64) {
    let (mut s, e) = (s as usize, e as usize);
    while s < e && s % 8 != 0 {
        blk[s / 8] |= 1 << (s % 8);
        s += 1;
    }
    while s + 8 <= e {
        blk[s / 8] = 0xff;
        s += 8;
    }
    while s < e {
        blk[s / 8] |= 1 << (s % 8);
        s += 1;
    }
}

/// Copies every RAM page of `src` for which `keep(pfn, page)` is true into `w`, in PFN order.
/// Pages that `src` does not have (excluded, lost, not RAM) are skipped.
pub fn copy_pages<S: WriteAt, M: PhysMem + ?Sized>(
    src: &mut M,
    w: &mut KdumpWriter<S>,
    mut keep: impl FnMut(u64, &[u8]) -> bool,
) -> Result<()> {
    let mut buf = vec![0u8; src.page_size() as usize];
    let ranges = src.ram_ranges().to_vec();
    for r in ranges {
        for pfn in r {
            let st = src.read_page(pfn, &mut buf)?;
            if matches!(st, PageState::Present | PageState::ZeroFilled) && keep(pfn, &buf) {
                w.append_page(pfn, &buf)?;
            }
        }
    }
    Ok(())
}

/// Reader of kdump-compressed files (64-bit little-endian headers, versions 1..=6).
#[derive(Debug)]
pub struct KdumpReader<R> {
    inner: R,
    file_len: u64,
    header: DiskDumpHeader,
    sub: KdumpSubHeader,
    block: u64,
    max_pfn: u64,
    bitmap1_off: u64,
    bitmap2_off: u64,
    desc_off: u64,
    rank_index: Vec<u64>,
    dumpable: u64,
    ram: Vec<PfnRange>,
    notes: Vec<u8>,
    vmcoreinfo: Option<Vec<u8>>,
    cache1: (u64, Vec<u8>),
    cache2: (u64, Vec<u8>),
    /// A run of page descriptors from rank `.0` on: reading them one at a time
    /// costs a seek away from the page data each, and in files whose descriptor
    /// blocks sit among the pages (QEMU's) a buffer refill each.
    descs: (u64, Vec<u8>),
    data: Vec<u8>,
    decoder: PageDecoder,
}

/// Page descriptors read at once by [`KdumpReader::page_desc`].
const DESC_RUN: u64 = 256;

impl<R: Read + Seek> KdumpReader<R> {
    /// Opens and validates a kdump-compressed file.
    pub fn open(mut inner: R) -> Result<Self> {
        let file_len = stream_len(&mut inner)?;
        let mut hb = [0u8; DiskDumpHeader::SIZE];
        read_at(&mut inner, file_len, 0, &mut hb[..8], "kdump signature")?;
        if &hb[..8] != KDUMP_SIGNATURE {
            if &hb[..8] == b"DISKDUMP" {
                return Err(Error::Unsupported {
                    what: "dump format",
                    detail: "old uncompressed \"DISKDUMP\" files are not read; convert with makedumpfile".into(),
                });
            }
            return Err(Error::BadMagic { expected: "a kdump-compressed file", found: hb[..8].to_vec() });
        }
        read_at(&mut inner, file_len, 0, &mut hb, "disk_dump_header")?;
        let header = DiskDumpHeader::parse(&hb);
        if !(1..=6).contains(&header.header_version) {
            return Err(Error::Unsupported {
                what: "kdump header version",
                detail: format!("{} (this reader knows 1..=6)", header.header_version),
            });
        }
        let block = header.block_size as u32 as u64;
        if !block.is_power_of_two() || !(512..=(1 << 24)).contains(&block) {
            let b32 = u64::from(u32_at(&hb, 416, true));
            if b32.is_power_of_two() && (512..=(1 << 24)).contains(&b32) {
                return Err(Error::Unsupported {
                    what: "kdump header",
                    detail: "32-bit disk_dump_header (i386/arm dump); only 64-bit headers are read".into(),
                });
            }
            return Err(corrupt("disk_dump_header.block_size", format!("{}", header.block_size)));
        }
        if header.sub_hdr_size < 0 {
            return Err(corrupt("disk_dump_header.sub_hdr_size", format!("{}", header.sub_hdr_size)));
        }
        let sub_blocks = header.sub_hdr_size as u64;
        let bitmap_blocks = u64::from(header.bitmap_blocks);
        if bitmap_blocks == 0 || bitmap_blocks % 2 != 0 {
            return Err(Error::Unsupported {
                what: "kdump bitmaps",
                detail: format!("bitmap_blocks {bitmap_blocks} is not a positive even number (single-bitmap dump?)"),
            });
        }
        let mut sb = [0u8; KdumpSubHeader::SIZE];
        let sub = if sub_blocks > 0 {
            let need = (sub_hdr_bytes(header.header_version)).min(KdumpSubHeader::SIZE);
            read_at(&mut inner, file_len, block, &mut sb[..need], "kdump_sub_header")?;
            KdumpSubHeader::parse(&sb, header.header_version)
        } else {
            KdumpSubHeader::default()
        };
        let max_pfn = if header.header_version >= 6 && sub.max_mapnr_64 != 0 {
            sub.max_mapnr_64
        } else {
            u64::from(header.max_mapnr)
        };
        let bm_bytes = bitmap_blocks / 2 * block;
        if max_pfn.div_ceil(8) > bm_bytes {
            return Err(corrupt(
                "kdump header",
                format!("max_mapnr {max_pfn:#x} needs more bitmap than bitmap_blocks {bitmap_blocks} provide"),
            ));
        }
        let bitmap1_off = block * (1 + sub_blocks);
        let bitmap2_off = bitmap1_off + bm_bytes;
        let desc_off = bitmap2_off + bm_bytes;
        if desc_off > file_len {
            return Err(Error::Truncated {
                what: "kdump bitmaps",
                offset: bitmap1_off,
                needed: 2 * bm_bytes,
                len: file_len,
            });
        }
        // Notes and VMCOREINFO.
        let mut notes = Vec::new();
        if sub.size_note > 0 {
            if sub.size_note > MAX_NOTES_SIZE {
                return Err(corrupt("kdump_sub_header.size_note", format!("{} bytes", sub.size_note)));
            }
            if sub.offset_note.checked_add(sub.size_note).is_none_or(|e| e > file_len) {
                return Err(Error::Truncated {
                    what: "ELF notes",
                    offset: sub.offset_note,
                    needed: sub.size_note,
                    len: file_len,
                });
            }
            notes = vec![0u8; sub.size_note as usize];
            read_at(&mut inner, file_len, sub.offset_note, &mut notes, "ELF notes")?;
        }
        let mut vmcoreinfo = None;
        if sub.size_vmcoreinfo > 0 {
            if sub.size_vmcoreinfo > MAX_NOTES_SIZE {
                return Err(corrupt("kdump_sub_header.size_vmcoreinfo", format!("{} bytes", sub.size_vmcoreinfo)));
            }
            if sub.offset_vmcoreinfo.checked_add(sub.size_vmcoreinfo).is_none_or(|e| e > file_len) {
                return Err(Error::Truncated {
                    what: "VMCOREINFO",
                    offset: sub.offset_vmcoreinfo,
                    needed: sub.size_vmcoreinfo,
                    len: file_len,
                });
            }
            let mut v = vec![0u8; sub.size_vmcoreinfo as usize];
            read_at(&mut inner, file_len, sub.offset_vmcoreinfo, &mut v, "VMCOREINFO")?;
            vmcoreinfo = Some(v);
        } else if let Some((_, d)) = find_vmcoreinfo(&notes, true) {
            vmcoreinfo = Some(d.to_vec());
        }
        // Rank index over the 2nd bitmap and RAM ranges from the 1st, one block at a time.
        let nblk = bm_bytes / block;
        let mut rank_index = Vec::with_capacity(nblk as usize);
        let mut blk = vec![0u8; block as usize];
        let mut total = 0u64;
        let bits = block * 8;
        for b in 0..nblk {
            rank_index.push(total);
            read_at(&mut inner, file_len, bitmap2_off + b * block, &mut blk, "2nd bitmap")?;
            if b * bits >= max_pfn {
                continue;
            }
            let valid = (max_pfn - b * bits).min(bits);
            total += popcount_prefix(&blk, valid);
        }
        let mut ram: Vec<PfnRange> = Vec::new();
        for b in 0..nblk {
            let lo = b * bits;
            if lo >= max_pfn {
                break;
            }
            read_at(&mut inner, file_len, bitmap1_off + b * block, &mut blk, "1st bitmap")?;
            let valid = (max_pfn - lo).min(bits);
            let mut i = 0u64;
            while i < valid {
                let byte = blk[(i / 8) as usize];
                if i.is_multiple_of(8) && (byte == 0 || byte == 0xff) && i + 8 <= valid {
                    if byte == 0xff {
                        push_pfns(&mut ram, lo + i, lo + i + 8)?;
                    }
                    i += 8;
                    continue;
                }
                if byte >> (i % 8) & 1 == 1 {
                    push_pfns(&mut ram, lo + i, lo + i + 1)?;
                }
                i += 1;
            }
        }
        Ok(KdumpReader {
            inner,
            file_len,
            header,
            sub,
            block,
            max_pfn,
            bitmap1_off,
            bitmap2_off,
            desc_off,
            rank_index,
            dumpable: total,
            ram,
            notes,
            vmcoreinfo,
            cache1: (u64::MAX, vec![0u8; block as usize]),
            cache2: (u64::MAX, vec![0u8; block as usize]),
            descs: (0, Vec::new()),
            data: Vec::with_capacity(block as usize),
            decoder: PageDecoder::new(),
        })
    }

    /// The main header.
    pub fn header(&self) -> &DiskDumpHeader {
        &self.header
    }

    /// The sub-header (fields beyond the file's version are 0).
    pub fn sub_header(&self) -> &KdumpSubHeader {
        &self.sub
    }

    /// Whether the header says the dump is incomplete.
    pub fn is_incomplete(&self) -> bool {
        self.header.status & FLAG_INCOMPLETE != 0
    }

    /// Number of pages with a descriptor (2nd-bitmap population).
    pub fn dumpable_pages(&self) -> u64 {
        self.dumpable
    }

    fn bit(&mut self, second: bool, pfn: u64) -> Result<(bool, u64)> {
        let bits = self.block * 8;
        let b = pfn / bits;
        let (off, what) = if second { (self.bitmap2_off, "2nd bitmap") } else { (self.bitmap1_off, "1st bitmap") };
        let cache = if second { &mut self.cache2 } else { &mut self.cache1 };
        if cache.0 != b {
            cache.0 = u64::MAX;
            read_at(&mut self.inner, self.file_len, off + b * self.block, &mut cache.1, what)?;
            cache.0 = b;
        }
        let i = pfn % bits;
        let set = cache.1[(i / 8) as usize] >> (i % 8) & 1 == 1;
        let rank = if second { self.rank_index[b as usize] + popcount_prefix(&cache.1, i) } else { 0 };
        Ok((set, rank))
    }

    /// The page descriptor of `pfn`, or `None` when the page has none (excluded or not RAM)
    /// or its descriptor lies beyond the end of an incomplete file.
    pub fn page_desc(&mut self, pfn: u64) -> Result<Option<PageDesc>> {
        if pfn >= self.max_pfn {
            return Ok(None);
        }
        let (set, rank) = self.bit(true, pfn)?;
        if !set {
            return Ok(None);
        }
        const SIZE: u64 = PageDesc::SIZE as u64;
        let (first, run) = &self.descs;
        if let Some(d) = rank.checked_sub(*first).and_then(|i| run.get((i * SIZE) as usize..((i + 1) * SIZE) as usize))
        {
            return Ok(Some(PageDesc::parse(d)));
        }
        // A run of descriptors, within the table and the file (a short file reads one at a time).
        let off = self.desc_off + rank * SIZE;
        let count = DESC_RUN.min(self.dumpable.saturating_sub(rank)).min(self.file_len.saturating_sub(off) / SIZE);
        if count > 1 {
            let mut run = std::mem::take(&mut self.descs.1);
            run.resize((count * SIZE) as usize, 0);
            read_at(&mut self.inner, self.file_len, off, &mut run, "page descriptors")?;
            let d = PageDesc::parse(&run[..PageDesc::SIZE]);
            self.descs = (rank, run);
            return Ok(Some(d));
        }
        let mut d = [0u8; PageDesc::SIZE];
        match read_at(&mut self.inner, self.file_len, off, &mut d, "page descriptor") {
            Ok(()) => Ok(Some(PageDesc::parse(&d))),
            Err(Error::Truncated { .. }) if self.is_incomplete() => Ok(Some(PageDesc::default())),
            Err(e) => Err(e),
        }
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

fn sub_hdr_bytes(version: i32) -> usize {
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

fn push_pfns(ram: &mut Vec<PfnRange>, s: u64, e: u64) -> Result<()> {
    if let Some(last) = ram.last_mut()
        && last.end == s
    {
        last.end = e;
        return Ok(());
    }
    if ram.len() >= MAX_RAM_RANGES {
        return Err(corrupt("1st bitmap", format!("more than {MAX_RAM_RANGES} separate RAM ranges")));
    }
    ram.push(s..e);
    Ok(())
}

/// Number of set bits among the first `n` bits of `blk`.
fn popcount_prefix(blk: &[u8], n: u64) -> u64 {
    let full = (n / 8) as usize;
    let mut c: u64 = blk[..full].iter().map(|b| u64::from(b.count_ones())).sum();
    let rem = n % 8;
    if rem != 0 {
        c += u64::from((blk[full] & ((1u8 << rem) - 1)).count_ones());
    }
    c
}

impl<R: Read + Seek> PhysMem for KdumpReader<R> {
    fn page_size(&self) -> u64 {
        self.block
    }

    fn max_pfn(&self) -> u64 {
        self.max_pfn
    }

    fn ram_ranges(&self) -> &[PfnRange] {
        &self.ram
    }

    fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> Result<PageState> {
        check_buf(buf, self.block)?;
        buf.fill(0);
        if pfn >= self.max_pfn {
            return Ok(PageState::NotRam);
        }
        let Some(pd) = self.page_desc(pfn)? else {
            let (ram, _) = self.bit(false, pfn)?;
            return Ok(if ram { PageState::Excluded } else { PageState::NotRam });
        };
        if pd.offset == 0 {
            return Ok(PageState::Lost);
        }
        if pd.offset < 0 || u64::from(pd.size) > self.block || pd.size == 0 {
            return Err(corrupt(
                "page descriptor",
                format!("page {pfn:#x}: offset {:#x}, size {}", pd.offset, pd.size),
            ));
        }
        self.data.resize(pd.size as usize, 0);
        match read_at(&mut self.inner, self.file_len, pd.offset as u64, &mut self.data, "page data") {
            Ok(()) => {}
            Err(Error::Truncated { .. }) if self.header.status & FLAG_INCOMPLETE != 0 => return Ok(PageState::Lost),
            Err(e) => return Err(e),
        }
        if let Err(e) = self.decoder.decode(pfn, pd.flags, &self.data, buf) {
            buf.fill(0);
            return Err(e);
        }
        Ok(PageState::Present)
    }

    fn notes(&self) -> &[u8] {
        &self.notes
    }

    fn vmcoreinfo(&self) -> Option<&[u8]> {
        self.vmcoreinfo.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn cfg(codec: Codec) -> KdumpConfig {
        let mut c = KdumpConfig::new(4096, 0x120, vec![1..0xa0, 0x100..0x110], codec);
        c.share_zero_pages = true;
        c.dump_level = 1;
        c.vmcoreinfo = Some(b"OSRELEASE=6.1.0\nPAGESIZE=4096\n".to_vec());
        c.utsname.release = "6.1.0".into();
        c.utsname.machine = "x86_64".into();
        c
    }

    fn page(pfn: u64) -> Vec<u8> {
        (0..4096u64).map(|i| ((i * 7 + pfn * 13) % 251) as u8).collect()
    }

    fn write(codec: Codec) -> Vec<u8> {
        let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), cfg(codec)).unwrap();
        for pfn in (1..0xa0).chain(0x100..0x110) {
            if pfn % 5 == 0 {
                continue; // excluded
            }
            if pfn % 7 == 0 {
                w.append_page(pfn, &[0u8; 4096]).unwrap();
            } else {
                w.append_page(pfn, &page(pfn)).unwrap();
            }
        }
        let (s, sum) = w.finish().unwrap();
        assert!(!sum.incomplete);
        s.into_inner().into_inner()
    }

    #[test]
    fn struct_offsets() {
        let mut h = DiskDumpHeader::parse(&[0u8; 464]);
        h.signature = *KDUMP_SIGNATURE;
        h.header_version = 6;
        h.timestamp_sec = 0x0102;
        h.status = 0x20;
        h.block_size = 4096;
        h.sub_hdr_size = 3;
        h.bitmap_blocks = 8;
        h.max_mapnr = 0x1234;
        h.nr_cpus = 4;
        h.utsname[4][..6].copy_from_slice(b"x86_64");
        let b = h.to_bytes();
        assert_eq!(&b[0..8], b"KDUMP   ");
        assert_eq!(b[8], 6);
        assert_eq!(&b[12 + 65 * 4..12 + 65 * 4 + 6], b"x86_64");
        assert_eq!(b[408..410], [2, 1]);
        assert_eq!(b[424], 0x20);
        assert_eq!(b[428..430], [0, 0x10]);
        assert_eq!(b[432], 3);
        assert_eq!(b[436], 8);
        assert_eq!(b[440..442], [0x34, 0x12]);
        assert_eq!(b[460], 4);
        assert_eq!(DiskDumpHeader::parse(&b), h);
        assert_eq!(h.utsname_field(4), "x86_64");

        let s = KdumpSubHeader {
            phys_base: 1,
            dump_level: 2,
            split: 3,
            start_pfn: 4,
            end_pfn: 5,
            offset_vmcoreinfo: 6,
            size_vmcoreinfo: 7,
            offset_note: 8,
            size_note: 9,
            offset_eraseinfo: 10,
            size_eraseinfo: 11,
            start_pfn_64: 12,
            end_pfn_64: 13,
            max_mapnr_64: 14,
        };
        let b = s.to_bytes();
        for (off, v) in [(0, 1), (8, 2), (12, 3), (16, 4), (24, 5), (32, 6), (40, 7), (48, 8), (56, 9), (64, 10)] {
            assert_eq!(b[off], v, "offset {off}");
        }
        for (off, v) in [(72, 11), (80, 12), (88, 13), (96, 14)] {
            assert_eq!(b[off], v, "offset {off}");
        }
        assert_eq!(KdumpSubHeader::parse(&b, 6), s);
        assert_eq!(KdumpSubHeader::parse(&b, 3).offset_note, 0);

        let d = PageDesc { offset: 0x1122, size: 0x33, flags: 0x4, page_flags: 0x55 };
        let b = d.to_bytes();
        assert_eq!((b[0], b[1], b[8], b[12], b[16]), (0x22, 0x11, 0x33, 0x4, 0x55));
        assert_eq!(PageDesc::parse(&b), d);
    }

    #[test]
    fn file_layout() {
        let f = write(Codec::Zlib);
        let h = DiskDumpHeader::parse(&f);
        assert_eq!(h.status, 1);
        assert_eq!(h.block_size, 4096);
        assert_eq!(h.sub_hdr_size, 1);
        assert_eq!(h.bitmap_blocks, 2);
        assert_eq!(h.max_mapnr, 0x120);
        let s = KdumpSubHeader::parse(&f[4096..], 6);
        assert_eq!(s.offset_note, 4096 + 104);
        assert_eq!(s.max_mapnr_64, 0x120);
        assert_eq!(s.dump_level, 1);
        let vi = &f[s.offset_vmcoreinfo as usize..(s.offset_vmcoreinfo + s.size_vmcoreinfo) as usize];
        assert_eq!(vi, b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
        // 1st bitmap at block 2: PFN 0 not RAM, 1..0xa0 RAM
        assert_eq!(f[8192], 0xfe);
        assert_eq!(f[8192 + 0x9f / 8] >> 7, 1);
        // 2nd bitmap at block 3: PFN 5 excluded, 7 (zero) present
        assert_eq!(f[12288] & (1 << 5), 0);
        assert_eq!(f[12288] & (1 << 6), 1 << 6);
        // descriptors at block 4; the first (PFN 1) points past the shared zero page
        let n_ram = 0x9f + 0x10;
        let data = 16384 + 24 * n_ram;
        let d0 = PageDesc::parse(&f[16384..]);
        assert_eq!(d0.offset as usize, data + 4096);
        assert_eq!(d0.flags, 1);
        // PFN 7 is the 6th dumpable page (1,2,3,4,6,7) -> index 5: shared zero page
        let d5 = PageDesc::parse(&f[16384 + 5 * 24..]);
        assert_eq!((d5.offset as usize, d5.size, d5.flags), (data, 4096, 0));
    }

    #[test]
    fn roundtrip_each_codec() {
        for codec in Codec::ALL {
            let f = write(codec);
            let mut r = KdumpReader::open(Cursor::new(f)).unwrap();
            assert_eq!(r.ram_ranges(), &[1..0xa0, 0x100..0x110]);
            assert_eq!(r.vmcoreinfo().unwrap(), b"OSRELEASE=6.1.0\nPAGESIZE=4096\n");
            assert!(!r.is_incomplete());
            let mut buf = vec![0u8; 4096];
            for pfn in 0..0x130 {
                let st = r.read_page(pfn, &mut buf).unwrap();
                let ram = (1..0xa0).contains(&pfn) || (0x100..0x110).contains(&pfn);
                let want = if !ram {
                    PageState::NotRam
                } else if pfn % 5 == 0 {
                    PageState::Excluded
                } else {
                    PageState::Present
                };
                assert_eq!(st, want, "{codec:?} pfn {pfn:#x}");
                if st == PageState::Present {
                    let expect = if pfn % 7 == 0 { vec![0u8; 4096] } else { page(pfn) };
                    assert_eq!(buf, expect, "{codec:?} pfn {pfn:#x}");
                } else {
                    assert!(buf.iter().all(|&b| b == 0));
                }
            }
            assert_eq!(r.dumpable_pages(), (0x9f + 0x10) - (0x9f / 5 + 3));
        }
    }

    /// Descriptors are read in runs: any order of page reads sees the pages written.
    #[test]
    fn page_reads_in_any_order_see_the_pages_written() {
        let mut r = KdumpReader::open(Cursor::new(write(Codec::Zlib))).unwrap();
        let mut buf = vec![0u8; 4096];
        let order = (0..0x120u64).rev().chain((0..0x120).map(|i| (i * 97) % 0x120));
        for pfn in order {
            let ram = (1..0xa0).contains(&pfn) || (0x100..0x110).contains(&pfn);
            let st = r.read_page(pfn, &mut buf).unwrap();
            if !ram || pfn % 5 == 0 {
                assert_ne!(st, PageState::Present, "pfn {pfn:#x}");
                continue;
            }
            assert_eq!(st, PageState::Present, "pfn {pfn:#x}");
            let expect = if pfn % 7 == 0 { vec![0u8; 4096] } else { page(pfn) };
            assert_eq!(buf, expect, "pfn {pfn:#x}");
        }
    }

    #[test]
    fn older_header_versions() {
        let f = write(Codec::Zlib);
        for v in 1..=6u8 {
            let mut g = f.clone();
            g[8] = v;
            let mut r = KdumpReader::open(Cursor::new(g)).unwrap();
            assert_eq!(r.max_pfn(), 0x120);
            assert_eq!(r.vmcoreinfo().is_some(), v >= 3, "v{v}");
            assert_eq!(r.notes().is_empty(), v < 4, "v{v}");
            let mut buf = vec![0u8; 4096];
            assert_eq!(r.read_page(0x101, &mut buf).unwrap(), PageState::Present);
            assert_eq!(buf, page(0x101));
        }
        for v in [0u8, 7] {
            let mut g = f.clone();
            g[8] = v;
            assert!(matches!(KdumpReader::open(Cursor::new(g)), Err(Error::Unsupported { .. })));
        }
    }

    #[test]
    fn misuse_is_error() {
        let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), cfg(Codec::None)).unwrap();
        assert!(w.append_page(0, &page(0)).is_err()); // not RAM
        w.append_page(3, &page(3)).unwrap();
        assert!(w.append_page(3, &page(3)).is_err()); // repeated
        assert!(w.append_page(2, &page(2)).is_err()); // backwards
        assert!(w.append_page(0x200, &page(2)).is_err()); // beyond max_pfn
        assert!(w.append_page(4, &[0u8; 10]).is_err());
        assert!(KdumpWriter::new(1usize, cfg(Codec::None)).is_err());
    }

    impl WriteAt for usize {
        fn write_at(&mut self, _: u64, _: &[u8]) -> io::Result<()> {
            Err(io::Error::other("no space left on device"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink that fails once `limit` bytes have been written past `fail_from`.
    struct Limited {
        file: Cursor<Vec<u8>>,
        limit: u64,
    }
    impl WriteAt for Limited {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
            if offset + data.len() as u64 > self.limit {
                return Err(io::Error::other("ENOSPC"));
            }
            SeekSink::new(&mut self.file).write_at(offset, data)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn incomplete_after_enospc() {
        // Large max_pfn so the data flushes several times.
        let mut c = KdumpConfig::new(4096, 2048, std::iter::once(0..2048).collect(), Codec::None);
        c.share_zero_pages = true;
        let sink = Limited { file: Cursor::new(Vec::new()), limit: 3 << 20 };
        let mut w = KdumpWriter::new(sink, c).unwrap();
        let mut failed_at = None;
        for pfn in 0..2048 {
            if let Err(e) = w.append_page(pfn, &page(pfn)) {
                assert!(matches!(e, Error::Io(_)));
                failed_at = Some(pfn);
                break;
            }
        }
        let failed_at = failed_at.expect("the sink fills up");
        assert!(w.append_page(failed_at + 1, &page(0)).is_err());
        let (mut sink, sum) = w.finish_incomplete().unwrap();
        assert!(sum.incomplete);
        sink.limit = u64::MAX;
        let f = sink.file.into_inner();
        let mut r = KdumpReader::open(Cursor::new(f)).unwrap();
        assert!(r.is_incomplete());
        let mut buf = vec![0u8; 4096];
        let (mut present, mut lost) = (0, 0);
        for pfn in 0..2048 {
            match r.read_page(pfn, &mut buf).unwrap() {
                PageState::Present => {
                    assert_eq!(buf, page(pfn));
                    assert_eq!(lost, 0, "present after lost at {pfn}");
                    present += 1;
                }
                PageState::Lost => lost += 1,
                s => panic!("pfn {pfn}: {s:?}"),
            }
        }
        assert!(present > 0 && lost > 0, "{present} {lost}");
        assert_eq!(present + lost, 2048);
    }
}
