// SPDX-License-Identifier: GPL-2.0-only
//! The Rust purgatory for `kexec_load`, and a safe API to fill in its parameter block.
//!
//! [`BLOB`] is the flat, position-independent, self-relocating purgatory built from
//! `<workspace>/purgatory` by this crate's build script. The loader places it as one
//! `kexec_load` segment (memsz = `BLOB.len()` rounded up to a page) and passes the address of
//! its first byte as the `kexec_load` entry. Before that, [`Purgatory`] patches the
//! parameter block: where to jump, `%rsi`, the backup copy, and the SHA-256 over the other
//! segments, computed exactly as the purgatory will see them in memory (buffer followed by the
//! zero tail up to `memsz`).
//!
//! ```
//! use kdump_purgatory::{Purgatory, Segment, BLOB};
//! let kernel = vec![0x90u8; 3000];
//! let boot_params = vec![0u8; 4096];
//! let blob = Purgatory::new(BLOB)?
//!     .with_entry(0x0100_0200, 0x9000)
//!     .with_backup(0, 0x0200_0000, 640 * 1024)
//!     .with_segments([
//!         Segment { mem: 0x0100_0000, buf: &kernel, memsz: 0x2000 },
//!         Segment { mem: 0x9000, buf: &boot_params, memsz: 0x1000 },
//!     ])
//!     .patch()?;
//! assert_eq!(blob.len(), BLOB.len());
//! # Ok::<(), kdump_purgatory::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod abi;

use abi::{MAGIC, MAGIC_OFFSET, MAX_REGIONS, PARAMS_OFFSET_OFFSET, PARAMS_SIZE, PARAMS_VERSION, Params, Region};
use core::mem::offset_of;

/// The flat purgatory blob (ABI described in [`abi`]).
pub const BLOB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/purgatory.bin"));

/// Errors from validating a blob or filling its parameter block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The blob is shorter than its header.
    #[error("purgatory blob is too short ({len} bytes)")]
    TooShort {
        /// Blob length.
        len: usize,
    },
    /// The magic at offset 8 is not `RSPURG01`.
    #[error("not a Rust purgatory blob (bad magic)")]
    BadMagic,
    /// The parameter block offset points outside the blob or is misaligned.
    #[error("purgatory parameter block at offset {offset:#x} does not fit in the {len}-byte blob")]
    BadParamsOffset {
        /// Offset read from the header.
        offset: u64,
        /// Blob length.
        len: usize,
    },
    /// The blob's parameter block has another version.
    #[error("purgatory parameter block version {found} is not supported (expected {PARAMS_VERSION})")]
    UnsupportedVersion {
        /// Version found in the blob.
        found: u32,
    },
    /// The blob's parameter block has another size.
    #[error("purgatory parameter block size {found} does not match {PARAMS_SIZE}")]
    ParamsSizeMismatch {
        /// Size found in the blob.
        found: u32,
    },
    /// More than [`MAX_REGIONS`] non-empty segments to hash.
    #[error("too many segments to hash: {count} (the purgatory takes at most {MAX_REGIONS})")]
    TooManyRegions {
        /// Number of non-empty segments given.
        count: usize,
    },
    /// A segment's buffer is longer than its memory size.
    #[error("segment at {mem:#x}: buffer of {buf_len:#x} bytes exceeds memsz {memsz:#x}")]
    BufferExceedsMemsz {
        /// Physical address.
        mem: u64,
        /// Buffer length.
        buf_len: usize,
        /// Memory size.
        memsz: u64,
    },
    /// A segment starts at physical address 0 (the purgatory refuses to hash it).
    #[error("segment of {memsz:#x} bytes at physical address 0 cannot be verified")]
    ZeroAddress {
        /// Memory size.
        memsz: u64,
    },
    /// A segment or the backup range wraps around the address space.
    #[error("range {start:#x} + {len:#x} overflows")]
    Overflow {
        /// Start address.
        start: u64,
        /// Length.
        len: u64,
    },
    /// Backup source and destination overlap.
    #[error("backup source {src:#x} and destination {dst:#x} ({len:#x} bytes) overlap")]
    BackupOverlap {
        /// Source.
        src: u64,
        /// Destination.
        dst: u64,
        /// Length.
        len: u64,
    },
    /// Flag bits this ABI version does not define.
    #[error("unknown purgatory flags {0:#x}")]
    UnknownFlags(u64),
    /// [`Purgatory::with_entry`] was not called (or with 0).
    #[error("purgatory entry point is not set")]
    MissingEntry,
}

