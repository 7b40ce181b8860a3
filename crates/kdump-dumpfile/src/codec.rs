//! Per-page codecs of the kdump-compressed format.
//!
//! makedumpfile compresses each page on its own: zlib (`compress2`, level 1, zlib wrapper),
//! LZO1X-1, raw snappy (not the framed format) and zstd level 1 (a standard frame). A page is
//! stored raw when the compressed form is not smaller than the page.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{Error, Result};

/// Page is zlib-compressed (`DUMP_DH_COMPRESSED_ZLIB`).
pub const FLAG_ZLIB: u32 = 0x1;
/// Page is LZO1X-compressed (`DUMP_DH_COMPRESSED_LZO`).
pub const FLAG_LZO: u32 = 0x2;
/// Page is snappy-compressed (`DUMP_DH_COMPRESSED_SNAPPY`).
pub const FLAG_SNAPPY: u32 = 0x4;
/// Header status: the dump is incomplete (`DUMP_DH_COMPRESSED_INCOMPLETE`).
pub const FLAG_INCOMPLETE: u32 = 0x8;
/// Header status: pages holding `struct page`s of excluded memory were left out.
pub const FLAG_EXCLUDED_VMEMMAP: u32 = 0x10;
/// Page is zstd-compressed (`DUMP_DH_COMPRESSED_ZSTD`).
pub const FLAG_ZSTD: u32 = 0x20;

/// A page compression method (also the `dump.codec` key of the service config,
/// as `none`, `zlib`, `lzo`, `snappy` or `zstd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// No compression: every page stored raw.
    None,
    /// zlib, level 1 (makedumpfile `-c`).
    Zlib,
    /// LZO1X (makedumpfile `-l`).
    Lzo,
    /// Raw snappy (makedumpfile `-p`).
    Snappy,
    /// zstd level 1 (makedumpfile `-z`).
    Zstd,
}

impl Codec {
    /// All codecs.
    pub const ALL: [Codec; 5] = [Codec::None, Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd];

    /// The `page_desc.flags` / header `status` bit of this codec (0 for `None`).
    pub fn flag(self) -> u32 {
        match self {
            Codec::None => 0,
            Codec::Zlib => FLAG_ZLIB,
            Codec::Lzo => FLAG_LZO,
            Codec::Snappy => FLAG_SNAPPY,
            Codec::Zstd => FLAG_ZSTD,
        }
    }

    /// The codec of a single flag bit.
    pub fn from_flag(flag: u32) -> Option<Codec> {
        Some(match flag {
            0 => Codec::None,
            FLAG_ZLIB => Codec::Zlib,
            FLAG_LZO => Codec::Lzo,
            FLAG_SNAPPY => Codec::Snappy,
            FLAG_ZSTD => Codec::Zstd,
            _ => return None,
        })
    }

