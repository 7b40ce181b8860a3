//! makedumpfile "flattened" format (`makedumpfile -F`, QEMU `kdump-*` formats).
//!
//! A stream for outputs that cannot seek (pipes, ssh). It starts with a 4096-byte header —
//! `signature[16] = "makedumpfile"` (NUL-padded), `i64 type = 1`, `i64 version = 1`, both
//! big-endian, zero fill — followed by records `{i64 offset; i64 size}` (big-endian) and
//! `size` bytes meaning "these bytes belong at `offset` of the real file". Records may come
//! in any order and overlap (the last one wins). An `offset = size = -1` record ends the
//! stream.
//!
//! [`FlatWriter`] turns any [`KdumpWriter`](crate::KdumpWriter) into a flattened stream,
//! [`FlatReader`] gives random access to a flattened file (it indexes the records) as a
//! `Read + Seek` view of the rebuilt file, and [`rebuild_flattened`] is `makedumpfile -R`.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use zerocopy::big_endian::I64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result, corrupt};
use crate::kdump::WriteAt;
use crate::physmem::{read_at, stream_len};

/// `struct makedumpfile_header`: the start of the 4096-byte stream header (big-endian).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawFlatHeader {
    signature: [u8; 16],
    kind: I64,
    version: I64,
}

/// `struct makedumpfile_data_header`: before each record's bytes (big-endian).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawRecordHeader {
    offset: I64,
    buf_size: I64,
}

const _: () = {
    assert!(size_of::<RawFlatHeader>() == 32);
    assert!(size_of::<RawRecordHeader>() == 16);
};

/// The record that ends a stream.
const END_RECORD: RawRecordHeader = RawRecordHeader { offset: I64::new(-1), buf_size: I64::new(-1) };

/// Size of the flattened header.
pub const FLAT_HEADER_SIZE: usize = 4096;
/// Signature at the start of the header.
pub const FLAT_SIGNATURE: &[u8] = b"makedumpfile";
/// Header `type`.
pub const FLAT_TYPE: i64 = 1;
/// Header `version`.
pub const FLAT_VERSION: i64 = 1;
/// Largest record this crate writes (larger writes are split).
pub const MAX_RECORD: usize = 1 << 20;

/// The flattened-stream header bytes.
pub fn flat_header() -> [u8; FLAT_HEADER_SIZE] {
    let mut raw = RawFlatHeader { signature: [0; 16], kind: FLAT_TYPE.into(), version: FLAT_VERSION.into() };
    raw.signature[..FLAT_SIGNATURE.len()].copy_from_slice(FLAT_SIGNATURE);
    let mut h = [0u8; FLAT_HEADER_SIZE];
    h[..size_of::<RawFlatHeader>()].copy_from_slice(raw.as_bytes());
    h
}

fn check_header(h: &[u8]) -> Result<()> {
    let bad = || Error::BadMagic { expected: "a makedumpfile flattened file", found: h[..h.len().min(16)].to_vec() };
    let (raw, _) = RawFlatHeader::read_from_prefix(h).map_err(|_| bad())?;
    let (name, padding) = raw.signature.split_at(FLAT_SIGNATURE.len());
    if name != FLAT_SIGNATURE || padding.iter().any(|&b| b != 0) {
        return Err(bad());
    }
    let (t, v) = (raw.kind.get(), raw.version.get());
    if t != FLAT_TYPE || v != FLAT_VERSION {
        return Err(Error::Unsupported {
            what: "flattened header",
            detail: format!("type {t}, version {v} (only type 1 version 1 exists)"),
        });
    }
    Ok(())
}

/// Writes a flattened stream: a [`WriteAt`] sink over any `Write`.
#[derive(Debug)]
pub struct FlatWriter<W: Write> {
    inner: W,
}

