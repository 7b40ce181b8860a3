//! Timing of `kexec -c`: planning (ELF headers, boot_params, SHA-256 of every segment) and the
//! real purgatory blob verifying the same segments, run in a forked user process on this CPU,
//! once with the SHA-256 code it picks (the SHA extensions when CPUID has them) and once forced
//! to the portable code (`FLAG_PORTABLE_SHA256`).
//!
//! Usage (see scripts/bench-kexec.sh):
//! `cargo run --release -p kexec --example bench_kexec_c -- BZIMAGE INITRD [SYSROOT] [RUNS]`
//!
//! The purgatory runs in ring 3 with its privileged steps (GDT, CR4) off and the backup copy
//! off (the source, physical 0x1000, cannot be mapped in user space); each segment is mapped
//! at its planned physical address, so the blob hashes exactly the bytes and zero tails it
//! would hash after a crash. Its "kernel entry" is a stub that exits with status 42.

use std::time::{Duration, Instant};

use kdump_loader::plan::{CrashMachine, Options, plan_crash_load};
use kdump_purgatory::{Purgatory, Segment};
use kdump_sys::{SysRoot, collect_loader_inputs, collect_machine_info};

std::arch::global_asm!(
    ".pushsection .text.bench_entry, \"ax\", @progbits",
    ".globl bench_kernel_entry",
    "bench_kernel_entry:",
    "mov eax, 231", // exit_group
    "mov edi, 42",
    "syscall",
    "ud2",
    ".popsection",
);