/// A `kexec_load` segment as the purgatory will find it in memory: `buf` at physical address
/// `mem`, followed by zeros up to `memsz` (the kernel zero-fills the tail).
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// Physical load address.
    pub mem: u64,
    /// Contents.
    pub buf: &'a [u8],
    /// Size in memory (≥ `buf.len()`).
    pub memsz: u64,
}

/// A purgatory blob plus the parameters to patch into it.
#[derive(Clone, Debug)]
pub struct Purgatory {
    blob: Vec<u8>,
    params_offset: usize,
    params: Params,
    error: Option<Error>,
}

impl Purgatory {
    /// Flags for a real `kexec_load`: enable SSE and load the purgatory's own GDT.
    pub const PRODUCTION_FLAGS: u64 = abi::FLAG_ENABLE_SSE | abi::FLAG_LOAD_GDT;

    /// Validates `blob` (header, parameter block version and size). The parameters start out
    /// empty with [`Self::PRODUCTION_FLAGS`].
    pub fn new(blob: &[u8]) -> Result<Self, Error> {
        if blob.len() < abi::HEADER_LEN {
            return Err(Error::TooShort { len: blob.len() });
        }
        if blob[MAGIC_OFFSET..MAGIC_OFFSET + 8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let offset = read_u64(blob, PARAMS_OFFSET_OFFSET);
        let bad = Error::BadParamsOffset { offset, len: blob.len() };
        let params_offset = usize::try_from(offset).map_err(|_| bad.clone())?;
        if params_offset < abi::HEADER_LEN
            || params_offset % 8 != 0
            || params_offset.checked_add(PARAMS_SIZE).is_none_or(|end| end > blob.len())
        {
            return Err(bad);
        }
        let version = read_u32(blob, params_offset + offset_of!(Params, version));
        if version != PARAMS_VERSION {
            return Err(Error::UnsupportedVersion { found: version });
        }
        let size = read_u32(blob, params_offset + offset_of!(Params, size));
        if size as usize != PARAMS_SIZE {
            return Err(Error::ParamsSizeMismatch { found: size });
        }
        let mut params = Params::empty();
        params.flags = Self::PRODUCTION_FLAGS;
        Ok(Self { blob: blob.to_vec(), params_offset, params, error: None })
    }

    /// [`Purgatory::new`] on the built-in [`BLOB`].
    pub fn builtin() -> Result<Self, Error> {
        Self::new(BLOB)
    }

    /// Offset of the parameter block inside the blob.
    pub fn params_offset(&self) -> usize {
        self.params_offset
    }

    /// The parameters as they will be patched.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Sets the jump target and the value of `%rsi` (boot_params physical address).
    #[must_use]
    pub fn with_entry(mut self, rip: u64, rsi: u64) -> Self {
        self.params.entry = rip;
        self.params.rsi = rsi;
        self
    }

    /// Sets `%rsp` for the jump (0 = the purgatory's own stack).
    #[must_use]
    pub fn with_stack(mut self, rsp: u64) -> Self {
        self.params.stack = rsp;
        self
    }

    /// Copy `len` bytes from `src` to `dst` after verification (crash loads: the first
    /// 640 KiB to the backup segment). `len == 0` disables the copy.
    #[must_use]
    pub fn with_backup(mut self, src: u64, dst: u64, len: u64) -> Self {
        if len != 0 {
            let overflow = |start: u64| start.checked_add(len).is_none().then_some(Error::Overflow { start, len });
            if let Some(e) = overflow(src).or_else(|| overflow(dst)) {
                self.fail(e);
            } else if src < dst + len && dst < src + len {
                self.fail(Error::BackupOverlap { src, dst, len });
            }
        }
        self.params.backup_src = src;
        self.params.backup_dst = dst;
        self.params.backup_len = len;
        self
    }

    /// Replaces the flags (`abi::FLAG_*`). Tests running the blob in ring 3 must clear
    /// [`abi::FLAG_ENABLE_SSE`] and [`abi::FLAG_LOAD_GDT`].
    #[must_use]
    pub fn with_flags(mut self, flags: u64) -> Self {
        if flags & !abi::FLAGS_KNOWN != 0 {
            self.fail(Error::UnknownFlags(flags & !abi::FLAGS_KNOWN));
        }
        self.params.flags = flags;
        self
    }

    /// Sets the regions to verify and their digest from the segments the loader will pass to
    /// `kexec_load` (everything except the purgatory's own segment), in order. Empty segments
    /// are skipped. Replaces any earlier regions.
    #[must_use]
    pub fn with_segments<'a>(mut self, segments: impl IntoIterator<Item = Segment<'a>>) -> Self {
        let mut regions = [Region::default(); MAX_REGIONS];
        let mut count = 0usize;
        let mut hash = kdump_sha256::Sha256::new();
        for seg in segments {
            if let Err(e) = check_segment(&seg) {
                self.fail(e);
                continue;
            }
            if seg.memsz == 0 {
                continue;
            }
            if let Some(r) = regions.get_mut(count) {
                *r = Region { start: seg.mem, len: seg.memsz };
                hash.update(seg.buf);
                hash.update_zeros(seg.memsz - seg.buf.len() as u64);
            }
            count += 1;
        }
        if count > MAX_REGIONS {
            self.fail(Error::TooManyRegions { count });
        }
        self.params.nr_regions = count.min(MAX_REGIONS) as u64;
        self.params.regions = regions;
        self.params.digest = hash.finalize();
        self
    }

