// SPDX-License-Identifier: GPL-2.0-only
//! A compact, dependency-free SHA-256 (FIPS 180-4).
//!
//! This crate is `no_std` and contains no `unsafe`: the same source is compiled into the
//! purgatory blob (which verifies the loaded segments before jumping to the capture kernel)
//! and into the loader (which computes the expected digest), so both sides agree by
//! construction. Tests compare it against the `sha2` crate.

#![no_std]
#![forbid(unsafe_code)]

/// Length of a SHA-256 digest in bytes.
pub const DIGEST_LEN: usize = 32;

const BLOCK_LEN: usize = 64;

const H0: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// Incremental SHA-256 state.
#[derive(Clone, Debug)]
pub struct Sha256 {
    state: [u32; 8],
    buf: [u8; BLOCK_LEN],
    buf_len: usize,
    total_len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// A fresh hasher.
    pub const fn new() -> Self {
        Self { state: H0, buf: [0; BLOCK_LEN], buf_len: 0, total_len: 0 }
    }

    /// Feeds `data` into the hash.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total_len = self.total_len.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (BLOCK_LEN - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < BLOCK_LEN {
                return;
            }
            let block = self.buf;
            compress(&mut self.state, &block);
            self.buf_len = 0;
        }
        let mut blocks = data.chunks_exact(BLOCK_LEN);
        for block in &mut blocks {
            // `chunks_exact` guarantees BLOCK_LEN bytes.
            let block: &[u8; BLOCK_LEN] = block.try_into().unwrap_or(&[0; BLOCK_LEN]);
            compress(&mut self.state, block);
        }
        let rest = blocks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    /// Feeds `count` zero bytes (the zero-filled tail of a segment whose `memsz` exceeds its
    /// buffer) without materialising them.
    pub fn update_zeros(&mut self, mut count: u64) {
        const ZEROS: [u8; 4 * BLOCK_LEN] = [0; 4 * BLOCK_LEN];
        while count > 0 {
            let n = count.min(ZEROS.len() as u64) as usize;
            self.update(&ZEROS[..n]);
            count -= n as u64;
        }
    }

    /// Finishes the hash and returns the digest.
    pub fn finalize(mut self) -> [u8; DIGEST_LEN] {
        let bit_len = self.total_len.wrapping_mul(8);
        let mut pad = [0u8; 2 * BLOCK_LEN];
        pad[0] = 0x80;
        // Pad so that the length field ends exactly on a block boundary.
        let pad_len =
            if self.buf_len < BLOCK_LEN - 8 { BLOCK_LEN - self.buf_len } else { 2 * BLOCK_LEN - self.buf_len };
        pad[pad_len - 8..pad_len].copy_from_slice(&bit_len.to_be_bytes());
        let total = self.total_len;
        self.update(&pad[..pad_len]);
        debug_assert_eq!(self.buf_len, 0);
        self.total_len = total;

        let mut out = [0u8; DIGEST_LEN];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// One-shot SHA-256 of `data`.
pub fn digest(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize()
}

fn compress(state: &mut [u32; 8], block: &[u8; BLOCK_LEN]) {
    let mut w = [0u32; 64];
    for (i, word) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    }
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
    }

    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for i in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use sha2::Digest as _;
    use std::vec::Vec;

    fn reference(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            digest(b""),
            [
                0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27,
                0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
            ]
        );
        assert_eq!(digest(b"abc"), reference(b"abc"));
    }

    #[test]
    fn matches_sha2_for_all_lengths_and_splits() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for len in 0..=300 {
            let d = &data[..len];
            assert_eq!(digest(d), reference(d), "len {len}");
            for split in [0, 1, 7, 55, 56, 63, 64, 65, 128].into_iter().filter(|&s| s <= len) {
                let mut h = Sha256::new();
                h.update(&d[..split]);
                h.update(&d[split..]);
                assert_eq!(h.finalize(), reference(d), "len {len} split {split}");
            }
        }
        assert_eq!(digest(&data), reference(&data));
    }

    #[test]
    fn zeros_match() {
        for (pre, zeros) in [(0usize, 0u64), (3, 1), (10, 64), (100, 1000), (1, 70_000)] {
            let mut h = Sha256::new();
            let prefix: Vec<u8> = (0..pre as u8).collect();
            h.update(&prefix);
            h.update_zeros(zeros);
            let mut full = prefix.clone();
            full.resize(pre + zeros as usize, 0);
            assert_eq!(h.finalize(), reference(&full));
        }
    }
}
