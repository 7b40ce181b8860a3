// SPDX-License-Identifier: GPL-2.0-only
//! Runs the real purgatory blob in a forked user process.
//!
//! The patched blob is copied to an RWX mapping at a random address, the "segments" live in
//! other mappings, and the "kernel entry" is `purg_test_entry` below. In ring 3 the privileged
//! steps are disabled via the flags; the purgatory's `hlt` raises SIGSEGV, which a signal
//! handler in the child recognises (the faulting instruction is `hlt` inside the blob).
//!
//! Child exit codes: [`JUMPED_OK`] = jumped with the expected `%rsi`, `%rsp` and zeroed
//! registers, and the backup copy is correct; [`HALTED`] = the purgatory halted. The blob's
//! mapping is shared with the parent, which reads back `Params::sha256_backend`: which SHA-256
//! code (portable or SHA extensions) the blob ran.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use kdump_purgatory::abi::{
    FLAG_ENABLE_SSE, FLAG_LOAD_GDT, FLAG_PORTABLE_SHA256, FLAG_SKIP_CHECKS, Params, SHA256_BACKEND_NONE,
    SHA256_BACKEND_PORTABLE, SHA256_BACKEND_SHA_NI,
};
use kdump_purgatory::{BLOB, Purgatory, Segment};
use kdump_sha256::Backend;
use std::sync::atomic::{AtomicU64, Ordering};

const JUMPED_OK: i32 = 42;
const HALTED: i32 = 77;
const BAD_COOKIE: i32 = 10;
const BAD_BACKUP: i32 = 11;
const BAD_RSP: i32 = 12;
const DIRTY_REGS: i32 = 13;
const OTHER_FAULT: i32 = 100; // + signal number

const COOKIE: u64 = 0x5eed_b007_fa11_c0de;

/// What the fake kernel entry checks. `%rsi` points at it (it stands in for boot_params).
#[repr(C)]
struct Ctx {
    cookie: u64,
    backup_src: u64,
    backup_dst: u64,
    backup_len: u64,
    /// 0 = don't check.
    expect_rsp: u64,
}

// The fake kernel entry: checks that every general register except %rsi and %rsp is zero,
// then calls `check_entry(rsi, rsp, or_of_other_regs)` on an aligned stack.
std::arch::global_asm!(
    ".pushsection .text.purg_test_entry, \"ax\", @progbits",
    ".globl purg_test_entry",
    "purg_test_entry:",
    "or rax, rbx",
    "or rax, rcx",
    "or rax, rdx",
    "or rax, rdi",
    "or rax, rbp",
    "or rax, r8",
    "or rax, r9",
    "or rax, r10",
    "or rax, r11",
    "or rax, r12",
    "or rax, r13",
    "or rax, r14",
    "or rax, r15",
    "mov rdx, rax",
    "mov rdi, rsi",
    "mov rsi, rsp",
    "and rsp, -16",
    "call {check}",
    "ud2",
    ".popsection",
    check = sym check_entry,
);

unsafe extern "C" {
    fn purg_test_entry();
}

/// Runs in the child after the purgatory jumped to `purg_test_entry`.
extern "C" fn check_entry(ctx: *const Ctx, rsp: u64, other_regs: u64) -> ! {
    // SAFETY: `ctx` is the test's `Ctx` (inherited through fork) when the purgatory passed the
    // right %rsi; we check the cookie before trusting anything else.
    let ctx = unsafe { &*ctx };
    let code = if ctx.cookie != COOKIE {
        BAD_COOKIE
    } else if other_regs != 0 {
        DIRTY_REGS
    } else if ctx.expect_rsp != 0 && rsp != ctx.expect_rsp {
        BAD_RSP
    } else {
        // SAFETY: the backup ranges are mappings owned by the test, inherited through fork.
        let (src, dst) = unsafe {
            (
                std::slice::from_raw_parts(ctx.backup_src as *const u8, ctx.backup_len as usize),
                std::slice::from_raw_parts(ctx.backup_dst as *const u8, ctx.backup_len as usize),
            )
        };
        if src == dst { JUMPED_OK } else { BAD_BACKUP }
    };
    // SAFETY: terminating the child process.
    unsafe { libc::_exit(code) }
}

