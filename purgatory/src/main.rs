// SPDX-License-Identifier: GPL-2.0-only
//! The Rust purgatory.
//!
//! The kernel's `relocate_kernel` jumps here (64-bit long mode, identity-mapped page tables,
//! interrupts off) after copying the `kexec_load` segments into place. We
//!
//! 1. relocate ourselves (apply the `R_X86_64_RELATIVE` relocations of the static PIE),
//! 2. optionally load our own GDT and reload the segment registers,
//! 3. switch to our own stack, optionally enable SSE,
//! 4. verify SHA-256 over the loaded segments (halt forever on mismatch), with the SHA
//!    extensions when CPUID reports them (SSE is on: step 3 or, in tests, the OS),
//! 5. copy the backup region (crash loads),
//! 6. jump to the capture kernel with `%rsi` = boot_params.
//!
//! The ABI (header, parameter block, flags) is defined in
//! `crates/kdump-purgatory/src/abi.rs`, shared with the loader.

#![no_std]
#![no_main]

#[path = "../../crates/kdump-purgatory/src/abi.rs"]
#[allow(dead_code)]
mod abi;

use abi::{
    FLAG_ENABLE_SSE, FLAG_LOAD_GDT, FLAG_PORTABLE_SHA256, FLAG_SKIP_CHECKS, MAX_REGIONS, PARAMS_SIZE, PARAMS_VERSION,
    Params, SHA256_BACKEND_PORTABLE, SHA256_BACKEND_SHA_NI,
};
use kdump_sha256::{Backend, Sha256};
use core::arch::{asm, global_asm};
use core::mem::offset_of;

/// Size of the purgatory's own stack.
const STACK_SIZE: usize = 4096;
/// `R_X86_64_RELATIVE`.
const R_X86_64_RELATIVE: u32 = 8;
/// `R_X86_64_NONE`.
const R_X86_64_NONE: u32 = 0;
/// `CR4.OSFXSR | CR4.OSXMMEXCPT`.
const CR4_SSE: u32 = 0x600;
/// GDT selectors.
const KERNEL_CS: u32 = 0x10;
const KERNEL_DS: u32 = 0x18;

const _: () = assert!(PARAMS_SIZE.is_multiple_of(8));
const _: () = assert!(abi::MAGIC_OFFSET == 8 && abi::PARAMS_OFFSET_OFFSET == 16);

global_asm!(
    r#"
    .section .text.entry, "awx", @progbits
    .globl purgatory_start
    .type purgatory_start, @function
purgatory_start:
    jmp     .Lentry
    .balign 8, 0xcc
    .ascii  "RSPURG01"
    .quad   purgatory_params - purgatory_start

    /* The parameter block patched by the loader. */
    .balign 8
    .globl purgatory_params
purgatory_params:
    .long   {version}
    .long   {params_size}
    .zero   {params_size} - 8

    /* GDT: null, null, 64-bit code (0x10), data (0x18). */
    .balign 16
.Lgdt:
    .quad   0
    .quad   0
    .quad   0x00af9a000000ffff
    .quad   0x00cf92000000ffff
.Lgdt_end:
    .balign 16
    .word   0
.Lgdtr:
    .word   .Lgdt_end - .Lgdt - 1
.Lgdtr_base:
    .quad   0
.Lsaved_cr4:
    .quad   0

.Lentry:
    cld
    /* %rbx = runtime address of link address 0. */
    leaq    purgatory_start(%rip), %rbx

    /* Self-relocation: *(base + r_offset) = base + r_addend. Idempotent. */
    leaq    __rela_start(%rip), %rcx
    leaq    __rela_end(%rip), %rdx
1:  cmpq    %rdx, %rcx
    jae     3f
    movl    8(%rcx), %eax
    cmpl    ${r_none}, %eax
    je      2f
    cmpl    ${r_relative}, %eax
    jne     .Lhalt
    movq    16(%rcx), %rax
    addq    %rbx, %rax
    movq    (%rcx), %rdi
    movq    %rax, (%rbx, %rdi)
2:  addq    $24, %rcx
    jmp     1b
3:
    leaq    .Lstack_top(%rip), %rsp
    movq    purgatory_params+{off_flags}(%rip), %r12

    testq   ${flag_gdt}, %r12
    jz      4f
    leaq    .Lgdt(%rip), %rax
    movq    %rax, .Lgdtr_base(%rip)
    lgdt    .Lgdtr(%rip)
    movl    ${kernel_ds}, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    movl    %eax, %fs
    movl    %eax, %gs
    leaq    4f(%rip), %rax
    pushq   ${kernel_cs}
    pushq   %rax
    lretq
4:
    testq   ${flag_sse}, %r12
    jz      5f
    movq    %cr4, %rax
    movq    %rax, .Lsaved_cr4(%rip)
    orq     ${cr4_sse}, %rax
    movq    %rax, %cr4
5:
    leaq    purgatory_params(%rip), %rdi
    call    {main}

    /* Verified: restore CR4 and jump to the capture kernel. */
    testq   ${flag_sse}, %r12
    jz      6f
    movq    .Lsaved_cr4(%rip), %rax
    movq    %rax, %cr4
6:
    movq    purgatory_params+{off_stack}(%rip), %rax
    testq   %rax, %rax
    jz      7f
    movq    %rax, %rsp
7:
    movq    purgatory_params+{off_rsi}(%rip), %rsi
    xorl    %eax, %eax
    xorl    %ebx, %ebx
    xorl    %ecx, %ecx
    xorl    %edx, %edx
    xorl    %edi, %edi
    xorl    %ebp, %ebp
    xorl    %r8d, %r8d
    xorl    %r9d, %r9d
    xorl    %r10d, %r10d
    xorl    %r11d, %r11d
    xorl    %r12d, %r12d
    xorl    %r13d, %r13d
    xorl    %r14d, %r14d
    xorl    %r15d, %r15d
    jmp     *purgatory_params+{off_entry}(%rip)

    .globl purgatory_halt
purgatory_halt:
.Lhalt:
    hlt
    jmp     .Lhalt
    .size purgatory_start, . - purgatory_start

    .section .purgatory.stack, "aw", @progbits
    .balign 16
    .zero   {stack_size}
.Lstack_top:
    "#,
    version = const PARAMS_VERSION,
    params_size = const PARAMS_SIZE,
    r_none = const R_X86_64_NONE,
    r_relative = const R_X86_64_RELATIVE,
    off_flags = const offset_of!(Params, flags),
    off_stack = const offset_of!(Params, stack),
    off_rsi = const offset_of!(Params, rsi),
    off_entry = const offset_of!(Params, entry),
    flag_gdt = const FLAG_LOAD_GDT,
    flag_sse = const FLAG_ENABLE_SSE,
    cr4_sse = const CR4_SSE,
    kernel_cs = const KERNEL_CS,
    kernel_ds = const KERNEL_DS,
    stack_size = const STACK_SIZE,
    main = sym purgatory_main,
    options(att_syntax)
);