impl<W: Write> FlatWriter<W> {
    /// Writes the header and returns the sink.
    pub fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(&flat_header())?;
        Ok(FlatWriter { inner })
    }

    /// Writes the end marker, flushes, and gives back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(END_RECORD.as_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> WriteAt for FlatWriter<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut off = offset;
        for chunk in data.chunks(MAX_RECORD) {
            let o = i64::try_from(off).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
            let header = RawRecordHeader { offset: o.into(), buf_size: (chunk.len() as i64).into() };
            self.inner.write_all(header.as_bytes())?;
            self.inner.write_all(chunk)?;
            off += chunk.len() as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads one record header; `Ok(None)` at the end marker.
fn parse_record(h: &[u8; 16], at: u64) -> Result<Option<(u64, u64)>> {
    let raw = RawRecordHeader::read_from_bytes(h).expect("16 bytes, asserted");
    let (off, size) = (raw.offset.get(), raw.buf_size.get());
    if off == -1 && size == -1 {
        return Ok(None);
    }
    if off < 0 || size < 0 || (off as u64).checked_add(size as u64).is_none() {
        return Err(corrupt("flattened record", format!("record at {at}: offset {off}, size {size}")));
    }
    Ok(Some((off as u64, size as u64)))
}

/// Rebuilds a normal file from a flattened stream (`makedumpfile -R`). Returns the size of
/// the rebuilt file. The input is read sequentially; memory use is constant.
pub fn rebuild_flattened<R: Read, W: Write + Seek>(mut input: R, mut output: W) -> Result<u64> {
    let mut h = vec![0u8; FLAT_HEADER_SIZE];
    input.read_exact(&mut h).map_err(|e| eof_to_trunc(e, "flattened header", 0, FLAT_HEADER_SIZE as u64))?;
    check_header(&h)?;
    let mut at = FLAT_HEADER_SIZE as u64;
    let mut end = 0u64;
    loop {
        let mut rh = [0u8; 16];
        input.read_exact(&mut rh).map_err(|e| eof_to_trunc(e, "flattened record header (no end marker)", at, 16))?;
        let Some((off, size)) = parse_record(&rh, at)? else { break };
        output.seek(SeekFrom::Start(off))?;
        let copied = io::copy(&mut (&mut input).take(size), &mut output)?;
        if copied != size {
            return Err(Error::Truncated {
                what: "flattened record data",
                offset: at + 16,
                needed: size,
                len: at + 16 + copied,
            });
        }
        at += 16 + size;
        end = end.max(off + size);
    }
    output.flush()?;
    Ok(end)
}

fn eof_to_trunc(e: io::Error, what: &'static str, offset: u64, needed: u64) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::Truncated { what, offset, needed, len: offset }
    } else {
        Error::Io(e)
    }
}

/// Random access to a flattened file, as a `Read + Seek` view of the rebuilt file.
///
/// Bytes not covered by any record read as zero. Wrap it in
/// [`KdumpReader`](crate::KdumpReader) to read pages in place.
#[derive(Debug)]
pub struct FlatReader<R> {
    inner: R,
    /// logical start -> (logical end, position in the flattened file)
    map: BTreeMap<u64, (u64, u64)>,
    len: u64,
    pos: u64,
    complete: bool,
}

impl<R: Read + Seek> FlatReader<R> {
    /// Indexes a complete flattened file (it must end with the end marker).
    pub fn open(inner: R) -> Result<Self> {
        Self::open_inner(inner, false)
    }

    /// Indexes a flattened file that may have been cut short (no end marker, last record
    /// truncated): uses every complete record. See [`is_complete`](Self::is_complete).
    pub fn open_lenient(inner: R) -> Result<Self> {
        Self::open_inner(inner, true)
    }

    fn open_inner(mut inner: R, lenient: bool) -> Result<Self> {
        let file_len = stream_len(&mut inner)?;
        let mut h = vec![0u8; FLAT_HEADER_SIZE];
        read_at(&mut inner, file_len, 0, &mut h, "flattened header")?;
        check_header(&h)?;
        let mut at = FLAT_HEADER_SIZE as u64;
        let mut map = BTreeMap::new();
        let mut len = 0u64;
        let mut complete = false;
        inner.seek(SeekFrom::Start(at))?;
        loop {
            if at + 16 > file_len {
                if lenient {
                    break;
                }
                return Err(Error::Truncated {
                    what: "flattened stream (no end marker)",
                    offset: at,
                    needed: 16,
                    len: file_len,
                });
            }
            let mut rh = [0u8; 16];
            read_at(&mut inner, file_len, at, &mut rh, "flattened record header")?;
            let Some((off, size)) = parse_record(&rh, at)? else {
                complete = true;
                break;
            };
            if (at + 16).checked_add(size).is_none_or(|e| e > file_len) {
                if lenient {
                    break;
                }
                return Err(Error::Truncated {
                    what: "flattened record data",
                    offset: at + 16,
                    needed: size,
                    len: file_len,
                });
            }
            if size > 0 {
                insert(&mut map, off, off + size, at + 16);
                len = len.max(off + size);
            }
            at += 16 + size;
        }
        Ok(FlatReader { inner, map, len, pos: 0, complete })
    }