static BLOB_LO: AtomicU64 = AtomicU64::new(0);
static BLOB_HI: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_fault(sig: libc::c_int, _info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: SA_SIGINFO handlers get a valid ucontext_t.
    let rip = unsafe { (*(uctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RIP as usize] } as u64;
    let in_blob = (BLOB_LO.load(Ordering::Relaxed)..BLOB_HI.load(Ordering::Relaxed)).contains(&rip);
    // SAFETY: rip is inside the blob mapping (checked first), which is readable.
    let code = if sig == libc::SIGSEGV && in_blob && unsafe { *(rip as *const u8) } == 0xf4 {
        HALTED
    } else {
        OTHER_FAULT + sig
    };
    // SAFETY: terminating the child process.
    unsafe { libc::_exit(code) }
}

/// An anonymous mapping, unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    /// Maps `len` private bytes at a random page-aligned address in the lower half of the
    /// user space.
    fn random(len: usize, prot: libc::c_int) -> Map {
        Self::random_with(len, prot, libc::MAP_PRIVATE)
    }

    /// [`Map::random`], but shared with forked children (the parent sees their writes).
    fn random_shared(len: usize, prot: libc::c_int) -> Map {
        Self::random_with(len, prot, libc::MAP_SHARED)
    }

    fn random_with(len: usize, prot: libc::c_int, sharing: libc::c_int) -> Map {
        for _ in 0..64 {
            let mut r = [0u8; 8];
            // SAFETY: writes 8 bytes into `r`.
            let n = unsafe { libc::getrandom(r.as_mut_ptr().cast(), 8, 0) };
            assert_eq!(n, 8);
            let hint = (u64::from_le_bytes(r) % 0x3fff_0000_0000 + 0x1000_0000) & !0xfff;
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
            let p = unsafe {
                libc::mmap(
                    hint as *mut libc::c_void,
                    len,
                    prot,
                    sharing | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                assert_eq!(p as u64, hint);
                return Map { ptr: p.cast(), len };
            }
        }
        panic!("no random mapping");
    }

    fn addr(&self) -> u64 {
        self.ptr as u64
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` readable and writable bytes owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

const RW: libc::c_int = libc::PROT_READ | libc::PROT_WRITE;
const RWX: libc::c_int = RW | libc::PROT_EXEC;

fn fill_random(buf: &mut [u8]) {
    for chunk in buf.chunks_mut(256) {
        // SAFETY: writes at most chunk.len() bytes into `chunk`.
        let n = unsafe { libc::getrandom(chunk.as_mut_ptr().cast(), chunk.len(), 0) };
        assert_eq!(n, chunk.len() as isize);
    }
}

/// Three "segments" (one with a zero tail), a backup source/destination and a context.
struct Setup {
    segs: Vec<(Map, usize)>, // mapping, buffer length (memsz = mapping length)
    backup_src: Map,
    backup_dst: Map,
    stack: Map,
    ctx: Box<Ctx>,
}

impl Setup {
    fn new() -> Setup {
        let mut segs = Vec::new();
        for (memsz, buflen) in [(0x3000, 0x3000), (0x2000, 0x1234), (0x1000, 0x1000)] {
            let mut m = Map::random(memsz, RW);
            fill_random(&mut m.bytes()[..buflen]);
            segs.push((m, buflen));
        }
        let mut backup_src = Map::random(64 * 1024, RW);
        fill_random(backup_src.bytes());
        let backup_dst = Map::random(64 * 1024, RW);
        let stack = Map::random(0x4000, RW);
        let ctx = Box::new(Ctx {
            cookie: COOKIE,
            backup_src: backup_src.addr(),
            backup_dst: backup_dst.addr(),
            backup_len: 64 * 1024,
            expect_rsp: 0,
        });
        Setup { segs, backup_src, backup_dst, stack, ctx }
    }

    /// The purgatory, patched for ring 3, with the segments as the loader would pass them.
    fn purgatory(&self) -> Purgatory {
        // SAFETY: the mappings are readable and at least `len` bytes long.
        let bufs: Vec<&[u8]> =
            self.segs.iter().map(|(m, len)| unsafe { std::slice::from_raw_parts(m.ptr, *len) }).collect();
        Purgatory::builtin()
            .unwrap()
            .with_flags(0)
            .with_entry(purg_test_entry as *const () as u64, &*self.ctx as *const Ctx as u64)
            .with_backup(self.backup_src.addr(), self.backup_dst.addr(), self.ctx.backup_len)
            .with_segments(self.segs.iter().zip(bufs).map(|((m, _), buf)| Segment {
                mem: m.addr(),
                buf,
                memsz: m.len as u64,
            }))
    }
}

/// Copies `blob` to a fresh random RWX mapping, forks, runs it in the child and returns the
/// child's exit code.
fn run(blob: &[u8]) -> i32 {
    run_reporting(blob).0
}

/// [`run`], plus the `sha256_backend` the blob wrote into its parameter block.
fn run_reporting(blob: &[u8]) -> (i32, u64) {
    let mut map = Map::random_shared(blob.len().next_multiple_of(4096), RWX);
    map.bytes()[..blob.len()].copy_from_slice(blob);
    let mut altstack = Map::random(64 * 1024, RW);
    let (lo, hi, alt) = (map.addr(), map.addr() + map.len as u64, altstack.bytes().as_mut_ptr());

    // SAFETY: fork; the child only calls async-signal-safe functions and then enters the blob.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        BLOB_LO.store(lo, Ordering::Relaxed);
        BLOB_HI.store(hi, Ordering::Relaxed);
        // SAFETY: plain libc calls with valid arguments; the altstack mapping is ours.
        unsafe {
            libc::alarm(20);
            let ss = libc::stack_t { ss_sp: alt.cast(), ss_flags: 0, ss_size: 64 * 1024 };
            libc::sigaltstack(&ss, std::ptr::null_mut());
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            for sig in [libc::SIGSEGV, libc::SIGILL, libc::SIGBUS, libc::SIGTRAP, libc::SIGFPE] {
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        // SAFETY: enters the purgatory, which never returns: it either jumps to
        // `purg_test_entry` (which exits) or halts (SIGSEGV handler exits).
        unsafe { std::arch::asm!("call {blob}", blob = in(reg) lo, options(noreturn)) }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    let params_offset = u64::from_le_bytes(blob[16..24].try_into().unwrap()) as usize;
    let at = params_offset + std::mem::offset_of!(Params, sha256_backend);
    let backend = u64::from_le_bytes(map.bytes()[at..at + 8].try_into().unwrap());
    drop(map);
    drop(altstack);
    if libc::WIFEXITED(status) {
        (libc::WEXITSTATUS(status), backend)
    } else {
        panic!("child died from signal {}", libc::WTERMSIG(status));
    }
}

/// What the blob reports when it picks its own SHA-256 code on this CPU.
fn detected() -> u64 {
    if Backend::ShaNi.is_supported() { SHA256_BACKEND_SHA_NI } else { SHA256_BACKEND_PORTABLE }
}

/// Both verification paths: (flags, the `sha256_backend` the blob must report).
fn sha_paths() -> [(u64, u64); 2] {
    [(0, detected()), (FLAG_PORTABLE_SHA256, SHA256_BACKEND_PORTABLE)]
}

#[test]
fn jumps_with_rsi_after_verifying_and_backup() {
    let s = Setup::new();
    let blob = s.purgatory().patch().unwrap();
    // Several random load addresses exercise the self-relocation.
    for _ in 0..4 {
        assert_eq!(run(&blob), JUMPED_OK);
    }
}

#[test]
fn uses_the_given_stack() {
    let mut s = Setup::new();
    let top = s.stack.addr() + s.stack.len as u64 - 8;
    s.ctx.expect_rsp = top;
    let blob = s.purgatory().with_stack(top).patch().unwrap();
    assert_eq!(run(&blob), JUMPED_OK);
}

#[test]
fn no_backup_when_len_is_zero() {
    let mut s = Setup::new();
    // The check compares zero bytes; also make sure the destination stays untouched.
    let blob = s.purgatory().with_backup(s.backup_src.addr(), s.backup_dst.addr(), 0).patch().unwrap();
    s.ctx.backup_len = 0;
    assert_eq!(run(&blob), JUMPED_OK);
    assert!(s.backup_dst.bytes().iter().all(|&b| b == 0));
}

#[test]
fn halts_when_any_byte_of_any_segment_changes() {
    let mut s = Setup::new();
    for (flags, backend) in sha_paths() {
        let blob = s.purgatory().with_flags(flags).patch().unwrap();
        for i in 0..s.segs.len() {
            let memsz = s.segs[i].0.len;
            // First byte, last buffer byte, last byte of the zero tail.
            let buflen = s.segs[i].1;
            for pos in [0, buflen - 1, memsz - 1] {
                let bytes = s.segs[i].0.bytes();
                bytes[pos] ^= 0x01;
                assert_eq!(run_reporting(&blob), (HALTED, backend), "segment {i} byte {pos:#x} flags {flags:#x}");
                s.segs[i].0.bytes()[pos] ^= 0x01;
            }
        }
        // Restored: jumps again.
        assert_eq!(run_reporting(&blob), (JUMPED_OK, backend));
    }
}

#[test]
fn uses_the_sha_extensions_when_the_cpu_has_them() {
    let s = Setup::new();
    let blob = s.purgatory().patch().unwrap();
    assert_eq!(run_reporting(&blob), (JUMPED_OK, detected()));
    eprintln!("SHA extensions on this CPU: {}", Backend::ShaNi.is_supported());
    let blob = s.purgatory().with_flags(FLAG_PORTABLE_SHA256).patch().unwrap();
    assert_eq!(run_reporting(&blob), (JUMPED_OK, SHA256_BACKEND_PORTABLE));
}

/// Regions of MiBs whose lengths are not multiples of the 64-byte block, so each region
/// boundary falls inside a block: both paths agree with the loader's digest (computed with
/// the portable code here, and checked against `sha2` by the crate's unit tests).
#[test]
fn both_paths_verify_large_regions_with_odd_lengths() {
    let s = Setup::new();
    let lens = [(1 << 20) + 13, 777, (2 << 20) + 63];
    let mut maps: Vec<Map> = lens.iter().map(|&len| Map::random(len + 4096, RW)).collect();
    for m in &mut maps {
        fill_random(m.bytes());
    }
    let digest_of = |maps: &mut [Map]| {
        let mut h = kdump_sha256::Sha256::portable();
        for (m, &len) in maps.iter_mut().zip(&lens) {
            h.update(&m.bytes()[..len]);
        }
        h.finalize()
    };
    for (flags, backend) in sha_paths() {
        let regions: Vec<(u64, &[u8])> = maps
            .iter()
            .zip(&lens)
            // SAFETY: each mapping is longer than its region length.
            .map(|(m, &len)| (m.addr(), unsafe { std::slice::from_raw_parts(m.ptr.cast_const(), len) }))
            .collect();
        let p = s.purgatory().with_flags(flags).with_regions(&regions);
        drop(regions);
        assert_eq!(p.digest(), digest_of(&mut maps));
        let blob = p.patch().unwrap();
        assert_eq!(run_reporting(&blob), (JUMPED_OK, backend), "flags {flags:#x}");
        // The last byte of the middle region, and a byte just past a region (not hashed).
        maps[1].bytes()[776] ^= 0x40;
        assert_eq!(run_reporting(&blob), (HALTED, backend), "flags {flags:#x}");
        maps[1].bytes()[776] ^= 0x40;
        maps[0].bytes()[lens[0]] ^= 0x40;
        assert_eq!(run_reporting(&blob), (JUMPED_OK, backend), "flags {flags:#x}");
    }
}

#[test]
fn halts_on_bad_digest_or_version() {
    let s = Setup::new();
    let p = s.purgatory();
    let off = p.params_offset();
    let good = p.patch().unwrap();

    let mut bad = good.clone();
    bad[off + 72 + 16 * 16 + 31] ^= 0x80; // last digest byte
    assert_eq!(run(&bad), HALTED);

    let mut bad = good.clone();
    bad[off] = 1; // version
    assert_eq!(run(&bad), HALTED);

    let mut bad = good.clone();
    bad[off + 64] = 17; // nr_regions > 16
    assert_eq!(run(&bad), HALTED);
}

#[test]
fn skip_checks_flag_jumps_despite_corruption() {
    let mut s = Setup::new();
    let blob = s.purgatory().with_flags(FLAG_SKIP_CHECKS).patch().unwrap();
    s.segs[1].0.bytes()[5] ^= 0xff;
    assert_eq!(run_reporting(&blob), (JUMPED_OK, SHA256_BACKEND_NONE));
}

#[test]
fn privileged_flags_fault_in_ring3() {
    // Production flags execute privileged instructions (lgdt, mov %cr4), which fault in ring 3
    // with SIGSEGV at a non-hlt instruction: proves the flags reach the entry code.
    let s = Setup::new();
    for flags in [FLAG_LOAD_GDT, FLAG_ENABLE_SSE] {
        let blob = s.purgatory().with_flags(flags).patch().unwrap();
        assert_eq!(run(&blob), OTHER_FAULT + libc::SIGSEGV, "flags {flags:#x}");
    }
}

#[test]
fn blob_is_small_and_self_contained() {
    assert!(BLOB.len() < 16 * 1024, "purgatory grew to {} bytes", BLOB.len());
}

#[test]
fn harness_detects_wrong_rsi_and_bad_backup() {
    // The fake entry must be able to fail, or JUMPED_OK proves nothing.
    let s = Setup::new();
    let wrong = Ctx { cookie: !COOKIE, backup_src: 0, backup_dst: 0, backup_len: 0, expect_rsp: 0 };
    let blob =
        s.purgatory().with_entry(purg_test_entry as *const () as u64, &wrong as *const Ctx as u64).patch().unwrap();
    assert_eq!(run(&blob), BAD_COOKIE);

    // Backup copied from a different source than the entry expects.
    let other = Map::random(64 * 1024, RW);
    let blob = s.purgatory().with_backup(other.addr(), s.backup_dst.addr(), 64 * 1024).patch().unwrap();
    assert_eq!(run(&blob), BAD_BACKUP);
}