    /// [`Self::with_segments`] for `(phys, bytes)` pairs whose memsz is `bytes.len()`.
    #[must_use]
    pub fn with_regions(self, regions: &[(u64, &[u8])]) -> Self {
        self.with_segments(regions.iter().map(|&(mem, buf)| Segment { mem, buf, memsz: buf.len() as u64 }))
    }

    /// The digest over the current regions.
    pub fn digest(&self) -> [u8; 32] {
        self.params.digest
    }

    /// Returns the blob with the parameter block filled in, or the first error any builder
    /// step recorded.
    pub fn patch(&self) -> Result<Vec<u8>, Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.params.entry == 0 {
            return Err(Error::MissingEntry);
        }
        let mut out = self.blob.clone();
        let p = &self.params;
        let block = &mut out[self.params_offset..self.params_offset + PARAMS_SIZE];
        put(block, offset_of!(Params, version), &p.version.to_le_bytes());
        put(block, offset_of!(Params, size), &p.size.to_le_bytes());
        for (off, v) in [
            (offset_of!(Params, flags), p.flags),
            (offset_of!(Params, entry), p.entry),
            (offset_of!(Params, rsi), p.rsi),
            (offset_of!(Params, stack), p.stack),
            (offset_of!(Params, backup_src), p.backup_src),
            (offset_of!(Params, backup_dst), p.backup_dst),
            (offset_of!(Params, backup_len), p.backup_len),
            (offset_of!(Params, nr_regions), p.nr_regions),
        ] {
            put(block, off, &v.to_le_bytes());
        }
        for (i, r) in p.regions.iter().enumerate() {
            let off = offset_of!(Params, regions) + i * size_of::<Region>();
            put(block, off + offset_of!(Region, start), &r.start.to_le_bytes());
            put(block, off + offset_of!(Region, len), &r.len.to_le_bytes());
        }
        put(block, offset_of!(Params, digest), &p.digest);
        put(block, offset_of!(Params, sha256_backend), &p.sha256_backend.to_le_bytes());
        Ok(out)
    }

    fn fail(&mut self, e: Error) {
        self.error.get_or_insert(e);
    }
}