    /// Size of the rebuilt file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the rebuilt file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the stream had its end marker.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Number of indexed (non-overlapping) segments.
    pub fn segments(&self) -> usize {
        self.map.len()
    }
}

/// Inserts `[s, e)` at file position `p`, cutting older overlapping segments (last wins).
fn insert(map: &mut BTreeMap<u64, (u64, u64)>, s: u64, e: u64, p: u64) {
    let overlapping: Vec<(u64, (u64, u64))> =
        map.range(..e).rev().take_while(|(_, (ke, _))| *ke > s).map(|(k, v)| (*k, *v)).collect();
    // take_while stops at the first non-overlapping one walking backwards; earlier segments
    // cannot overlap because segments in the map are disjoint and sorted.
    for (ks, (ke, kp)) in overlapping {
        map.remove(&ks);
        if ks < s {
            map.insert(ks, (s, kp));
        }
        if ke > e {
            map.insert(e, (ke, kp + (e - ks)));
        }
    }
    map.insert(s, (e, p));
}

impl<R: Read + Seek> Read for FlatReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.len - self.pos);
        let hit = self.map.range(..=self.pos).next_back().filter(|(_, (e, _))| *e > self.pos).map(|(s, v)| (*s, *v));
        let n = match hit {
            Some((s, (e, p))) => {
                // At most `buf.len()`: it fits.
                let n = usize::try_from(want.min(e - self.pos)).unwrap_or(buf.len());
                self.inner.seek(SeekFrom::Start(p + (self.pos - s)))?;
                self.inner.read_exact(&mut buf[..n])?;
                n
            }
            None => {
                let next = self.map.range(self.pos..).next().map_or(self.len, |(s, _)| *s);
                let n = usize::try_from(want.min(next - self.pos)).unwrap_or(buf.len());
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for FlatReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        self.pos = new;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn header_layout() {
        let h = flat_header();
        assert_eq!(&h[..13], b"makedumpfile\0");
        assert_eq!(&h[16..24], &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&h[24..32], &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(h[32..].iter().all(|&b| b == 0));
    }

    fn stream(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut w = FlatWriter::new(Vec::new()).unwrap();
        for (o, d) in records {
            w.write_at(*o, d).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn record_layout_and_overlap() {
        let s = stream(&[(10, b"hello"), (0, b"abc"), (12, b"XY"), (20, b"")]);
        assert_eq!(&s[4096..4112], &[0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&s[s.len() - 16..], &[0xff; 16]);
        let mut expect = vec![0u8; 15];
        expect[..3].copy_from_slice(b"abc");
        expect[10..15].copy_from_slice(b"heXYo");
        let mut r = FlatReader::open(Cursor::new(s.clone())).unwrap();
        assert!(r.is_complete());
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, expect);
        r.seek(SeekFrom::Start(11)).unwrap();
        let mut two = [0u8; 2];
        r.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"eX");
        let mut out = Cursor::new(Vec::new());
        assert_eq!(rebuild_flattened(Cursor::new(s), &mut out).unwrap(), 15);
        assert_eq!(out.into_inner(), expect);
    }

    #[test]
    fn truncation() {
        let s = stream(&[(0, b"abcdef"), (100, b"xyz")]);
        for cut in 0..s.len() {
            let t = s[..cut].to_vec();
            assert!(FlatReader::open(Cursor::new(t.clone())).is_err(), "cut {cut}");
            assert!(rebuild_flattened(Cursor::new(t.clone()), Cursor::new(Vec::new())).is_err(), "cut {cut}");
            let lenient = FlatReader::open_lenient(Cursor::new(t));
            assert_eq!(lenient.is_ok(), cut >= 4096, "cut {cut}");
        }
        let mut bad = s.clone();
        bad[4096] = 0x80; // negative offset
        assert!(FlatReader::open(Cursor::new(bad)).is_err());
    }

    #[test]
    fn insert_cuts() {
        let mut m = BTreeMap::new();
        insert(&mut m, 0, 100, 1000);
        insert(&mut m, 10, 20, 5000);
        insert(&mut m, 90, 110, 6000);
        insert(&mut m, 5, 15, 7000);
        let v: Vec<_> = m.into_iter().collect();
        assert_eq!(v, vec![(0, (5, 1000)), (5, (15, 7000)), (15, (20, 5005)), (20, (90, 1020)), (90, (110, 6000))]);
    }
}
