//! Loading a kernel: read and check the inputs, plan, preflight, syscall, verify.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;

use anyhow::{Context, bail};
use kdump_loader::BzImage;
use kdump_loader::cmdline::{self, CmdlineRequest};
use kdump_loader::errno::{Call, allows_fallback, explain, is_signature_error};
use kdump_loader::image::KernelImage;
use kdump_loader::plan::{Options, Plan as LoadPlan};
use kdump_loader::preflight::{LoadCheck, Syscall, check_load};
use kdump_machine::PhysRange;
use kdump_machine::sysfs::{CAP_SYS_BOOT, parse_effective_capabilities, parse_flag};
use kdump_sys::legacy::{LegacyLoad, load_plan, plan_kexec_load};
use kdump_sys::{SysRoot, collect_machine_info, kexec as sys};

use crate::{Args, SyscallChoice};

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// True unless /proc/self/status says CAP_SYS_BOOT is missing. An unreadable
/// status is not held against the caller: the kernel still checks.
fn has_cap_sys_boot(root: &SysRoot) -> bool {
    match root.read_optional("/proc/self/status") {
        Ok(Some(text)) => parse_effective_capabilities(&text).map_or(true, |caps| caps & (1 << CAP_SYS_BOOT) != 0),
        _ => true,
    }
}

/// An address as kexec-tools takes it (`strtoul` base 0): `0x…` hex, `0…` octal, else decimal.
fn parse_address(flag: &str, text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let parsed = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8)
    } else {
        t.parse()
    };
    parsed.with_context(|| format!("{flag}={text:?} is not an address (e.g. 0x30000000 or 805306368)"))
}

/// The `--mem-min`/`--mem-max` bounds, if either is given.
fn segment_window(args: &Args) -> anyhow::Result<Option<PhysRange>> {
    if args.mem_min.is_none() && args.mem_max.is_none() {
        return Ok(None);
    }
    let start = args.mem_min.as_deref().map(|t| parse_address("--mem-min", t)).transpose()?.unwrap_or(0);
    let end = args.mem_max.as_deref().map(|t| parse_address("--mem-max", t)).transpose()?.unwrap_or(u64::MAX);
    if start > end {
        bail!("--mem-min {start:#x} is above --mem-max {end:#x}");
    }
    Ok(Some(PhysRange { start, end }))
}