/// Stops this CPU for good. In ring 3 (tests) `hlt` raises SIGSEGV.
fn halt() -> ! {
    loop {
        // SAFETY: `hlt` only stops the CPU until the next interrupt; it touches no memory.
        unsafe { asm!("hlt", options(nomem, nostack, preserves_flags)) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    halt()
}

/// Constant-time-ish comparison that cannot be turned into a `bcmp` call.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for i in 0..32 {
        // SAFETY: both indices are in bounds of 32-byte arrays.
        diff |= unsafe { core::ptr::read_volatile(&a[i]) ^ core::ptr::read_volatile(&b[i]) };
    }
    diff == 0
}

/// Verifies the segments, copies the backup region, returns to the entry code which jumps
/// to the capture kernel. Never returns when something is wrong.
///
/// # Safety
/// Called once from the entry code with a pointer to the (relocated) parameter block; all
/// physical addresses in it must be identity mapped.
unsafe extern "C" fn purgatory_main(params: *mut Params) {
    // SAFETY: `params` points at `purgatory_params` inside the blob. Volatile: the block is
    // patched by the loader after linking, the compiler must not assume its contents.
    let p = unsafe { core::ptr::read_volatile(params) };
    if p.version != PARAMS_VERSION || p.size as usize != PARAMS_SIZE {
        halt();
    }

    if p.flags & FLAG_SKIP_CHECKS == 0 {
        let n = p.nr_regions;
        if n > MAX_REGIONS as u64 {
            halt();
        }
        // CPUID decides; SSE itself is already on (all Rust code here uses SSE2 registers).
        let mut hash = if p.flags & FLAG_PORTABLE_SHA256 != 0 { Sha256::portable() } else { Sha256::new() };
        let used = match hash.backend() {
            Backend::Portable => SHA256_BACKEND_PORTABLE,
            Backend::ShaNi => SHA256_BACKEND_SHA_NI,
        };
        // SAFETY: `params` points at the blob's own writable parameter block (see above).
        unsafe { core::ptr::write_volatile(&raw mut (*params).sha256_backend, used) };
        for r in &p.regions[..n as usize] {
            if r.len == 0 {
                continue;
            }
            if r.start == 0 || r.start.checked_add(r.len).is_none() || r.len > isize::MAX as u64 {
                halt();
            }
            // SAFETY: the loader placed `len` bytes at physical address `start` (non-null,
            // no wrap-around), identity mapped; nothing else runs on this machine now.
            let bytes = unsafe { core::slice::from_raw_parts(r.start as *const u8, r.len as usize) };
            hash.update(bytes);
        }
        if !digest_eq(&hash.finalize(), &p.digest) {
            halt();
        }
    }

    if p.backup_len != 0 {
        // SAFETY: the loader reserved `backup_len` bytes at `backup_dst` (a segment of its
        // own) and `backup_src` is RAM; `rep movsb` with DF clear (cleared at entry) copies
        // forwards. Done in asm because `backup_src` is normally physical address 0, which
        // Rust's copy functions must not be given.
        unsafe {
            asm!(
                "rep movsb",
                inout("rcx") p.backup_len => _,
                inout("rdi") p.backup_dst => _,
                inout("rsi") p.backup_src => _,
                options(nostack, preserves_flags)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Memory functions the compiler may call; `compiler_builtins` does not provide them on
// x86_64-unknown-linux-gnu. Written so LLVM cannot turn them back into calls to themselves.

/// # Safety
/// Standard C `memcpy` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `n` valid, non-overlapping bytes; DF is clear.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard C `memmove` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // Destination starts before the source or does not overlap it: copy forwards.
        // SAFETY: the caller guarantees `n` valid bytes at both pointers; DF is clear.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    } else {
        // Overlapping with dst > src: copy backwards, then restore DF.
        // SAFETY: as above; the pointers address the last byte of each buffer (n > 0 here).
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 options(nostack));
        }
    }
    dst
}

/// # Safety
/// Standard C `memset` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `n` writable bytes at `dst`; DF is clear.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// Standard C `memcmp` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: the caller guarantees `n` readable bytes at both pointers.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard C `bcmp` contract.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}