unsafe extern "C" {
    fn bench_kernel_entry();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Maps `len` bytes at exactly `addr` (read/write, or RWX), or dies.
fn map_at(addr: u64, len: u64, exec: bool) -> *mut u8 {
    let prot = libc::PROT_READ | libc::PROT_WRITE | if exec { libc::PROT_EXEC } else { 0 };
    // Populated: the blob must not pay a page fault per zero-tail page in the forked child,
    // which the real purgatory (identity-mapped RAM) does not either.
    let flags = libc::MAP_PRIVATE
        | libc::MAP_ANONYMOUS
        | libc::MAP_POPULATE
        | if addr != 0 { libc::MAP_FIXED_NOREPLACE } else { 0 };
    // SAFETY: an anonymous mapping; MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let p = unsafe { libc::mmap(addr as *mut libc::c_void, len as usize, prot, flags, -1, 0) };
    assert!(p != libc::MAP_FAILED && (addr == 0 || p as u64 == addr), "cannot map {len:#x} bytes at {addr:#x}");
    p.cast()
}

/// Forks; the child runs `f` (which must not return normally) and the parent returns the
/// child's exit status and the wall time from fork to reap.
fn time_child(f: impl FnOnce()) -> (i32, Duration) {
    let start = Instant::now();
    // SAFETY: fork in a single-threaded process; the child only runs `f`, which ends in exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        f();
        // SAFETY: _exit is async-signal-safe and ends the child.
        unsafe { libc::_exit(99) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -libc::WTERMSIG(status) };
    (code, start.elapsed())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kernel_path, initrd_path, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: bench_kexec_c BZIMAGE INITRD [SYSROOT] [RUNS]");
    };
    let sysroot = rest.first().map_or("tests/fixtures/machines/qemu-1g-2cpu-crash256m-la57", String::as_str);
    let runs: usize = rest.get(1).map_or(Ok(7), |r| r.parse())?;
    let root = SysRoot::at(sysroot);
    let info = collect_machine_info(&root)?;
    let inputs = collect_loader_inputs(&root)?;
    let machine = CrashMachine::describe(&info, inputs.memory_map, inputs.kcore.as_ref(), inputs.acpi_rsdp);
    let kernel = std::fs::read(kernel_path)?;
    let initrd = std::fs::read(initrd_path)?;
    let opts = Options {
        cmdline: "console=ttyS0 irqpoll nr_cpus=1 reset_devices".into(),
        elf32: false,
        backup: true,
        memmap_cmdline: false,
        skip_checks: false,
        window: None,
        hotplug: None,
    };

    let mut plan_times = Vec::new();
    let mut plan = None;
    for _ in 0..runs {
        let t = Instant::now();
        plan = Some(plan_crash_load(&machine, &kernel, Some(&initrd), &opts)?);
        plan_times.push(t.elapsed());
    }
    let plan = plan.expect("at least one run");
    let hashed: Vec<_> = plan.segments.iter().filter(|s| s.name != "purgatory").collect();
    let hashed_bytes: u64 = hashed.iter().map(|s| s.memsz.0).sum();
    let segs = || hashed.iter().map(|s| Segment { mem: s.mem.0, buf: &s.buf, memsz: s.memsz.0 });

    let mut hash_times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let p = Purgatory::builtin()?.with_segments(segs());
        std::hint::black_box(p.digest());
        hash_times.push(t.elapsed());
    }

    // The real blob, in ring 3, over the segments mapped at their physical addresses.
    for s in &hashed {
        let p = map_at(s.mem.0, s.memsz.0, false);
        // SAFETY: `p` is a fresh mapping of memsz ≥ buf.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(s.buf.as_ptr(), p, s.buf.len()) };
    }
    let entry = bench_kernel_entry as *const () as u64;
    let run_blob = |flags: u64| -> anyhow::Result<(i32, Duration)> {
        let blob = Purgatory::builtin()?.with_flags(flags).with_entry(entry, 0).with_segments(segs()).patch()?;
        let at = map_at(0, blob.len() as u64, true);
        // SAFETY: `at` is a fresh RWX mapping of blob.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(blob.as_ptr(), at, blob.len()) };
        Ok(time_child(|| {
            // SAFETY: the blob starts with its entry code; it verifies the segments mapped
            // above and jumps to `bench_kernel_entry`, which exits; or it halts (SIGSEGV in
            // ring 3). It never returns here.
            let f: extern "C" fn() = unsafe { std::mem::transmute(at) };
            f();
        }))
    };
    let mut blob_times = Vec::new();
    let mut portable_times = Vec::new();
    let mut skip_times = Vec::new();
    let mut fork_times = Vec::new();
    for _ in 0..runs {
        let (code, d) = run_blob(0)?;
        anyhow::ensure!(code == 42, "the purgatory did not jump to the kernel entry (status {code})");
        blob_times.push(d);
        let (code, d) = run_blob(kdump_purgatory::abi::FLAG_PORTABLE_SHA256)?;
        anyhow::ensure!(code == 42, "the purgatory (portable SHA-256) did not jump (status {code})");
        portable_times.push(d);
        let (code, d) = run_blob(kdump_purgatory::abi::FLAG_SKIP_CHECKS)?;
        anyhow::ensure!(code == 42, "the purgatory (-i) did not jump (status {code})");
        skip_times.push(d);
        fork_times.push(
            time_child(|| {
                // SAFETY: ends the child at once.
                unsafe { libc::_exit(42) }
            })
            .1,
        );
    }
    let (blob, portable, skip, fork) =
        (median(blob_times), median(portable_times), median(skip_times), median(fork_times));
    let picked = kdump_sha256::Backend::detect().name();
    let mib = hashed_bytes as f64 / f64::from(1u32 << 20);
    println!(
        "kernel {kernel_path} ({:.1} MiB), initrd {:.1} MiB, machine {sysroot}",
        kernel.len() as f64 / 1048576.0,
        initrd.len() as f64 / 1048576.0
    );
    println!("segments: {} (hashed: {} , {mib:.1} MiB incl. zero tails)", plan.segments.len(), hashed.len());
    println!("median of {runs} runs:");
    println!("  plan_crash_load (headers, boot_params, purgatory patch + SHA-256): {}", ms(median(plan_times)));
    println!("  SHA-256 of the segments in user space (kdump-sha256):            {}", ms(median(hash_times)));
    println!("  purgatory blob, checks on, {picked:<8} (fork→exit):                {}", ms(blob));
    println!("  purgatory blob, checks on, portable (fork→exit):                {}", ms(portable));
    println!("  purgatory blob, -i (no checks) (fork→exit):                      {}", ms(skip));
    println!("  fork→exit baseline:                                             {}", ms(fork));
    let verify = |t: Duration| t.saturating_sub(skip);
    for (name, t) in [(picked, blob), ("portable", portable)] {
        println!(
            "  => purgatory verification, {name:<8}: {} ({:.0} MiB/s)",
            ms(verify(t)),
            mib / verify(t).as_secs_f64()
        );
    }
    println!("  => {picked} / portable speed-up: {:.1}x", verify(portable).as_secs_f64() / verify(blob).as_secs_f64());
    Ok(())
}