pub fn load(args: &Args, root: &SysRoot) -> anyhow::Result<()> {
    let what = if args.panic { "capture kernel" } else { "kernel" };
    let kernel_path = args.kernel.as_deref().with_context(|| {
        format!(
            "no {what} image given: e.g. kexec {} /boot/vmlinuz-$(uname -r) --initrd=FILE",
            if args.panic { "-p" } else { "-l" }
        )
    })?;
    let raw = std::fs::read(kernel_path)
        .with_context(|| format!("cannot read the kernel image {}", kernel_path.display()))?;
    let decompressed = kdump_loader::image::decompress(&raw).with_context(|| format!("{}", kernel_path.display()))?;
    let compressed = decompressed.is_some();
    let kernel_bytes = decompressed.unwrap_or(raw);
    let kernel_image =
        KernelImage::parse(&kernel_bytes).with_context(|| format!("{} cannot be loaded", kernel_path.display()))?;
    let image = kernel_image.header();
    let vmlinux = matches!(kernel_image, KernelImage::Vmlinux(_));
    let initrd = match &args.initrd {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot open the initrd {}", path.display()))?;
            let len = file.metadata().with_context(|| format!("cannot stat the initrd {}", path.display()))?.len();
            if !file.metadata()?.is_file() {
                bail!("the initrd {} is not a regular file", path.display());
            }
            Some((path.as_path(), file, len))
        }
        None => None,
    };

    let mut choice = args.syscall();
    if vmlinux {
        // The x86_64 file loader takes bzImages only (ENOEXEC): -a goes on with kexec_load, as
        // kexec-tools does after that refusal.
        match choice {
            SyscallChoice::File => bail!(
                "{} is an ELF vmlinux: kexec_file_load (-s) takes only a bzImage on x86_64; load the vmlinuz-* \
                 from /boot, or use -c (kexec_load) for the vmlinux",
                kernel_path.display()
            ),
            SyscallChoice::Auto => {
                eprintln!(
                    "kexec: {} is an ELF vmlinux, which kexec_file_load does not take: loading it with kexec_load (-c)",
                    kernel_path.display()
                );
                choice = SyscallChoice::Legacy;
            }
            SyscallChoice::Legacy => {}
        }
    } else if compressed {
        // kexec_file_load takes the bzImage file itself; the decompressed bytes go through kexec_load.
        match choice {
            SyscallChoice::File => bail!(
                "{} is compressed: kexec_file_load (-s) takes the bzImage itself; decompress it, or use -c",
                kernel_path.display()
            ),
            SyscallChoice::Auto => {
                eprintln!("kexec: {} is compressed: loading it with kexec_load (-c)", kernel_path.display());
                choice = SyscallChoice::Legacy;
            }
            _ => {}
        }
    }
    let window = segment_window(args)?;
    if window.is_some() {
        // Only kexec_load lets user space choose where segments go.
        match choice {
            SyscallChoice::File => bail!(
                "--mem-min/--mem-max place segments, which only kexec_load (-c) lets user space do: \
                 with kexec_file_load (-s) the kernel places them; drop -s or the bounds"
            ),
            SyscallChoice::Auto => {
                eprintln!("kexec: --mem-min/--mem-max given: loading with kexec_load (-c), which honours them");
                choice = SyscallChoice::Legacy;
            }
            _ => {}
        }
    }
    if args.no_hotplug && args.panic && choice == SyscallChoice::File {
        eprintln!(
            "kexec: --no-hotplug applies to kexec_load (-c): a kernel with crash hotplug always updates \
             kexec_file_load images"
        );
    }
    let machine = collect_machine_info(root).context("cannot read the machine description")?;
    let problems_for = |syscall| {
        check_load(&LoadCheck {
            machine: &machine,
            panic: args.panic,
            syscall,
            image: &image,
            initrd_len: initrd.as_ref().map(|i| i.2),
            cap_sys_boot: has_cap_sys_boot(root),
        })
    };
    let problems = problems_for(if choice == SyscallChoice::Legacy { Syscall::Legacy } else { Syscall::File });

    let reuse = if args.reuse_cmdline {
        Some(root.read("/proc/cmdline").context("--reuse-cmdline needs /proc/cmdline")?)
    } else {
        None
    };
    let request = CmdlineRequest {
        reuse,
        append: args.append.clone(),
        panic: args.panic,
        capture_defaults: !args.no_capture_defaults,
    };
    let line = cmdline::build(&request, usize::try_from(image.cmdline_size).unwrap_or(usize::MAX))?;
    let legacy =
        Legacy { args, root, machine: &machine, kernel: &kernel_bytes, initrd: initrd.as_ref().map(|i| i.0), window };
    if choice == SyscallChoice::Legacy {
        return legacy.load(&line, &problems);
    }
    let flags = if args.panic { sys::KEXEC_FILE_ON_CRASH } else { 0 }
        | if initrd.is_none() { sys::KEXEC_FILE_NO_INITRAMFS } else { 0 };

    if args.dry_run || args.debug {
        let plan = Plan {
            kernel_path,
            image: &image,
            kernel_len: kernel_bytes.len() as u64,
            initrd: initrd.as_ref().map(|(path, _, len)| (*path, *len)),
            cmdline: &line,
            flags,
            auto: choice == SyscallChoice::Auto,
            crash_region: args.panic.then(|| machine.load_crash_region()),
        };
        print!("{}", plan.describe());
    }
    if !problems.is_empty() {
        let mut text = format!("cannot load the {what}:");
        for p in &problems {
            let _ = write!(text, "\n  - {p}");
        }
        bail!(text);
    }
    if args.dry_run {
        return Ok(());
    }

    let kernel = File::open(kernel_path).with_context(|| format!("cannot open {}", kernel_path.display()))?;
    let line = CString::new(line).context("the command line contains a NUL byte")?;
    match sys::kexec_file_load(&kernel, initrd.as_ref().map(|i| &i.1), &line, flags) {
        Ok(()) => {}
        Err(e) if choice == SyscallChoice::Auto && allows_fallback(e) && !is_signature_error(e) => {
            eprintln!(
                "kexec: kexec_file_load refused the {what} ({}); falling back to kexec_load",
                explain(Call::FileLoad, args.panic, e)
            );
            let problems = problems_for(Syscall::Legacy);
            return legacy
                .load(line.to_str().unwrap_or_default(), &problems)
                .with_context(|| format!("kexec_file_load failed first: {}", explain(Call::FileLoad, args.panic, e)));
        }
        Err(e) => bail!("kexec_file_load refused the {what}: {}", explain(Call::FileLoad, args.panic, e)),
    }

    // The kernel said yes; check that it says so in sysfs too.
    let flag = if args.panic { "/sys/kernel/kexec_crash_loaded" } else { "/sys/kernel/kexec_loaded" };
    let loaded = root.read(flag).ok().and_then(|t| parse_flag(flag, &t).ok());
    if loaded != Some(true) {
        bail!("kexec_file_load succeeded but {flag} does not read 1: the {what} is not loaded");
    }
    if args.debug {
        eprintln!("kexec: {what} loaded ({flag} = 1)");
    }
    Ok(())
}

