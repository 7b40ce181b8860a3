//! LZO1X-1 compression: the algorithm and output of liblzo's `lzo1x_1_compress`
//! (what makedumpfile's `-l` writes), into a caller's buffer.
//!
//! A capture kernel compresses hundreds of thousands of 4 KiB pages on one
//! CPU. liblzo clears its 32 KiB hash table for every call, which costs more
//! than compressing a typical page; here the table holds positions tagged
//! with a running base, so entries from earlier pages read as empty without
//! being cleared, and the output is byte-identical to a cleared table.
//!
//! Format (LZO1X): a literal run is `0000LLLL` (3+L bytes, L = 0 extended by
//! zero bytes then a remainder), or `17+n` for a first run of n bytes; a match
//! of length 3..8 within 2 KiB is `LLLDDDSS HHHHHHHH`; within 16 KiB
//! `001LLLLL` then `DDDDDDSS DDDDDDDD`; farther `0001HLLL` then the same two
//! bytes. `SS` is the count (0..3) of literals that follow the match. The
//! stream ends with the M4 marker `0x11 0x00 0x00`.

/// Hash bits: liblzo's `D_BITS` for LZO1X-1.
const D_BITS: u32 = 14;
/// Bytes compressed as one block: liblzo's limit, so offsets fit in 16 bits.
const BLOCK: usize = 49152;
const M2_MAX_LEN: usize = 8;
const M2_MAX_OFFSET: usize = 0x0800;
const M3_MAX_LEN: usize = 33;
const M3_MAX_OFFSET: usize = 0x4000;
const M4_MAX_LEN: usize = 9;
const M3_MARKER: u8 = 32;
const M4_MARKER: u8 = 16;

/// The worst-case output for `n` input bytes (liblzo's bound).
pub fn max_compressed_len(n: usize) -> usize {
    n + n / 16 + 64 + 3
}

/// An LZO1X-1 compressor with its hash table, reused across calls.
pub struct Lzo1x1 {
    /// Positions (plus `base`) of the last 4-byte sequence with each hash.
    dict: Vec<u32>,
    /// Added to positions of the current block; entries below it are stale.
    base: u32,
}

impl std::fmt::Debug for Lzo1x1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lzo1x1").finish_non_exhaustive()
    }
}

impl Default for Lzo1x1 {
    fn default() -> Self {
        Self::new()
    }
}

impl Lzo1x1 {
    /// A compressor with an empty table.
    pub fn new() -> Self {
        Self { dict: vec![0; 1 << D_BITS], base: 1 }
    }

    /// Compresses `src` into `out` (cleared first).
    pub fn compress(&mut self, src: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(max_compressed_len(src.len()));
        let mut pos = 0;
        let mut pending = 0; // literals carried into the next block
        let mut left = src.len();
        while left > 20 {
            let len = left.min(BLOCK);
            if (pending + len) >> 5 == 0 {
                break;
            }
            self.next_block(len);
            pending = self.compress_block(src, pos, len, pending, out);
            pos += len;
            left -= len;
        }
        let literals = pending + left;
        if literals > 0 {
            let start = src.len() - literals;
            if out.is_empty() && literals <= 238 {
                out.push(17 + literals as u8);
            } else if literals <= 3 {
                let n = out.len();
                out[n - 2] |= literals as u8;
            } else {
                push_length(out, literals - 3, 15, 0);
            }
            out.extend_from_slice(&src[start..]);
        }
        out.extend_from_slice(&[M4_MARKER | 1, 0, 0]);
    }

    /// Makes every entry stale for a block of `len` bytes: raise the base past
    /// all positions in use, clearing the table only when the counter would wrap.
    fn next_block(&mut self, len: usize) {
        match self.base.checked_add(BLOCK as u32 + 1) {
            Some(next) if next.checked_add(len as u32).is_some() => self.base = next,
            _ => {
                self.dict.fill(0);
                self.base = 1;
            }
        }
    }

    /// One block `src[start..start + len]`; `pending` literals before it are
    /// not yet written. Returns the literals left unwritten at its end.
    fn compress_block(&mut self, src: &[u8], start: usize, len: usize, pending: usize, out: &mut Vec<u8>) -> usize {
        let end = start + len;
        let limit = end - 20;
        // Unwritten literals begin at `lit`; until the block's first match the
        // search skips faster the farther it gets from the block's start.
        let mut lit = start - pending;
        let mut skip_from = start;
        let mut ip = start + 4usize.saturating_sub(pending);
        ip += 1 + ((ip - skip_from) >> 5);
        loop {
            let candidate = loop {
                if ip >= limit {
                    return end - lit;
                }
                let dv = read_u32(src, ip);
                let slot = (0x1824_429d_u32.wrapping_mul(dv) >> (32 - D_BITS)) as usize;
                let entry = self.dict[slot];
                // A stale entry reads as offset 0, as in liblzo's cleared table.
                let offset = if entry >= self.base { (entry - self.base) as usize } else { 0 };
                self.dict[slot] = self.base + (ip - start) as u32;
                let candidate = start + offset;
                if read_u32(src, candidate) == dv {
                    break candidate;
                }
                ip += 1 + ((ip - skip_from) >> 5);
            };

            // The literals before the match.
            let run = ip - lit;
            if run > 0 {
                if run <= 3 {
                    let n = out.len();
                    out[n - 2] |= run as u8;
                } else {
                    push_length(out, run - 3, 15, 0);
                }
                out.extend_from_slice(&src[lit..ip]);
            }

            // The match length, 8 bytes at a time; it may run a little past
            // `limit` (never past the block), as liblzo's does.
            let mut length = 4;
            loop {
                let x = read_u64(src, ip + length) ^ read_u64(src, candidate + length);
                if x != 0 {
                    length += x.trailing_zeros() as usize / 8;
                    break;
                }
                length += 8;
                if ip + length >= limit {
                    break;
                }
            }
            let distance = ip - candidate;
            ip += length;
            lit = ip;
            skip_from = ip;
            push_match(out, length, distance);
        }
    }
}

