//! The reader: headers, bitmaps, page descriptors and pages of any kdump-compressed file.

use std::io::{Read, Seek};

use crate::codec::{FLAG_INCOMPLETE, PageDecoder};
use crate::error::{Error, Result, corrupt};
use crate::notes::find_vmcoreinfo;
use crate::physmem::{PageState, PfnRange, PhysMem, check_buf, read_at, stream_len, u32_at, usize_of};

use super::*;

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
    /// A `--split` part: the PFNs it holds, and the rank of the first in the 2nd bitmap
    /// (its descriptor table starts there).
    split: Option<(PfnRange, u64)>,
    /// Descriptors in the table: the 2nd bitmap's population, or a split part's share of it.
    desc_count: u64,
    /// A digest of both bitmaps (split parts only: the parts of one set have the same).
    bitmap_digest: u64,
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
            notes = vec![0u8; usize_of(sub.size_note, "ELF notes")?];
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
            let mut v = vec![0u8; usize_of(sub.size_vmcoreinfo, "VMCOREINFO")?];
            read_at(&mut inner, file_len, sub.offset_vmcoreinfo, &mut v, "VMCOREINFO")?;
            vmcoreinfo = Some(v);
        } else if let Some((_, d)) = find_vmcoreinfo(&notes, true) {
            vmcoreinfo = Some(d.to_vec());
        }
        // Rank index over the 2nd bitmap and RAM ranges from the 1st, one block at a time.
        // Only the blocks that cover max_pfn are read: a header may claim far more
        // bitmap than its max_mapnr needs (a fuzzed one claimed terabytes).
        let bits = block * 8;
        let nblk = (bm_bytes / block).min(max_pfn.div_ceil(bits));
        let block_len = usize_of(block, "block size")?;
        let mut rank_index = Vec::with_capacity(usize_of(nblk, "2nd bitmap")?);
        let mut blk = vec![0u8; block_len];
        let mut total = 0u64;
        for b in 0..nblk {
            rank_index.push(total);
            read_at(&mut inner, file_len, bitmap2_off + b * block, &mut blk, "2nd bitmap")?;
            let valid = (max_pfn - b * bits).min(bits);
            total += popcount_prefix(&blk, valid);
        }
        let split_range = match (sub.split, header.header_version) {
            (0, _) => None,
            (_, 6..) => Some(sub.start_pfn_64..sub.end_pfn_64),
            _ => Some(sub.start_pfn..sub.end_pfn),
        };
        let mut digest = Digest::new();
        let mut split = None;
        let mut desc_count = total;
        if let Some(r) = &split_range {
            if r.start > r.end || r.end > max_pfn {
                return Err(corrupt(
                    "kdump_sub_header split range",
                    format!("PFNs {:#x}-{:#x} with max_mapnr {max_pfn:#x}", r.start, r.end),
                ));
            }
            // Ranks of the range's ends, and the 2nd bitmap's digest.
            let mut ranks = [total; 2];
            for b in 0..nblk {
                read_at(&mut inner, file_len, bitmap2_off + b * block, &mut blk, "2nd bitmap")?;
                digest.add(&blk);
                for (rank, pfn) in ranks.iter_mut().zip([r.start, r.end]) {
                    if pfn / bits == b {
                        *rank = rank_index[usize_of(b, "2nd bitmap")?] + popcount_prefix(&blk, pfn % bits);
                    }
                }
            }
            split = Some((r.clone(), ranks[0]));
            desc_count = ranks[1].saturating_sub(ranks[0]);
            digest.add(b"1st");
        }
        let mut ram: Vec<PfnRange> = Vec::new();
        for b in 0..nblk {
            let lo = b * bits;
            if lo >= max_pfn {
                break;
            }
            read_at(&mut inner, file_len, bitmap1_off + b * block, &mut blk, "1st bitmap")?;
            if split.is_some() {
                digest.add(&blk);
            }
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
            cache1: (u64::MAX, vec![0u8; block_len]),
            cache2: (u64::MAX, vec![0u8; block_len]),
            descs: (0, Vec::new()),
            data: Vec::with_capacity(block_len),
            decoder: PageDecoder::new(),
            split,
            desc_count,
            bitmap_digest: digest.0,
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

    /// Number of pages with a descriptor (2nd-bitmap population); for a split part, of the
    /// whole set (see [`descriptor_count`](Self::descriptor_count)).
    pub fn dumpable_pages(&self) -> u64 {
        self.dumpable
    }

    /// Descriptors this file holds: [`dumpable_pages`](Self::dumpable_pages), or a split
    /// part's share of them.
    pub fn descriptor_count(&self) -> u64 {
        self.desc_count
    }

    /// For one part of a `--split` dump (sub-header `split` set): the PFNs whose pages it
    /// holds. Pages of the 2nd bitmap outside it are in other parts: [`page_desc`](Self::page_desc)
    /// gives `None` for them and [`read_page`](PhysMem::read_page) `Lost`.
    pub fn split_range(&self) -> Option<PfnRange> {
        self.split.as_ref().map(|(r, _)| r.clone())
    }

    /// A digest of both bitmaps of a split part (0 for other files): equal in the parts of
    /// one set.
    pub fn bitmap_digest(&self) -> u64 {
        self.bitmap_digest
    }

    /// The descriptor of `pfn` and, in `out`, its bytes as stored (compressed or raw; empty
    /// for a lost page, offset 0). `None` when the file has no descriptor for the page.
    pub fn read_stored(&mut self, pfn: u64, out: &mut Vec<u8>) -> Result<Option<PageDesc>> {
        out.clear();
        let Some(pd) = self.page_desc(pfn)? else { return Ok(None) };
        if pd.offset == 0 {
            return Ok(Some(pd));
        }
        if pd.offset < 0 || u64::from(pd.size) > self.block || pd.size == 0 {
            return Err(corrupt(
                "page descriptor",
                format!("page {pfn:#x}: offset {:#x}, size {}", pd.offset, pd.size),
            ));
        }
        out.resize(pd.size as usize, 0);
        read_at(&mut self.inner, self.file_len, pd.offset as u64, out, "page data")?;
        Ok(Some(pd))
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
        // `i` is below the block's bits and `b` below the blocks indexed (pfn < max_pfn).
        let set = cache.1.get(usize_of(i / 8, what)?).is_some_and(|byte| byte >> (i % 8) & 1 == 1);
        let rank = if second {
            let before = self.rank_index.get(usize_of(b, what)?).copied().unwrap_or(self.dumpable);
            before + popcount_prefix(&cache.1, i)
        } else {
            0
        };
        Ok((set, rank))
    }

    /// The page descriptor of `pfn`, or `None` when the page has none (excluded or not RAM)
    /// or its descriptor lies beyond the end of an incomplete file.
    pub fn page_desc(&mut self, pfn: u64) -> Result<Option<PageDesc>> {
        if pfn >= self.max_pfn {
            return Ok(None);
        }
        if let Some((r, _)) = &self.split
            && !r.contains(&pfn)
        {
            return Ok(None);
        }
        let (set, rank) = self.bit(true, pfn)?;
        if !set {
            return Ok(None);
        }
        // A split part's table starts at the rank of its first PFN.
        let rank = rank - self.split.as_ref().map_or(0, |&(_, first)| first);
        const SIZE: u64 = PageDesc::SIZE as u64;
        let (first, run) = &self.descs;
        let cached = rank
            .checked_sub(*first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| run.get(i * PageDesc::SIZE..(i + 1) * PageDesc::SIZE));
        if let Some(d) = cached {
            return Ok(Some(PageDesc::parse(d)));
        }
        // A run of descriptors, within the table and the file (a short file reads one at a time).
        let off = self.desc_off + rank * SIZE;
        let count = DESC_RUN.min(self.desc_count.saturating_sub(rank)).min(self.file_len.saturating_sub(off) / SIZE);
        if count > 1 {
            let mut run = std::mem::take(&mut self.descs.1);
            run.resize(usize_of(count * SIZE, "page descriptors")?, 0);
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
            if self.split.as_ref().is_some_and(|(r, _)| !r.contains(&pfn)) && self.bit(true, pfn)?.0 {
                // In another part of the split dump.
                return Ok(PageState::Lost);
            }
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

    fn has_page(&mut self, pfn: u64) -> Result<bool> {
        Ok(pfn < self.max_pfn && self.bit(true, pfn)?.0)
    }
}

/// FNV-1a, 64-bit: enough to tell the bitmaps of different dumps apart.
struct Digest(u64);

impl Digest {
    fn new() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