/// The kexec_load back end (`-c`, and `-a` after kexec_file_load refused).
struct Legacy<'a> {
    args: &'a Args,
    root: &'a SysRoot,
    machine: &'a kdump_machine::MachineInfo,
    kernel: &'a [u8],
    initrd: Option<&'a Path>,
    /// `--mem-min`/`--mem-max`.
    window: Option<PhysRange>,
}

impl Legacy<'_> {
    fn load(&self, line: &str, problems: &[kdump_loader::preflight::Problem]) -> anyhow::Result<()> {
        let args = self.args;
        let what = if args.panic { "capture kernel" } else { "kernel" };
        let initrd = match self.initrd {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("cannot read the initrd {}", path.display()))?)
            }
            None => None,
        };
        let hotplug = self.hotplug()?;
        let options = Options {
            cmdline: line.to_string(),
            elf32: args.elf32_core_headers,
            backup: !args.no_backup,
            memmap_cmdline: args.pass_memmap_cmdline,
            skip_checks: args.no_checks,
            window: self.window,
            hotplug,
        };
        let started = std::time::Instant::now();
        let load = LegacyLoad { kernel: self.kernel, initrd: initrd.as_deref(), options, panic: args.panic };
        let plan = plan_kexec_load(self.root, self.machine, &load)
            .with_context(|| format!("cannot plan the kexec_load of the {what}"))?;
        let planned = started.elapsed();
        if args.print_plan {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        }
        if args.dry_run || args.debug {
            print!("{}", describe_legacy(&plan));
        }
        if !problems.is_empty() {
            let mut text = format!("cannot load the {what}:");
            for p in problems {
                let _ = write!(text, "\n  - {p}");
            }
            bail!(text);
        }
        if args.print_plan || args.dry_run {
            return Ok(());
        }
        for w in &plan.machine.warnings {
            eprintln!("kexec: warning: {w}");
        }
        let syscall_start = std::time::Instant::now();
        load_plan(self.root, &plan)?;
        let loaded_in = syscall_start.elapsed();
        if args.debug {
            eprintln!(
                "kexec: {what} ({}) loaded with kexec_load; plan {:.1} ms, syscall {:.1} ms",
                plan.kernel.format,
                planned.as_secs_f64() * 1e3,
                loaded_in.as_secs_f64() * 1e3
            );
        }
        Ok(())
    }
}

