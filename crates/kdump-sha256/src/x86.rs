// SPDX-License-Identifier: GPL-2.0-only
//! The compression function on the x86 SHA extensions (`sha256rnds2`, `sha256msg1`,
//! `sha256msg2`), with SSSE3 for the byte swap and SSE4.1 for the state blend.
//!
//! Only legacy-SSE (non-VEX) encodings are used, so the code needs `CR4.OSFXSR` but not
//! `CR4.OSXSAVE`/XCR0: the purgatory enables exactly that, and every OS does for user space.
//! The state lives in two registers as the instructions want it: `ABEF` and `CDGH`.

use core::arch::x86_64::{
    __cpuid, __cpuid_count, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_extract_epi32, _mm_loadu_si128,
    _mm_set_epi32, _mm_set_epi64x, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi8,
    _mm_shuffle_epi32,
};

use crate::{BLOCK_LEN, K};

/// CPUID leaf 1 ECX: SSSE3.
const LEAF1_ECX_SSSE3: u32 = 1 << 9;
/// CPUID leaf 1 ECX: SSE4.1.
const LEAF1_ECX_SSE41: u32 = 1 << 19;
/// CPUID leaf 7 subleaf 0 EBX: SHA extensions.
const LEAF7_EBX_SHA: u32 = 1 << 29;

/// Whether CPUID reports the SHA extensions and the SSSE3/SSE4.1 instructions this code also
/// uses. (No `std::is_x86_feature_detected!` here: the crate is `no_std`.)
pub(crate) fn sha_ni_supported() -> bool {
    // SAFETY: CPUID exists on every x86_64 CPU and only reads identification registers.
    // (`unused_unsafe`: newer toolchains declare these intrinsics safe.)
    #[allow(unused_unsafe)]
    let (max_leaf, leaf1) = unsafe { (__cpuid(0).eax, __cpuid(1)) };
    if max_leaf < 7 {
        return false;
    }
    // SAFETY: as above; leaf 7 exists (max_leaf >= 7).
    #[allow(unused_unsafe)]
    let leaf7 = unsafe { __cpuid_count(7, 0) };
    leaf1.ecx & LEAF1_ECX_SSSE3 != 0 && leaf1.ecx & LEAF1_ECX_SSE41 != 0 && leaf7.ebx & LEAF7_EBX_SHA != 0
}

/// Compresses `blocks` into `state` with the SHA extensions.
///
/// Callers must have checked [`sha_ni_supported`] (the `target_feature` makes calling this
/// `unsafe` elsewhere).
#[target_feature(enable = "sha,ssse3,sse4.1")]
// The last groups' schedule updates sit in branches that are statically false.
#[allow(unused_assignments)]
pub(crate) fn compress_blocks(state: &mut [u32; 8], blocks: &[[u8; BLOCK_LEN]]) {
    // Big-endian message words: reverse the bytes within each 32-bit lane.
    let byte_swap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
    let s = |i: usize| state[i] as i32;
    let dcba = _mm_set_epi32(s(3), s(2), s(1), s(0));
    let hgfe = _mm_set_epi32(s(7), s(6), s(5), s(4));
    let cdab = _mm_shuffle_epi32::<0xb1>(dcba);
    let efgh = _mm_shuffle_epi32::<0x1b>(hgfe);
    let mut abef = _mm_alignr_epi8::<8>(cdab, efgh);
    let mut cdgh = _mm_blend_epi16::<0xf0>(efgh, cdab);

    for block in blocks {
        let (abef_in, cdgh_in) = (abef, cdgh);
        let load = |i: usize| {
            // SAFETY: `block` is 64 bytes and 16 * i + 16 <= 64 for i < 4; `loadu` has no
            // alignment requirement.
            let raw = unsafe { _mm_loadu_si128(block.as_ptr().add(16 * i).cast()) };
            _mm_shuffle_epi8(raw, byte_swap)
        };
        // Message words 4g..4g+4 of group g live in w[g % 4]; the schedule of later groups is
        // built in place, msg1 three groups ahead and msg2 one group ahead. Written out per
        // group (a macro, not a loop) so every value stays in a register.
        let (mut w0, mut w1, mut w2, mut w3) = (load(0), load(1), load(2), load(3));
        macro_rules! group {
            ($g:literal, $cur:ident, $next:ident, $prev:ident) => {{
                let k = |j: usize| K[4 * $g + j] as i32;
                let wk = _mm_add_epi32($cur, _mm_set_epi32(k(3), k(2), k(1), k(0)));
                cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
                if (3..15).contains(&$g) {
                    // W[t] = msg1-part + W[t-7] (the alignr) + sigma1 (msg2).
                    $next = _mm_sha256msg2_epu32(_mm_add_epi32($next, _mm_alignr_epi8::<4>($cur, $prev)), $cur);
                }
                abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32::<0x0e>(wk));
                if (1..13).contains(&$g) {
                    $prev = _mm_sha256msg1_epu32($prev, $cur);
                }
            }};
        }
        group!(0, w0, w1, w3);
        group!(1, w1, w2, w0);
        group!(2, w2, w3, w1);
        group!(3, w3, w0, w2);
        group!(4, w0, w1, w3);
        group!(5, w1, w2, w0);
        group!(6, w2, w3, w1);
        group!(7, w3, w0, w2);
        group!(8, w0, w1, w3);
        group!(9, w1, w2, w0);
        group!(10, w2, w3, w1);
        group!(11, w3, w0, w2);
        group!(12, w0, w1, w3);
        group!(13, w1, w2, w0);
        group!(14, w2, w3, w1);
        group!(15, w3, w0, w2);
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
    }

    let feba = _mm_shuffle_epi32::<0x1b>(abef);
    let dchg = _mm_shuffle_epi32::<0xb1>(cdgh);
    let dcba = _mm_blend_epi16::<0xf0>(feba, dchg);
    let hgfe = _mm_alignr_epi8::<8>(dchg, feba);
    *state = [
        _mm_extract_epi32::<0>(dcba) as u32,
        _mm_extract_epi32::<1>(dcba) as u32,
        _mm_extract_epi32::<2>(dcba) as u32,
        _mm_extract_epi32::<3>(dcba) as u32,
        _mm_extract_epi32::<0>(hgfe) as u32,
        _mm_extract_epi32::<1>(hgfe) as u32,
        _mm_extract_epi32::<2>(hgfe) as u32,
        _mm_extract_epi32::<3>(hgfe) as u32,
    ];
}