fn check_segment(seg: &Segment<'_>) -> Result<(), Error> {
    if seg.buf.len() as u64 > seg.memsz {
        return Err(Error::BufferExceedsMemsz { mem: seg.mem, buf_len: seg.buf.len(), memsz: seg.memsz });
    }
    if seg.mem.checked_add(seg.memsz).is_none() {
        return Err(Error::Overflow { start: seg.mem, len: seg.memsz });
    }
    if seg.mem == 0 && seg.memsz != 0 {
        return Err(Error::ZeroAddress { memsz: seg.memsz });
    }
    Ok(())
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

fn read_u64(buf: &[u8], off: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_le_bytes(b)
}

fn read_u32(buf: &[u8], off: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn builtin_blob_is_valid() {
        let p = Purgatory::builtin().unwrap();
        assert_eq!(&BLOB[8..16], b"RSPURG01");
        assert_eq!(p.params_offset(), read_u64(BLOB, 16) as usize);
        // A jmp (rel8 or rel32) at offset 0.
        assert!(matches!(BLOB[0], 0xeb | 0xe9));
    }

    #[test]
    fn digest_covers_buffers_and_zero_tails_in_order() {
        let a: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let b = vec![7u8; 100];
        let p = Purgatory::builtin().unwrap().with_segments([
            Segment { mem: 0x10_0000, buf: &a, memsz: 0x2000 },
            Segment { mem: 0x20_0000, buf: &[], memsz: 0 },
            Segment { mem: 0x30_0000, buf: &b, memsz: 0x1000 },
        ]);
        let mut all = a.clone();
        all.resize(0x2000, 0);
        all.extend_from_slice(&b);
        all.resize(0x3000, 0);
        let expect: [u8; 32] = sha2::Sha256::digest(&all).into();
        assert_eq!(p.digest(), expect);
        assert_eq!(p.params().nr_regions, 2);
        assert_eq!(p.params().regions[1], Region { start: 0x30_0000, len: 0x1000 });
    }

    #[test]
    fn patch_writes_the_block() {
        let data = [1u8, 2, 3];
        let p = Purgatory::builtin()
            .unwrap()
            .with_entry(0x1234_5000, 0x9000)
            .with_stack(0x8000)
            .with_backup(0, 0x100_0000, 0xa0000)
            .with_regions(&[(0x4000, &data)]);
        let out = p.patch().unwrap();
        let base = p.params_offset();
        assert_eq!(out.len(), BLOB.len());
        assert_eq!(out[..base], BLOB[..base]);
        assert_eq!(out[base + PARAMS_SIZE..], BLOB[base + PARAMS_SIZE..]);
        assert_eq!(read_u64(&out, base + 8), Purgatory::PRODUCTION_FLAGS);
        assert_eq!(read_u64(&out, base + 16), 0x1234_5000);
        assert_eq!(read_u64(&out, base + 24), 0x9000);
        assert_eq!(read_u64(&out, base + 32), 0x8000);
        assert_eq!(read_u64(&out, base + 48), 0x100_0000);
        assert_eq!(read_u64(&out, base + 56), 0xa0000);
        assert_eq!(read_u64(&out, base + 64), 1);
        assert_eq!(read_u64(&out, base + 72), 0x4000);
        assert_eq!(read_u64(&out, base + 80), 3);
        let expect: [u8; 32] = sha2::Sha256::digest(data).into();
        assert_eq!(out[base + 72 + 256..base + 72 + 256 + 32], expect);
    }

    #[test]
    fn errors() {
        let p = || Purgatory::builtin().unwrap().with_entry(0x1000, 0);
        let buf = [0u8; 1];
        let many: Vec<Segment<'_>> = (0..17).map(|i| Segment { mem: 0x1000 * (i + 1), buf: &buf, memsz: 1 }).collect();
        assert_eq!(p().with_segments(many).patch(), Err(Error::TooManyRegions { count: 17 }));
        assert_eq!(
            p().with_segments([Segment { mem: 0x1000, buf: &[0; 2], memsz: 1 }]).patch(),
            Err(Error::BufferExceedsMemsz { mem: 0x1000, buf_len: 2, memsz: 1 })
        );
        assert_eq!(p().with_regions(&[(0, &buf)]).patch(), Err(Error::ZeroAddress { memsz: 1 }));
        assert_eq!(
            p().with_segments([Segment { mem: u64::MAX, buf: &[], memsz: 2 }]).patch(),
            Err(Error::Overflow { start: u64::MAX, len: 2 })
        );
        assert_eq!(
            p().with_backup(0, 0x1000, 0x2000).patch(),
            Err(Error::BackupOverlap { src: 0, dst: 0x1000, len: 0x2000 })
        );
        assert_eq!(p().with_flags(1 << 40).patch(), Err(Error::UnknownFlags(1 << 40)));
        assert_eq!(Purgatory::builtin().unwrap().patch(), Err(Error::MissingEntry));
        assert!(p().with_backup(0, 0xa0000, 0xa0000).patch().is_ok());

        assert_eq!(Purgatory::new(&BLOB[..10]).err(), Some(Error::TooShort { len: 10 }));
        let mut bad = BLOB.to_vec();
        bad[8] = b'X';
        assert_eq!(Purgatory::new(&bad).err(), Some(Error::BadMagic));
        let mut bad = BLOB.to_vec();
        bad[16..24].copy_from_slice(&(BLOB.len() as u64).to_le_bytes());
        assert!(matches!(Purgatory::new(&bad), Err(Error::BadParamsOffset { .. })));
        let mut bad = BLOB.to_vec();
        let off = read_u64(BLOB, 16) as usize;
        bad[off] = 1; // version 1 had no sha256_backend field
        assert_eq!(Purgatory::new(&bad).err(), Some(Error::UnsupportedVersion { found: 1 }));
        let mut bad = BLOB.to_vec();
        bad[off + 4] = 1;
        assert!(matches!(Purgatory::new(&bad), Err(Error::ParamsSizeMismatch { .. })));
    }
}
