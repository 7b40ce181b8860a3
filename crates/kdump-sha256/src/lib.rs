// SPDX-License-Identifier: GPL-2.0-only
//! A compact, dependency-free SHA-256 (FIPS 180-4).
//!
//! This crate is `no_std`: the same source is compiled into the purgatory blob (which verifies
//! the loaded segments before jumping to the capture kernel) and into the loader (which
//! computes the expected digest), so both sides agree by construction. Tests compare it
//! against the `sha2` crate.
//!
//! Two compression functions: portable Rust, and on x86_64 the SHA extensions (SHA-NI), chosen
//! at run time from CPUID ([`Backend::detect`]). The only `unsafe` is in the x86 module.

#![no_std]
#![deny(unsafe_code)]

mod portable;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

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

/// Which compression function a [`Sha256`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Plain Rust, any CPU.
    Portable,
    /// The x86 SHA extensions (`sha256rnds2`/`sha256msg1`/`sha256msg2`) with SSSE3 and
    /// SSE4.1. Needs SSE enabled (`CR4.OSFXSR`), as all x86_64 Rust code does.
    ShaNi,
}

impl Backend {
    /// The fastest backend this CPU supports (CPUID; no OS involved, so it works in the
    /// purgatory).
    pub fn detect() -> Self {
        if Self::ShaNi.is_supported() { Self::ShaNi } else { Self::Portable }
    }

    /// Whether this CPU can run the backend.
    pub fn is_supported(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::ShaNi => x86::sha_ni_supported(),
            #[cfg(not(target_arch = "x86_64"))]
            Self::ShaNi => false,
        }
    }

    /// A short name for messages and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::ShaNi => "sha-ni",
        }
    }
}

/// Incremental SHA-256 state.
#[derive(Clone, Debug)]
pub struct Sha256 {
    /// Invariant: `backend.is_supported()`.
    backend: Backend,
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
    /// A fresh hasher on the fastest backend this CPU supports ([`Backend::detect`]).
    pub fn new() -> Self {
        Self::on(Backend::detect())
    }

    /// A fresh hasher on `backend`, or `None` when this CPU cannot run it.
    pub fn with_backend(backend: Backend) -> Option<Self> {
        backend.is_supported().then(|| Self::on(backend))
    }

    /// A fresh hasher on the portable backend.
    pub const fn portable() -> Self {
        Self::on(Backend::Portable)
    }

    /// The backend this hasher runs.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Callers guarantee `backend.is_supported()`.
    const fn on(backend: Backend) -> Self {
        Self { backend, state: H0, buf: [0; BLOCK_LEN], buf_len: 0, total_len: 0 }
    }

