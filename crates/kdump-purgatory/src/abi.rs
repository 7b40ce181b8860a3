// SPDX-License-Identifier: GPL-2.0-only
//! The purgatory blob ABI, version 2.
//!
//! This file is `no_std`-clean and free of `unsafe`: it is compiled both into the host crate
//! (`kdump-purgatory`) and, through `#[path]`, into the purgatory itself, so the parameter
//! block layout is defined exactly once.
//!
//! Blob header (little endian, at the start of the flat blob):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | `jmp` to the entry code (padded with `int3`) |
//! | 8 | 8 | magic `b"RSPURG01"` |
//! | 16 | 8 | byte offset of the [`Params`] block inside the blob |
//!
//! The blob is position independent and relocates itself; its in-memory size equals the
//! blob length (stack and data are part of the blob, there is no `.bss`).

/// Magic at [`MAGIC_OFFSET`].
pub const MAGIC: [u8; 8] = *b"RSPURG01";
/// Offset of [`MAGIC`] in the blob.
pub const MAGIC_OFFSET: usize = 8;
/// Offset of the `u64` that holds the offset of the [`Params`] block.
pub const PARAMS_OFFSET_OFFSET: usize = 16;
/// Size of the fixed blob header.
pub const HEADER_LEN: usize = 24;

/// [`Params::version`] understood by this ABI (2: adds [`FLAG_PORTABLE_SHA256`] and
/// [`Params::sha256_backend`]).
pub const PARAMS_VERSION: u32 = 2;
/// Maximum number of hashed regions.
pub const MAX_REGIONS: usize = 16;

/// Set `CR4.OSFXSR | CR4.OSXMMEXCPT` (0x600) before running Rust code, and restore the
/// original CR4 before jumping to the entry. Needed on real hardware: the kernel's
/// `relocate_kernel` leaves CR4 with only PAE (and LA57/MCE) set, so SSE would fault.
/// Privileged: must be clear when the blob runs in ring 3 (tests).
pub const FLAG_ENABLE_SSE: u64 = 1 << 0;
/// Load the blob's own GDT (64-bit code selector 0x10, data selector 0x18) and reload all
/// segment registers. Privileged: must be clear when the blob runs in ring 3 (tests).
pub const FLAG_LOAD_GDT: u64 = 1 << 1;
/// Skip the SHA-256 verification (`kexec -i` / `--no-checks`).
pub const FLAG_SKIP_CHECKS: u64 = 1 << 2;
/// Hash with the portable SHA-256 code even when CPUID reports the SHA extensions (to compare
/// the two, or to rule the SIMD path out when a capture kernel never starts).
pub const FLAG_PORTABLE_SHA256: u64 = 1 << 3;
/// All flags defined by version 2.
pub const FLAGS_KNOWN: u64 = FLAG_ENABLE_SSE | FLAG_LOAD_GDT | FLAG_SKIP_CHECKS | FLAG_PORTABLE_SHA256;

/// [`Params::sha256_backend`]: no hash ran (the loader's value; `SKIP_CHECKS`).
pub const SHA256_BACKEND_NONE: u64 = 0;
/// [`Params::sha256_backend`]: the portable code verified the regions.
pub const SHA256_BACKEND_PORTABLE: u64 = 1;
/// [`Params::sha256_backend`]: the SHA extensions verified the regions.
pub const SHA256_BACKEND_SHA_NI: u64 = 2;

/// One hashed region: `len` bytes at physical address `start`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// Physical start address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The parameter block the loader patches into the blob.
///
/// The purgatory, in order: verifies SHA-256 over `regions[..nr_regions]` (concatenated in
/// order) against `digest` and halts forever on mismatch; copies `backup_len` bytes from
/// `backup_src` to `backup_dst` (skipped when `backup_len == 0`); then jumps to `entry` with
/// `rsi` in `%rsi`, all other general registers zero, and `%rsp` = `stack` (or the
/// purgatory's own stack when `stack == 0`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// [`PARAMS_VERSION`]; the blob ships with it set and halts if it differs.
    pub version: u32,
    /// `size_of::<Params>()`; the blob ships with it set.
    pub size: u32,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// Where to jump (for a bzImage: the 64-bit entry, load address + 0x200).
    pub entry: u64,
    /// Value for `%rsi` (boot_params physical address).
    pub rsi: u64,
    /// Value for `%rsp` at the jump, 0 = keep the purgatory's own stack.
    pub stack: u64,
    /// Source of the backup copy (crash loads: usually 0).
    pub backup_src: u64,
    /// Destination of the backup copy.
    pub backup_dst: u64,
    /// Bytes to copy, 0 = no backup.
    pub backup_len: u64,
    /// Number of valid entries in `regions`.
    pub nr_regions: u64,
    /// Hashed regions.
    pub regions: [Region; MAX_REGIONS],
    /// Expected SHA-256 over all regions in order.
    pub digest: [u8; 32],
    /// Written by the purgatory before it hashes: which code does it (`SHA256_BACKEND_*`).
    /// The loader writes [`SHA256_BACKEND_NONE`]. Lets tests see which path ran.
    pub sha256_backend: u64,
}

impl Params {
    /// An all-zero block with `version` and `size` filled in.
    pub const fn empty() -> Self {
        Self {
            version: PARAMS_VERSION,
            size: PARAMS_SIZE as u32,
            flags: 0,
            entry: 0,
            rsi: 0,
            stack: 0,
            backup_src: 0,
            backup_dst: 0,
            backup_len: 0,
            nr_regions: 0,
            regions: [Region { start: 0, len: 0 }; MAX_REGIONS],
            digest: [0; 32],
            sha256_backend: SHA256_BACKEND_NONE,
        }
    }
}

/// Size of [`Params`] in bytes.
pub const PARAMS_SIZE: usize = core::mem::size_of::<Params>();

// The layout is ABI: pin it.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Params, version) == 0);
    assert!(offset_of!(Params, size) == 4);
    assert!(offset_of!(Params, flags) == 8);
    assert!(offset_of!(Params, entry) == 16);
    assert!(offset_of!(Params, rsi) == 24);
    assert!(offset_of!(Params, stack) == 32);
    assert!(offset_of!(Params, backup_src) == 40);
    assert!(offset_of!(Params, backup_dst) == 48);
    assert!(offset_of!(Params, backup_len) == 56);
    assert!(offset_of!(Params, nr_regions) == 64);
    assert!(offset_of!(Params, regions) == 72);
    assert!(offset_of!(Params, digest) == 72 + 16 * MAX_REGIONS);
    assert!(offset_of!(Params, sha256_backend) == 360);
    assert!(PARAMS_SIZE == 368);
    assert!(core::mem::align_of::<Params>() == 8);
};