/// A length field: `marker | (n <= mask ? n : 0)`, then for long ones a zero
/// byte per 255 and the remainder.
fn push_length(out: &mut Vec<u8>, n: usize, mask: usize, marker: u8) {
    if n <= mask {
        out.push(marker | n as u8);
        return;
    }
    out.push(marker);
    let mut rest = n - mask;
    while rest > 255 {
        out.push(0);
        rest -= 255;
    }
    out.push(rest as u8);
}

fn push_match(out: &mut Vec<u8>, length: usize, distance: usize) {
    if length <= M2_MAX_LEN && distance <= M2_MAX_OFFSET {
        let d = distance - 1;
        out.push((((length - 1) << 5) | ((d & 7) << 2)) as u8);
        out.push((d >> 3) as u8);
        return;
    }
    let d = if distance <= M3_MAX_OFFSET {
        push_length(out, length - 2, M3_MAX_LEN - 2, M3_MARKER);
        distance - 1
    } else {
        let d = distance - M3_MAX_OFFSET;
        push_length(out, length - 2, M4_MAX_LEN - 2, M4_MARKER | ((d >> 11) & 8) as u8);
        d
    };
    out.push(((d & 63) << 2) as u8);
    out.push((d >> 6) as u8);
}

fn read_u32(src: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(src[at..at + 4].try_into().unwrap_or_default())
}

fn read_u64(src: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(src[at..at + 8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::lzo1x_decompress;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Pages like a dump's: zero, text, pointer arrays, random, mixtures.
    fn samples() -> Vec<Vec<u8>> {
        let mut s = 0x9e37_79b9_7f4a_7c15;
        let mut out = vec![vec![0u8; 4096], vec![0x5a; 4096], Vec::new(), vec![7], vec![1, 2, 3, 4, 5]];
        out.push(b"the quick brown fox jumps over the lazy dog. ".iter().copied().cycle().take(4096).collect());
        out.push((0..4096).map(|_| xorshift(&mut s) as u8).collect());
        out.push((0..512u64).flat_map(|i| (0xffff_8880_0000_0000 + i * 64).to_le_bytes()).collect());
        for len in [21, 22, 37, 64, 100, 1000, 4095, 4096, 8192, 49152, 49153, 70000, 200_000] {
            let mut v: Vec<u8> = (0..len).map(|_| (xorshift(&mut s) % 4) as u8).collect();
            if len > 200 {
                v[len / 3..len / 2].fill(0);
            }
            out.push(v);
        }
        for _ in 0..200 {
            let len = (xorshift(&mut s) % 9000) as usize;
            let alphabet = 1 + xorshift(&mut s) % 256;
            out.push((0..len).map(|_| (xorshift(&mut s) % alphabet) as u8).collect());
        }
        out
    }

    #[test]
    fn output_is_liblzo_lzo1x_1_byte_for_byte_and_decodes() {
        // The lzo1x crate's level 3 is LZO1X-1 with liblzo's 14 hash bits and a
        // table cleared per call: the reference for identical output.
        let mut lzo = Lzo1x1::new();
        let mut out = Vec::new();
        for (i, page) in samples().iter().enumerate() {
            lzo.compress(page, &mut out);
            let reference = lzo1x::compress(page, lzo1x::CompressLevel::new(3));
            assert!(out == reference, "sample {i} (len {}): output differs from LZO1X-1", page.len());
            let mut back = vec![0u8; page.len()];
            assert_eq!(lzo1x_decompress(&out, &mut back), Ok(page.len()), "sample {i}");
            assert!(&back == page, "sample {i} round trip");
            assert!(out.len() <= max_compressed_len(page.len()));
        }
    }

    #[test]
    fn a_wrapping_base_clears_the_table_and_changes_nothing() {
        let mut lzo = Lzo1x1::new();
        lzo.base = u32::MAX - 70_000;
        let mut out = Vec::new();
        for page in samples().iter().take(30) {
            lzo.compress(page, &mut out);
            assert!(out == lzo1x::compress(page, lzo1x::CompressLevel::new(3)));
        }
        assert!(lzo.base < u32::MAX - 70_000, "the base wrapped and restarted");
    }
}