    fn compress_blocks(&mut self, blocks: &[[u8; BLOCK_LEN]]) {
        match self.backend {
            Backend::Portable => portable::compress_blocks(&mut self.state, blocks),
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            // SAFETY: `backend` is `ShaNi` only when `x86::sha_ni_supported()` said the CPU
            // has SHA, SSSE3 and SSE4.1 (the invariant of `Sha256::on`'s callers).
            Backend::ShaNi => unsafe { x86::compress_blocks(&mut self.state, blocks) },
            #[cfg(not(target_arch = "x86_64"))]
            Backend::ShaNi => portable::compress_blocks(&mut self.state, blocks),
        }
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
            self.compress_blocks(&[block]);
            self.buf_len = 0;
        }
        // All whole blocks in one call: SHA-NI keeps the state in registers across them.
        let (blocks, rest) = data.as_chunks::<BLOCK_LEN>();
        self.compress_blocks(blocks);
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    /// Feeds `count` zero bytes (the zero-filled tail of a segment whose `memsz` exceeds its
    /// buffer) without materialising them.
    pub fn update_zeros(&mut self, mut count: u64) {
        const ZEROS: [u8; 64 * BLOCK_LEN] = [0; 64 * BLOCK_LEN];
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use sha2::Digest as _;
    use std::vec::Vec;

    fn reference(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    /// Every backend this CPU runs. SHA-NI is missing only on CPUs without it; the test
    /// `detection_agrees_with_the_kernel` makes sure that is the real reason.
    fn backends() -> Vec<Backend> {
        [Backend::Portable, Backend::ShaNi].into_iter().filter(|b| b.is_supported()).collect()
    }

    fn digest_on(backend: Backend, data: &[u8]) -> [u8; 32] {
        let mut h = Sha256::with_backend(backend).expect("supported backend");
        h.update(data);
        h.finalize()
    }

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn fips_180_2_vectors_on_every_backend() {
        // FIPS 180-2 appendix B (one block, two blocks, one million 'a'), the empty message,
        // and the 896-bit message of the SHA-2 examples (two blocks after padding, 112 bytes).
        let million_a = std::vec![b'a'; 1_000_000];
        let vectors: [(&[u8], &str); 5] = [
            (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
            (
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
            ),
            (&million_a, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
        ];
        for backend in backends() {
            for (msg, want) in vectors {
                assert_eq!(digest_on(backend, msg), hex(want), "{} len {}", backend.name(), msg.len());
            }
            // The million 'a' fed in odd pieces.
            let mut h = Sha256::with_backend(backend).unwrap();
            for piece in million_a.chunks(997) {
                h.update(piece);
            }
            assert_eq!(h.finalize(), hex(vectors[4].1), "{} in pieces", backend.name());
        }
    }

    #[test]
    fn every_backend_matches_sha2_for_all_lengths_and_splits() {
        let data = noise(1000, 1);
        for backend in backends() {
            for len in 0..=300 {
                let d = &data[..len];
                assert_eq!(digest_on(backend, d), reference(d), "{} len {len}", backend.name());
                for split in [0, 1, 7, 55, 56, 63, 64, 65, 128].into_iter().filter(|&s| s <= len) {
                    let mut h = Sha256::with_backend(backend).unwrap();
                    h.update(&d[..split]);
                    h.update(&d[split..]);
                    assert_eq!(h.finalize(), reference(d), "{} len {len} split {split}", backend.name());
                }
            }
            assert_eq!(digest_on(backend, &data), reference(&data));
        }
    }

    #[test]
    fn backends_agree_on_random_lengths_and_pieces() {
        // Multi-block messages, every tail size 0..64 (len % 64 runs through all of them),
        // fed in random pieces so the buffered and the bulk paths interleave.
        let data = noise(80_000, 7);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 16) as usize % n
        };
        for round in 0..256 {
            let len = match round % 4 {
                0 => round / 4,                        // 0..64: every tail size
                1 => 64 * (1 + next(40)) + round % 64, // a few blocks + tail
                2 => 4096 * (1 + next(16)) + next(64), // pages
                _ => 20_000 + next(60_000),            // many blocks
            };
            let msg = &data[..len];
            let want = digest_on(Backend::Portable, msg);
            assert_eq!(want, reference(msg), "portable len {len}");
            for backend in backends() {
                let mut h = Sha256::with_backend(backend).unwrap();
                let mut rest = msg;
                while !rest.is_empty() {
                    let n = (1 + next(3 * BLOCK_LEN)).min(rest.len());
                    let n = if next(4) == 0 { rest.len().min(n * 97) } else { n };
                    h.update(&rest[..n]);
                    rest = &rest[n..];
                }
                assert_eq!(h.finalize(), want, "{} len {len}", backend.name());
            }
        }
    }

    #[test]
    fn zeros_match() {
        for backend in backends() {
            for (pre, zeros) in [(0usize, 0u64), (3, 1), (10, 64), (100, 1000), (1, 70_000), (63, 4096 * 3 + 5)] {
                let mut h = Sha256::with_backend(backend).unwrap();
                let prefix: Vec<u8> = (0..pre as u8).collect();
                h.update(&prefix);
                h.update_zeros(zeros);
                let mut full = prefix.clone();
                full.resize(pre + zeros as usize, 0);
                assert_eq!(h.finalize(), reference(&full), "{} {pre}+{zeros}", backend.name());
            }
        }
    }

    #[test]
    fn new_picks_the_detected_backend() {
        assert_eq!(Sha256::new().backend(), Backend::detect());
        assert_eq!(Sha256::portable().backend(), Backend::Portable);
        assert!(Backend::Portable.is_supported());
        assert_eq!(Sha256::with_backend(Backend::ShaNi).is_some(), Backend::ShaNi.is_supported());
    }

    /// CPUID (ours) against the kernel's view of the same CPU (`sha_ni`, `ssse3`, `sse4_1` in
    /// /proc/cpuinfo), so a detection bug cannot silently test only the portable path.
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn detection_agrees_with_the_kernel() {
        let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else { return };
        let Some(flags) = cpuinfo.lines().find(|l| l.starts_with("flags")) else { return };
        let has = |f: &str| flags.split_whitespace().any(|w| w == f);
        let kernel_says = has("sha_ni") && has("ssse3") && has("sse4_1");
        assert_eq!(Backend::ShaNi.is_supported(), kernel_says, "{flags}");
        std::eprintln!("SHA-NI on this CPU: {kernel_says}");
    }
}
