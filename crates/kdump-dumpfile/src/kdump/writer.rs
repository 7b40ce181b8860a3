//! The single-pass, bounded-memory writer.

use std::io;

use crate::codec::{Codec, Encoded, FLAG_INCOMPLETE, PageEncoder};
use crate::error::{Error, Result};
use crate::notes::{VMCOREINFO_NAME, find_vmcoreinfo, push_note};
use crate::physmem::{PageState, PfnRange, PhysMem, check_buf, normalize_ranges};

use super::*;

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
    /// Page data starts at the next multiple of this many bytes after the descriptor table
    /// (`None`: right after it). An upload in parts of this size (S3 multipart) then has the
    /// metadata, which is rewritten until the end, in parts of its own, and the page data,
    /// which is appended once, in parts that can leave as soon as they fill. The gap reads
    /// as zeros and no descriptor points into it.
    pub data_alignment: Option<u64>,
    /// Struct pages of left-out pages were left out too (`makedumpfile -e`): the header says
    /// so, for readers that would otherwise take the missing pages for damage.
    pub excluded_vmemmap: bool,
    /// Write one part of a split dump (makedumpfile's `--split`; see [`split`](super::split)):
    /// the whole dump's 2nd bitmap up front, descriptors and data only for the part's range.
    /// `descriptor_slots` is then ignored: the table holds the part's pages of the set.
    pub split: Option<SplitPart>,
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
            data_alignment: None,
            excluded_vmemmap: false,
            split: None,
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
    /// Pages recorded as lost (descriptor offset 0) though the dump went on: given to
    /// [`KdumpWriter::append_lost`], or pages of a split part's set never appended.
    pub lost_pages: u64,
}