impl Legacy<'_> {
    /// `Some(crash_elfcorehdr_size)` when the kernel is to update the headers on hotplug:
    /// panic loads on kernels with crash hotplug, unless --no-hotplug.
    fn hotplug(&self) -> anyhow::Result<Option<u64>> {
        if !self.args.panic || self.args.no_hotplug {
            return Ok(None);
        }
        let support = kdump_sys::crash_hotplug(self.root).context("cannot read the kernel's crash hotplug support")?;
        match support.elfcorehdr_for_load() {
            Some(size) => Ok(Some(size)),
            None => {
                if self.args.hotplug {
                    eprintln!(
                        "kexec: --hotplug: this kernel cannot update a loaded capture kernel on CPU/memory hotplug \
                         (no /sys/kernel/crash_elfcorehdr_size or /sys/devices/system/{{cpu,memory}}/crash_hotplug; \
                         Linux 6.6+ with CONFIG_CRASH_HOTPLUG does): loading without it; reload after hotplug \
                         (kdump reload --if-needed, which packaging/98-kdump-hotplug.rules runs)"
                    );
                }
                Ok(None)
            }
        }
    }
}

fn describe_legacy(plan: &LoadPlan) -> String {
    let mut s = String::new();
    let mut names = vec![];
    if plan.panic {
        names.push("KEXEC_ON_CRASH");
    }
    if let Some(h) = &plan.hotplug {
        names.push(h.flag);
    }
    names.push("KEXEC_ARCH_X86_64");
    let _ = writeln!(s, "syscall:  kexec_load, flags {:#x} ({})", plan.flags.0, names.join(" | "));
    if let Some(h) = &plan.hotplug {
        let _ = writeln!(
            s,
            "hotplug:  the kernel updates the ELF core headers on CPU/memory hotplug ({} reserved for them, \
             not verified by the purgatory)",
            mib(h.elfcorehdr_memsz.0)
        );
    }
    let _ = writeln!(s, "cmdline:  {}", plan.cmdline);
    let _ = writeln!(
        s,
        "entry:    {:#x} (purgatory), then {:#x} with rsi={:#x}",
        plan.entry.0, plan.kernel.entry64.0, plan.boot_params.0
    );
    for seg in &plan.segments {
        let _ = writeln!(
            s,
            "segment:  {:#012x}-{:#012x} {:<12} ({} copied)",
            seg.mem.0,
            seg.mem.0 + seg.memsz.0 - 1,
            seg.name,
            mib(seg.bufsz.0)
        );
    }
    let _ = writeln!(s, "headers:  {} program headers, {} e820 entries", plan.elf_headers.len(), plan.e820.len());
    s
}

/// What a load will do, for `--dry-run` and `-d`.
struct Plan<'a> {
    kernel_path: &'a Path,
    image: &'a BzImage,
    kernel_len: u64,
    initrd: Option<(&'a Path, u64)>,
    cmdline: &'a str,
    flags: u64,
    auto: bool,
    /// For panic loads: the region loaded into, if any.
    crash_region: Option<Option<PhysRange>>,
}

impl Plan<'_> {
    fn describe(&self) -> String {
        let mut s = String::new();
        let version = self.image.version.as_deref().map(|v| format!(", {v}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "image:    {} (bzImage, boot protocol {}, {}, init_size {}{version})",
            self.kernel_path.display(),
            self.image.protocol_string(),
            mib(self.kernel_len),
            mib(u64::from(self.image.init_size)),
        );
        match self.initrd {
            Some((path, len)) => writeln!(s, "initrd:   {} ({})", path.display(), mib(len)),
            None => writeln!(s, "initrd:   none"),
        }
        .ok();
        let _ = writeln!(s, "cmdline:  {}", self.cmdline);
        let _ = writeln!(s, "syscall:  kexec_file_load{}", if self.auto { " (-a)" } else { "" });
        let names: Vec<&str> = [
            (sys::KEXEC_FILE_ON_CRASH, "KEXEC_FILE_ON_CRASH"),
            (sys::KEXEC_FILE_NO_INITRAMFS, "KEXEC_FILE_NO_INITRAMFS"),
        ]
        .iter()
        .filter(|(bit, _)| self.flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
        let _ = writeln!(
            s,
            "flags:    {:#x} ({})",
            self.flags,
            if names.is_empty() { "none".into() } else { names.join(" | ") }
        );
        match self.crash_region {
            Some(Some(r)) => writeln!(s, "target:   crash region {:#x}-{:#x} ({})", r.start, r.end, mib(r.len())),
            Some(None) => writeln!(s, "target:   no crash region reserved"),
            None => Ok(()),
        }
        .ok();
        s
    }
}