    /// makedumpfile's command-line flag for this codec (`None` for no compression).
    pub fn makedumpfile_flag(self) -> Option<&'static str> {
        match self {
            Codec::None => None,
            Codec::Zlib => Some("-c"),
            Codec::Lzo => Some("-l"),
            Codec::Snappy => Some("-p"),
            Codec::Zstd => Some("-z"),
        }
    }

    /// Short name ("zlib", …).
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zlib => "zlib",
            Codec::Lzo => "lzo",
            Codec::Snappy => "snappy",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How one page was encoded by [`PageEncoder::encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// The page is all zero and zero pages are shared (dump level bit 1); no bytes.
    Zero,
    /// The page is stored as is; the output buffer holds a copy of the page.
    Raw,
    /// The output buffer holds the compressed page; `flags` is the codec bit for `page_desc.flags`.
    Compressed {
        /// The codec bit.
        flags: u32,
    },
}

/// True when every byte is zero. Compares 16 bytes at a time, which the
/// compiler vectorises: most of a typical dump is zero pages.
pub fn is_zero_page(page: &[u8]) -> bool {
    let mut chunks = page.chunks_exact(16);
    chunks.all(|c| u128::from_ne_bytes(c.try_into().unwrap_or([1; 16])) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

/// Compresses pages one at a time, reusing codec state. One per thread.
pub struct PageEncoder {
    codec: Codec,
    share_zero: bool,
    zlib: Option<Compress>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    snappy: Option<snap::raw::Encoder>,
    lzo: Option<crate::lzo::Lzo1x1>,
}

impl std::fmt::Debug for PageEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageEncoder").field("codec", &self.codec).field("share_zero", &self.share_zero).finish()
    }
}

impl PageEncoder {
    /// A new encoder. With `share_zero`, all-zero pages encode as [`Encoded::Zero`]
    /// (makedumpfile's dump level bit 1 in the kdump format).
    pub fn new(codec: Codec, share_zero: bool) -> Result<Self> {
        let mut e = PageEncoder { codec, share_zero, zlib: None, zstd: None, snappy: None, lzo: None };
        match codec {
            Codec::None => {}
            Codec::Zlib => e.zlib = Some(Compress::new(Compression::new(1), true)),
            Codec::Zstd => {
                e.zstd = Some(
                    zstd::bulk::Compressor::new(1)
                        .map_err(|err| Error::Compress { codec: "zstd", detail: err.to_string() })?,
                )
            }
            Codec::Lzo => e.lzo = Some(crate::lzo::Lzo1x1::new()),
            Codec::Snappy => e.snappy = Some(snap::raw::Encoder::new()),
        }
        Ok(e)
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Encodes `page` into `out` (cleared first).
    pub fn encode(&mut self, page: &[u8], out: &mut Vec<u8>) -> Result<Encoded> {
        out.clear();
        if self.share_zero && is_zero_page(page) {
            return Ok(Encoded::Zero);
        }
        let n = page.len();
        let ok = match self.codec {
            Codec::None => false,
            Codec::Zlib => {
                let z = self.zlib.as_mut().expect("zlib state exists for Codec::Zlib");
                z.reset();
                out.reserve(n);
                let st = z.compress_vec(page, out, FlushCompress::Finish);
                matches!(st, Ok(Status::StreamEnd)) && out.len() < n
            }
            Codec::Zstd => {
                let z = self.zstd.as_mut().expect("zstd state exists for Codec::Zstd");
                out.reserve(n);
                matches!(z.compress_to_buffer(page, out), Ok(len) if len < n)
            }
            Codec::Snappy => {
                let s = self.snappy.as_mut().expect("snappy state exists for Codec::Snappy");
                out.resize(snap::raw::max_compress_len(n), 0);
                match s.compress(page, out) {
                    Ok(len) => {
                        out.truncate(len);
                        len < n
                    }
                    Err(_) => false,
                }
            }
            Codec::Lzo => {
                // LZO1X-1, what makedumpfile writes (lzo1x_1_compress).
                let l = self.lzo.as_mut().expect("lzo state exists for Codec::Lzo");
                l.compress(page, out);
                out.len() < n
            }
        };
        if ok {
            Ok(Encoded::Compressed { flags: self.codec.flag() })
        } else {
            out.clear();
            out.extend_from_slice(page);
            Ok(Encoded::Raw)
        }
    }
}

/// Decompresses pages, reusing codec state.
pub struct PageDecoder {
    zlib: Decompress,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    snappy: snap::raw::Decoder,
}

impl std::fmt::Debug for PageDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageDecoder").finish_non_exhaustive()
    }
}

impl Default for PageDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl PageDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        PageDecoder { zlib: Decompress::new(true), zstd: None, snappy: snap::raw::Decoder::new() }
    }

    /// Decodes `src` stored with `flags` (one codec bit, or 0 = raw) into `dst`, which must be
    /// filled exactly. `pfn` is only used in error messages.
    pub fn decode(&mut self, pfn: u64, flags: u32, src: &[u8], dst: &mut [u8]) -> Result<()> {
        let codec = Codec::from_flag(flags).ok_or_else(|| Error::Decompress {
            pfn,
            codec: "unknown",
            detail: format!("page_desc.flags {flags:#x} names no single known codec"),
        })?;
        let err = |detail: String| Error::Decompress { pfn, codec: codec.name(), detail };
        match codec {
            Codec::None => {
                if src.len() != dst.len() {
                    return Err(err(format!("raw page has {} bytes, page size is {}", src.len(), dst.len())));
                }
                dst.copy_from_slice(src);
            }
            Codec::Zlib => {
                self.zlib.reset(true);
                let st = self.zlib.decompress(src, dst, FlushDecompress::Finish).map_err(|e| err(e.to_string()))?;
                if st != Status::StreamEnd || self.zlib.total_out() != dst.len() as u64 {
                    return Err(err(format!("produced {} bytes, expected {}", self.zlib.total_out(), dst.len())));
                }
            }
            Codec::Zstd => {
                if self.zstd.is_none() {
                    self.zstd = Some(zstd::bulk::Decompressor::new().map_err(|e| err(e.to_string()))?);
                }
                let z = self.zstd.as_mut().expect("just created");
                let n = z.decompress_to_buffer(src, dst).map_err(|e| err(e.to_string()))?;
                if n != dst.len() {
                    return Err(err(format!("produced {n} bytes, expected {}", dst.len())));
                }
            }
            Codec::Snappy => {
                let n = snap::raw::decompress_len(src).map_err(|e| err(e.to_string()))?;
                if n != dst.len() {
                    return Err(err(format!("would produce {n} bytes, expected {}", dst.len())));
                }
                self.snappy.decompress(src, dst).map_err(|e| err(e.to_string()))?;
            }
            Codec::Lzo => {
                let n = lzo1x_decompress(src, dst).map_err(|e| err(e.to_string()))?;
                if n != dst.len() {
                    return Err(err(format!("produced {n} bytes, expected {}", dst.len())));
                }
            }
        }
        Ok(())
    }
}

/// Decodes one page; see [`PageDecoder::decode`] (which reuses state across pages).
pub fn decompress_page(flags: u32, src: &[u8], dst: &mut [u8]) -> Result<()> {
    PageDecoder::new().decode(0, flags, src, dst)
}

/// Why LZO1X decompression failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LzoError {
    /// The input ended in the middle of an instruction.
    #[error("input overrun")]
    InputOverrun,
    /// The output would exceed the buffer.
    #[error("output overrun")]
    OutputOverrun,
    /// A match refers to bytes before the start of the output.
    #[error("lookbehind overrun")]
    LookbehindOverrun,
    /// Bytes follow the end-of-stream marker.
    #[error("trailing bytes after the end marker")]
    Trailing,
}

/// Bounds-checked LZO1X decompressor (accepts the output of every LZO1X compressor level).
/// Returns the number of bytes written to `out`.
pub fn lzo1x_decompress(input: &[u8], out: &mut [u8]) -> Result<usize, LzoError> {
    struct St<'a> {
        inp: &'a [u8],
        ip: usize,
    }
    impl St<'_> {
        fn byte(&mut self) -> Result<usize, LzoError> {
            let b = *self.inp.get(self.ip).ok_or(LzoError::InputOverrun)?;
            self.ip += 1;
            Ok(usize::from(b))
        }
        /// Length with zero-byte extension: `base + 255*zeros + next`.
        fn ext_len(&mut self, base: usize) -> Result<usize, LzoError> {
            let mut t = 0usize;
            loop {
                let b = self.byte()?;
                if b != 0 {
                    return Ok(t + base + b);
                }
                t += 255;
                if t > 1 << 30 {
                    return Err(LzoError::OutputOverrun);
                }
            }
        }
    }
    fn lits(s: &mut St<'_>, out: &mut [u8], op: &mut usize, n: usize) -> Result<(), LzoError> {
        let src = s.inp.get(s.ip..s.ip + n).ok_or(LzoError::InputOverrun)?;
        let dst = out.get_mut(*op..*op + n).ok_or(LzoError::OutputOverrun)?;
        dst.copy_from_slice(src);
        s.ip += n;
        *op += n;
        Ok(())
    }
    fn copy_match(out: &mut [u8], op: &mut usize, dist: usize, n: usize) -> Result<(), LzoError> {
        if dist == 0 || dist > *op {
            return Err(LzoError::LookbehindOverrun);
        }
        if *op + n > out.len() {
            return Err(LzoError::OutputOverrun);
        }
        let from = *op - dist;
        for i in 0..n {
            out[*op + i] = out[from + i];
        }
        *op += n;
        Ok(())
    }

    let mut s = St { inp: input, ip: 0 };
    let mut op = 0usize;
    // `state` = number of literals copied by the previous instruction (0..=3, or 4 for "4 or more").
    let mut state: usize;
    let first = *input.first().ok_or(LzoError::InputOverrun)? as usize;
    if first > 17 {
        s.ip = 1;
        let n = first - 17;
        lits(&mut s, out, &mut op, n)?;
        state = if n < 4 { n } else { 4 };
    } else {
        state = 0;
    }
    loop {
        let t = s.byte()?;
        if t < 16 {
            match state {
                0 => {
                    // literal run
                    let n = if t == 0 { s.ext_len(15)? } else { t } + 3;
                    lits(&mut s, out, &mut op, n)?;
                    state = 4;
                    continue;
                }
                1..=3 => {
                    // M1: 2-byte match, distance up to 1 KiB
                    let h = s.byte()?;
                    let dist = 1 + (t >> 2) + (h << 2);
                    copy_match(out, &mut op, dist, 2)?;
                }
                _ => {
                    // M1 after a literal run of >= 4: 3-byte match at distance 2049..=3072
                    let h = s.byte()?;
                    let dist = 1 + 0x800 + (t >> 2) + (h << 2);
                    copy_match(out, &mut op, dist, 3)?;
                }
            }
            state = t & 3;
        } else if t >= 64 {
            // M2
            let h = s.byte()?;
            let dist = 1 + ((t >> 2) & 7) + (h << 3);
            let len = (t >> 5) + 1;
            copy_match(out, &mut op, dist, len)?;
            state = t & 3;
        } else if t >= 32 {
            // M3
            let len = if t & 31 == 0 { s.ext_len(31)? } else { t & 31 } + 2;
            let d0 = s.byte()?;
            let d1 = s.byte()?;
            let dist = 1 + (d0 >> 2) + (d1 << 6);
            copy_match(out, &mut op, dist, len)?;
            state = d0 & 3;
        } else {
            // M4 (16..=31), or the end marker
            let len = if t & 7 == 0 { s.ext_len(7)? } else { t & 7 } + 2;
            let d0 = s.byte()?;
            let d1 = s.byte()?;
            let dist = ((t & 8) << 11) + (d0 >> 2) + (d1 << 6);
            if dist == 0 {
                if s.ip != input.len() {
                    return Err(LzoError::Trailing);
                }
                return Ok(op);
            }
            copy_match(out, &mut op, dist + 0x4000, len)?;
            state = d0 & 3;
        }
        if state > 0 {
            let n = state;
            lits(&mut s, out, &mut op, n)?;
        }
    }
}

#[cfg(test)]
mod zero_tests {
    use super::is_zero_page;

    #[test]
    fn zero_page_check() {
        let mut p = vec![0u8; 4099];
        assert!(is_zero_page(&p));
        p[4098] = 1;
        assert!(!is_zero_page(&p));
        p[4098] = 0;
        p[17] = 1;
        assert!(!is_zero_page(&p));
        assert!(is_zero_page(&[]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Vec<Vec<u8>> {
        let mut v = vec![vec![0u8; 4096], vec![0x5a; 4096]];
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        v.push(noise.clone());
        let mut text = Vec::new();
        while text.len() < 4096 {
            text.extend_from_slice(b"the quick brown fox jumps over the lazy dog 0123456789 ");
        }
        text.truncate(4096);
        v.push(text);
        let mut mixed = noise;
        mixed[1000..3000].fill(7);
        v.push(mixed);
        v
    }

    #[test]
    fn all_codecs_roundtrip() {
        for codec in Codec::ALL {
            let mut enc = PageEncoder::new(codec, false).unwrap();
            let mut dec = PageDecoder::new();
            for p in pages() {
                let mut out = Vec::new();
                let e = enc.encode(&p, &mut out).unwrap();
                let flags = match e {
                    Encoded::Raw => 0,
                    Encoded::Compressed { flags } => flags,
                    Encoded::Zero => unreachable!(),
                };
                if codec == Codec::None {
                    assert_eq!(e, Encoded::Raw);
                }
                if e == Encoded::Raw {
                    assert_eq!(out, p);
                } else {
                    assert!(out.len() < p.len());
                }
                let mut back = vec![0u8; 4096];
                dec.decode(1, flags, &out, &mut back).unwrap();
                assert_eq!(back, p, "{codec:?}");
            }
        }
    }

    #[test]
    fn zero_sharing_and_incompressible() {
        let mut enc = PageEncoder::new(Codec::Zlib, true).unwrap();
        let mut out = Vec::new();
        assert_eq!(enc.encode(&[0u8; 4096], &mut out).unwrap(), Encoded::Zero);
        assert!(out.is_empty());
        assert_eq!(enc.encode(&pages()[2], &mut out).unwrap(), Encoded::Raw);
    }

    #[test]
    fn zlib_is_level1_with_header() {
        let mut enc = PageEncoder::new(Codec::Zlib, false).unwrap();
        let mut out = Vec::new();
        enc.encode(&[0x5a; 4096], &mut out).unwrap();
        assert_eq!(out[0], 0x78); // zlib CMF (deflate, 32K window)
        assert_eq!(out[1], 0x01); // FLEVEL 0 = fastest
    }

    #[test]
    fn lzo_hand_made_streams() {
        // 3 literals "abc" (first byte 17+3), then end marker.
        let mut out = [0u8; 16];
        assert_eq!(lzo1x_decompress(&[20, b'a', b'b', b'c', 0x11, 0, 0], &mut out), Ok(3));
        assert_eq!(&out[..3], b"abc");
        // bad input never panics
        for data in [&[][..], &[0], &[0x11], &[0xff; 9], &[20, 1], &[0x40, 0], &[0x20, 0, 0, 0]] {
            assert!(lzo1x_decompress(data, &mut out).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut dec = PageDecoder::new();
        let mut dst = vec![0u8; 4096];
        let mut x = 99u32;
        for len in 0..300usize {
            let src: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            for flags in [0, 1, 2, 4, 0x20, 3, 0x40] {
                let _ = dec.decode(0, flags, &src, &mut dst);
            }
        }
    }
}

#[cfg(test)]
mod send_tests {
    fn is_send<T: Send>() {}

    #[test]
    fn encoders_can_move_to_worker_threads() {
        is_send::<super::PageEncoder>();
        is_send::<super::PageDecoder>();
    }
}