const DATA_FLUSH: usize = 1 << 20;
const DESC_FLUSH: usize = 2730 * PageDesc::SIZE;
/// What a writer holds besides its sink, whatever the dump's size: the page data and
/// descriptors buffered before a flush, and a block for bitmaps (a page size of 4 KiB).
pub const WRITER_BUFFER_BYTES: u64 = (DATA_FLUSH + DESC_FLUSH + 3 * 4096) as u64;

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
    /// A split part: its range and the whole dump's pages (the 2nd bitmap, written up front).
    split: Option<SplitPart>,
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
        let (n_desc, data_start) = match &cfg.split {
            None => {
                let n = cfg.descriptor_slots.map_or(n_ram, |n| n.min(n_ram));
                (n, desc_off + n * PageDesc::SIZE as u64)
            }
            // The part's own descriptors; page data where the whole dump's would start, so the
            // shared zero page is where makedumpfile --reassemble looks for it.
            Some(part) => {
                check_split_part(part, &ram, cfg.max_pfn)?;
                (part.pages.count_in(part.range.clone()), desc_off + part.pages.len() * PageDesc::SIZE as u64)
            }
        };
        let metadata_end = desc_off + n_desc * PageDesc::SIZE as u64;
        let mut data_off = match cfg.data_alignment {
            None => data_start,
            Some(a) if (1..=1 << 40).contains(&a) => data_start.next_multiple_of(a),
            Some(a) => {
                return Err(Error::InvalidArgument(format!("data alignment {a} must be between 1 byte and 1 TiB")));
            }
        };

        let mut sub = KdumpSubHeader {
            phys_base: cfg.phys_base,
            dump_level: cfg.dump_level,
            offset_note: notes_off,
            size_note: notes.len() as u64,
            max_mapnr_64: cfg.max_pfn,
            ..Default::default()
        };
        if let Some(part) = &cfg.split {
            sub.split = 1;
            // The 32-bit fields are clamped, as makedumpfile does; readers use the 64-bit ones.
            sub.start_pfn = part.range.start.min(u64::from(u32::MAX));
            sub.end_pfn = part.range.end.min(u64::from(u32::MAX));
            sub.start_pfn_64 = part.range.start;
            sub.end_pfn_64 = part.range.end;
        }
        if let Some((off, d)) = find_vmcoreinfo(&notes, true) {
            sub.offset_vmcoreinfo = notes_off + off as u64;
            sub.size_vmcoreinfo = d.len() as u64;
        }
        let status = cfg.codec.flag() | if cfg.excluded_vmemmap { crate::codec::FLAG_EXCLUDED_VMEMMAP } else { 0 };
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
        // A split part's 2nd bitmap is the whole dump's, known up front.
        if let Some(part) = &cfg.split {
            for b in 0..bitmap_bytes / ps {
                part.pages.bitmap_bytes(b * ps, &mut blk);
                sink.write_at(bitmap2_off + b * ps, &blk)?;
            }
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
            metadata_end,
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
            summary: WriteSummary { file_size: data_off, ..WriteSummary::default() },
            split: cfg.split,
        })
    }

    /// A fresh encoder with this writer's codec and zero-page setting, for compressing pages
    /// on other threads before [`append_encoded`](Self::append_encoded).
    pub fn new_encoder(&self) -> Result<PageEncoder> {
        PageEncoder::new(self.encoder.codec(), self.zero_off.is_some())
    }

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
        let skipped = self.admit(pfn)?;
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
        self.summary.pages += 1;
        self.record(pfn, skipped, desc)
    }

    /// Records page `pfn` as lost: it belongs in the dump but its contents are not
    /// available (descriptor offset 0, which readers report as missing). Same order rules as
    /// [`append_encoded`](Self::append_encoded).
    pub fn append_lost(&mut self, pfn: u64) -> Result<()> {
        let skipped = self.admit(pfn)?;
        self.summary.lost_pages += 1;
        self.record(pfn, skipped, PageDesc::default())
    }

    /// Checks that page `pfn` may come next; returns how many pages of a split part's set
    /// were skipped before it (they are recorded as lost).
    fn admit(&self, pfn: u64) -> Result<u64> {
        if self.failed {
            return Err(Error::Usage("an earlier write failed; call finish_incomplete()".into()));
        }
        if pfn < self.next_pfn || pfn >= self.max_pfn {
            return Err(Error::Usage(format!(
                "page {pfn:#x} appended out of order or beyond max_pfn (next allowed {:#x}, max_pfn {:#x})",
                self.next_pfn, self.max_pfn
            )));
        }
        let ram = &self.ram[self.ram_cursor..];
        let at = ram.partition_point(|r| r.end <= pfn);
        if ram.get(at).is_none_or(|r| r.start > pfn) {
            return Err(Error::InvalidArgument(format!("page {pfn:#x} is not in a declared RAM range")));
        }
        let skipped = match &self.split {
            None => 0,
            Some(part) => {
                if !part.range.contains(&pfn) || !part.pages.contains(pfn) {
                    return Err(Error::Usage(format!(
                        "page {pfn:#x} is not one of this split part's pages (PFNs {:#x}-{:#x} of the set)",
                        part.range.start, part.range.end
                    )));
                }
                part.pages.count_in(self.next_pfn.max(part.range.start)..pfn)
            }
        };
        if self.rank + skipped >= self.descriptor_slots {
            return Err(Error::Usage(format!(
                "page {pfn:#x} is one more than the {} pages the descriptor table was sized for",
                self.descriptor_slots
            )));
        }
        Ok(skipped)
    }

    /// Adds the descriptor of `pfn`, after `skipped` lost ones, and marks it in the 2nd bitmap.
    fn record(&mut self, pfn: u64, skipped: u64, desc: PageDesc) -> Result<()> {
        while self.ram_cursor < self.ram.len() && self.ram[self.ram_cursor].end <= pfn {
            self.ram_cursor += 1;
        }
        self.push_lost(skipped);
        if self.split.is_none() {
            self.set_bitmap2(pfn)?;
        }
        self.push_desc(&desc);
        self.next_pfn = pfn + 1;
        if self.data_buf.len() >= DATA_FLUSH || self.desc_buf.len() >= DESC_FLUSH {
            self.flush_buffers()?;
        }
        Ok(())
    }

    fn push_desc(&mut self, desc: &PageDesc) {
        if self.desc_buf.is_empty() {
            self.desc_buf_rank = self.rank;
        }
        self.desc_buf.extend_from_slice(&desc.to_bytes());
        self.rank += 1;
    }

    /// `n` lost descriptors (a split part's pages that were never appended).
    fn push_lost(&mut self, n: u64) {
        for _ in 0..n {
            self.push_desc(&PageDesc::default());
        }
        self.summary.lost_pages += n;
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
        self.complete()?;
        self.summary.file_size = self.data_buf_off;
        Ok((self.sink, self.summary))
    }

    /// Completes the file like [`finish`](Self::finish), or, when a write fails on the way
    /// (the last buffered pages hit a full disk), finishes it as incomplete like
    /// [`finish_incomplete_with`](Self::finish_incomplete_with) and says why.
    pub fn finish_or_incomplete(
        mut self,
        would_keep: impl FnMut(u64) -> bool,
    ) -> Result<(S, WriteSummary, Option<String>)> {
        match self.complete() {
            Ok(()) => {
                self.summary.file_size = self.data_buf_off;
                Ok((self.sink, self.summary, None))
            }
            Err(Error::Io(e)) => {
                let (sink, summary) = self.finish_incomplete_with(would_keep)?;
                Ok((sink, summary, Some(e.to_string())))
            }
            Err(e) => Err(e),
        }
    }

    /// Buffered data and descriptors, the rest of the 2nd bitmap, the final header.
    fn complete(&mut self) -> Result<()> {
        if self.failed {
            return Err(Error::Usage("an earlier write failed; call finish_incomplete()".into()));
        }
        if let Some(part) = &self.split {
            // The part's pages never appended (unreadable): lost, each in its descriptor.
            let end = part.range.end;
            let rest = part.pages.count_in(self.next_pfn.max(part.range.start)..end);
            for _ in 0..rest {
                self.push_lost(1);
                if self.desc_buf.len() >= DESC_FLUSH {
                    self.flush_buffers()?;
                }
            }
            self.next_pfn = self.next_pfn.max(end);
        }
        self.flush_buffers()?;
        if self.split.is_none() {
            let blocks = self.bitmap_bytes / self.block;
            self.write_bitmap2_upto(blocks)?;
        }
        let hdr = self.header.to_bytes();
        let r = self.sink.write_at(0, &hdr);
        self.io(r)?;
        let r = self.sink.flush();
        self.io(r)
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
                // Its data never reached the sink: the page is lost, not written.
                self.summary.pages -= 1;
            }
        }
        if !self.desc_buf.is_empty() {
            let off = self.desc_off + self.desc_buf_rank * PageDesc::SIZE as u64;
            self.sink.write_at(off, &self.desc_buf)?;
            self.desc_buf.clear();
        }
        // The rest of the pages to dump, from next_pfn on: lost (their descriptors stay zero).
        // A split part's 2nd bitmap is already whole, and its table was never written past
        // the last descriptor, so it reads as zero: lost.
        let blocks = if self.split.is_some() { 0 } else { self.bitmap_bytes / self.block };
        let spare = self.descriptor_slots - self.rank;
        let mut lost = 0u64;
        let ps = self.block;
        let bits = ps * 8;
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

/// A split part must lie within the dump, and its page set must span it and be RAM.
fn check_split_part(part: &SplitPart, ram: &[PfnRange], max_pfn: u64) -> Result<()> {
    if part.range.start > part.range.end || part.range.end > max_pfn {
        return Err(Error::InvalidArgument(format!(
            "split range {:#x}-{:#x} is not within max_pfn {max_pfn:#x}",
            part.range.start, part.range.end
        )));
    }
    if part.pages.limit() != max_pfn {
        return Err(Error::InvalidArgument(format!(
            "the split page set spans PFNs below {:#x}, the dump {max_pfn:#x}: build it for max_pfn",
            part.pages.limit()
        )));
    }
    let in_ram: u64 = ram.iter().map(|r| part.pages.count_in(r.clone())).sum();
    if in_ram != part.pages.len() {
        return Err(Error::InvalidArgument(format!(
            "{} pages of the split page set are not in a declared RAM range",
            part.pages.len() - in_ram
        )));
    }
    Ok(())
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
