//! `kexec`: kexec-tools' command line over our planner and syscall layer.
//!
//! Actions follow kexec-tools: `-l` load, `-p` load a capture kernel, `-u`
//! unload, `-e` reboot into the loaded kernel, `-f` load and reboot now,
//! `-S` status; a kernel with no action loads it and runs `shutdown -r now`.
#![forbid(unsafe_code)]

mod load;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgAction, Parser};
use kdump_loader::errno::{Call, explain};
use kdump_sys::{SysRoot, collect_machine_info, kexec as sys};

pub use kdump_loader::choice::SyscallChoice;

#[derive(Debug, Parser)]
#[command(
    name = "kexec",
    version,
    about = "Load a kernel to boot without firmware, or a capture kernel for panics (kexec-tools compatible)",
    disable_version_flag = true,
    long_about = None,
    after_help = "Panic loads (-p) add `irqpoll nr_cpus=1 reset_devices` to the command line unless given \
                  (or --no-capture-defaults).\n-S exits 1 when the kernel is loaded, 0 when not (kexec-tools' convention)."
)]
/// kexec-tools' command line.
pub struct Args {
    /// Print kexec(8), the man page of this command line, and exit (for packagers).
    #[arg(long = "man-page", hide = true)]
    pub man_page: bool,
    /// Load the kernel for a later `kexec -e`.
    #[arg(short = 'l', long = "load")]
    pub load: bool,
    /// Load a capture kernel, started on panic.
    #[arg(short = 'p', long = "load-panic")]
    pub panic: bool,
    /// Unload the kernel (with -p: the capture kernel).
    #[arg(short = 'u', long = "unload")]
    pub unload: bool,
    /// Reboot into the loaded kernel now.
    #[arg(short = 'e', long = "exec")]
    pub exec: bool,
    /// Load and reboot into it at once, without shutdown.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Print whether a capture kernel is loaded; exit 1 if it is, 0 if not.
    #[arg(short = 'S', long = "status")]
    pub status: bool,
    /// Use kexec_file_load only.
    #[arg(short = 's', long = "kexec-file-syscall")]
    pub file_syscall: bool,
    /// Use kexec_load only.
    #[arg(short = 'c', long = "kexec-syscall")]
    pub legacy_syscall: bool,
    /// Use kexec_file_load, falling back to kexec_load (the default).
    #[arg(short = 'a', long = "kexec-syscall-auto")]
    pub auto_syscall: bool,
    /// Do not take network interfaces down before -e/-f.
    #[arg(short = 'x', long = "no-ifdown")]
    pub no_ifdown: bool,
    /// Do not sync filesystems before -e/-f.
    #[arg(short = 'y', long = "no-sync")]
    pub no_sync: bool,
    /// Print what is decided and done.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Skip the purgatory's checksum (kexec_load only).
    #[arg(short = 'i', long = "no-checks")]
    pub no_checks: bool,
    /// Kernel image type (accepted for compatibility; the type is detected).
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub image_type: Option<String>,
    /// Initial ramdisk for the new kernel.
    #[arg(long = "initrd", visible_alias = "ramdisk", value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Text for the new kernel's command line (repeatable; `--command-line` is the same).
    #[arg(long = "append", visible_alias = "command-line", value_name = "STRING", allow_hyphen_values = true)]
    pub append: Vec<String>,
    /// Start from the running kernel's command line (without BOOT_IMAGE=, and crashkernel= for -p).
    #[arg(long = "reuse-cmdline")]
    pub reuse_cmdline: bool,
    /// Do not add `irqpoll nr_cpus=1 reset_devices` to panic loads.
    #[arg(long = "no-capture-defaults")]
    pub no_capture_defaults: bool,
    /// kexec_load (-c): print every segment, the entry, e820 map and ELF core headers as JSON; load nothing.
    #[arg(long = "print-plan")]
    pub print_plan: bool,
    /// kexec_load (-c): do not copy the first 640 KiB to a backup segment.
    #[arg(long = "no-backup")]
    pub no_backup: bool,
    /// kexec_load (-c): write ELF32 core headers (every address must be below 4 GiB).
    #[arg(long = "elf32-core-headers")]
    pub elf32_core_headers: bool,
    /// kexec_load (-c): pass the memory map as `memmap=exactmap memmap=…` on the command line too.
    #[arg(long = "pass-memmap-cmdline")]
    pub pass_memmap_cmdline: bool,
    /// Panic loads: let the kernel update the ELF core headers on CPU/memory hotplug (Linux 6.6+).
    /// On by default where the kernel supports it; kexec_file_load (-s) images always are.
    #[arg(long = "hotplug", overrides_with = "no_hotplug")]
    pub hotplug: bool,
    /// kexec_load (-c): do not let the kernel update the headers; reload after hotplug instead.
    #[arg(long = "no-hotplug", overrides_with = "hotplug")]
    pub no_hotplug: bool,
    /// Print the decided image, initrd, command line, syscall and flags; load nothing (with -u:
    /// what would be unloaded, and how).
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print the size of the crash region in bytes.
    #[arg(long = "print-ckr-size")]
    pub print_ckr_size: bool,
    /// Lowest address for segments (kexec_load: -a switches to it); hex (0x…) or decimal.
    #[arg(long = "mem-min", value_name = "ADDR")]
    pub mem_min: Option<String>,
    /// Highest address for segments (kexec_load: -a switches to it); hex (0x…) or decimal.
    #[arg(long = "mem-max", value_name = "ADDR")]
    pub mem_max: Option<String>,
    /// kexec_load (-c): ELF64 core headers (the default; for command lines that name it).
    #[arg(long = "elf64-core-headers", conflicts_with = "elf32_core_headers")]
    pub elf64_core_headers: bool,
    /// Accepted for kexec-tools' command lines: our purgatory prints nothing, on any console.
    #[arg(long = "console-vga")]
    pub console_vga: bool,
    /// Accepted for kexec-tools' command lines: our purgatory prints nothing, on any console.
    #[arg(long = "console-serial")]
    pub console_serial: bool,
    /// Accepted for kexec-tools' command lines (the purgatory's serial port): no effect.
    #[arg(long = "serial", value_name = "PORT")]
    pub serial: Option<String>,
    /// Accepted for kexec-tools' command lines (the purgatory's serial speed): no effect.
    #[arg(long = "serial-baud", value_name = "BAUD")]
    pub serial_baud: Option<String>,
    /// Not supported (refused with the reason): reuse the initrd the running kernel kept.
    #[arg(long = "reuse-initrd")]
    pub reuse_initrd: bool,
    /// Not supported (refused with the reason): kexec jump.
    #[arg(long = "load-preserve-context")]
    pub load_preserve_context: bool,
    /// Not supported (refused with the reason): kexec jump back.
    #[arg(long = "load-jump-back-helper")]
    pub load_jump_back_helper: bool,
    /// Not supported (refused with the reason): a custom entry point.
    #[arg(long = "entry", value_name = "ADDR")]
    pub entry: Option<String>,
    /// Not supported (refused with the reason): entering the kernel in real mode.
    #[arg(long = "real-mode")]
    pub real_mode: bool,
    /// Read /proc and /sys under this directory (testing).
    #[arg(long = "sysroot", value_name = "DIR", hide = true, default_value = "/")]
    pub sysroot: PathBuf,
    /// Print the version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,
    /// The kernel image: a bzImage; kexec_load (-c) also takes a compressed one or an ELF vmlinux.
    pub kernel: Option<PathBuf>,
}

impl Args {
    /// Which load syscall the flags ask for.
    pub fn syscall(&self) -> SyscallChoice {
        if self.legacy_syscall || self.print_plan {
            SyscallChoice::Legacy
        } else if self.file_syscall {
            SyscallChoice::File
        } else {
            SyscallChoice::Auto
        }
    }
}

/// What kexec-tools would do with this combination of options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Status,
    PrintCrashSize,
    Unload,
    Load,
    Exec,
    LoadAndExec,
    LoadAndShutdown,
}

fn action(args: &Args) -> anyhow::Result<Action> {
    if args.print_ckr_size {
        return Ok(Action::PrintCrashSize);
    }
    if args.status {
        return Ok(Action::Status);
    }
    let chosen = [args.unload, args.exec, args.force, args.load].iter().filter(|&&b| b).count();
    if chosen > 1 {
        bail!("choose one of -l, -u, -e and -f");
    }
    if args.panic && (args.exec || args.force) {
        bail!("-p loads a capture kernel for panics; it cannot be combined with -e or -f");
    }
    Ok(if args.unload {
        Action::Unload
    } else if args.exec {
        Action::Exec
    } else if args.force {
        Action::LoadAndExec
    } else if args.load || args.panic {
        Action::Load
    } else {
        Action::LoadAndShutdown
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.man_page {
        // Into a buffer first: a closed pipe is not worth a panic.
        let mut page = Vec::new();
        let man = clap_mangen::Man::new(<Args as clap::CommandFactory>::command()).section("8");
        return match man.render(&mut page).and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &page)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kexec: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("kexec: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// kexec-tools options this kexec refuses, each with the reason and what to do instead.
fn refused_option(args: &Args) -> Option<&'static str> {
    if args.reuse_initrd {
        return Some(
            "--reuse-initrd is not supported: it reuses an initrd the running kernel kept (retain_initrd), which \
             this kexec does not read; pass the file with --initrd",
        );
    }
    if args.load_preserve_context || args.load_jump_back_helper {
        return Some(
            "--load-preserve-context and --load-jump-back-helper (kexec jump, CONFIG_KEXEC_JUMP) are not supported: \
             use -l and -e for a reboot, -p for a capture kernel",
        );
    }
    if args.entry.is_some() {
        return Some(
            "--entry is not supported: the entry is the kernel's own 64-bit entry (or the purgatory's for -c)",
        );
    }
    if args.real_mode {
        return Some("--real-mode is not supported: the kernel is entered at its 64-bit entry (boot protocol 2.12+)");
    }
    None
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(why) = refused_option(args) {
        bail!("{why}");
    }
    if args.console_vga || args.console_serial || args.serial.is_some() || args.serial_baud.is_some() {
        eprintln!(
            "kexec: --console-vga/--console-serial/--serial/--serial-baud have no effect: our purgatory prints nothing"
        );
    }
    let root = SysRoot::at(&args.sysroot);
    match action(args)? {
        Action::Status => status(&root),
        Action::PrintCrashSize => {
            let info = collect_machine_info(&root).context("cannot read the machine description")?;
            println!("{}", info.load_crash_region().map_or(0, |r| r.len()));
            Ok(ExitCode::SUCCESS)
        }
        Action::Unload => unload(args).map(|()| ExitCode::SUCCESS),
        Action::Load => load::load(args, &root).map(|()| ExitCode::SUCCESS),
        Action::Exec => exec(args, &root),
        Action::LoadAndExec => {
            load::load(args, &root)?;
            if args.dry_run || args.print_plan {
                return Ok(ExitCode::SUCCESS);
            }
            exec(args, &root)
        }
        Action::LoadAndShutdown => {
            load::load(args, &root)?;
            if args.dry_run || args.print_plan {
                return Ok(ExitCode::SUCCESS);
            }
            shutdown()
        }
    }
}

fn status(root: &SysRoot) -> anyhow::Result<ExitCode> {
    let loaded = kdump_sys::kexec_loaded(root, true).context("this kernel was built without kexec support")?;
    println!("kexec: capture kernel {}", if loaded { "loaded" } else { "not loaded" });
    Ok(if loaded { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn unload(args: &Args) -> anyhow::Result<()> {
    let what = if args.panic { "capture kernel" } else { "kernel" };
    if args.dry_run {
        let how = match args.syscall() {
            SyscallChoice::Legacy => "kexec_load",
            SyscallChoice::File => "kexec_file_load",
            SyscallChoice::Auto => "kexec_file_load, then kexec_load",
        };
        println!("kexec: would unload the {what} with {how}");
        return Ok(());
    }
    match args.syscall() {
        SyscallChoice::Legacy => sys::kexec_load_unload(args.panic)
            .map_err(|e| anyhow::anyhow!("cannot unload the {what}: {}", explain(Call::LegacyUnload, args.panic, e))),
        SyscallChoice::File => sys::kexec_file_unload(args.panic)
            .map_err(|e| anyhow::anyhow!("cannot unload the {what}: {}", explain(Call::FileUnload, args.panic, e))),
        SyscallChoice::Auto => {
            kdump_sys::legacy::unload_any(args.panic).with_context(|| format!("cannot unload the {what}"))
        }
    }
}

fn exec(args: &Args, root: &SysRoot) -> anyhow::Result<ExitCode> {
    if !kdump_sys::kexec_loaded(root, false).context("this kernel was built without kexec support")? {
        bail!("Nothing has been loaded! Load a kernel with `kexec -l KERNEL` first");
    }
    if !args.no_sync {
        sys::sync_filesystems();
    }
    if !args.no_ifdown {
        let down = sys::take_interfaces_down().context("cannot take network interfaces down (use -x to skip)")?;
        if args.debug && !down.is_empty() {
            eprintln!("kexec: took down {}", down.join(", "));
        }
    }
    let errno = sys::reboot_into_loaded_kernel();
    bail!("reboot into the loaded kernel failed: {}", std::io::Error::from_raw_os_error(errno))
}

fn shutdown() -> anyhow::Result<ExitCode> {
    for path in ["/sbin/shutdown", "/usr/sbin/shutdown", "/bin/shutdown"] {
        if std::path::Path::new(path).exists() {
            let status = std::process::Command::new(path).args(["-r", "now"]).status()?;
            return Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    bail!("loaded, but no shutdown command was found to reboot with; run `kexec -e` to reboot into it")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn kexec_tools_spellings_parse() {
        let a =
            Args::try_parse_from(["kexec", "-p", "/k", "--initrd=/i", "--append=a b", "--command-line", "c"]).unwrap();
        assert!(a.panic && a.initrd.as_deref() == Some(std::path::Path::new("/i")));
        assert_eq!(a.append, vec!["a b", "c"]);
        let a = Args::try_parse_from(["kexec", "-pu"]).unwrap();
        assert_eq!(action(&a).unwrap(), Action::Unload);
        let a = Args::try_parse_from(["kexec", "--ramdisk", "/i", "-s", "-l", "/k"]).unwrap();
        assert_eq!((action(&a).unwrap(), a.syscall()), (Action::Load, SyscallChoice::File));
        let a = Args::try_parse_from(["kexec", "/k"]).unwrap();
        assert_eq!((action(&a).unwrap(), a.syscall()), (Action::LoadAndShutdown, SyscallChoice::Auto));
        let a = Args::try_parse_from(["kexec", "-S", "-p"]).unwrap();
        assert_eq!(action(&a).unwrap(), Action::Status);
        let a = Args::try_parse_from(["kexec", "-l", "-e", "/k"]).unwrap();
        assert!(action(&a).is_err());
        let a = Args::try_parse_from(["kexec", "-c", "-p", "-i", "--no-backup", "--elf32-core-headers", "/k"]).unwrap();
        assert!(a.no_checks && a.no_backup && a.elf32_core_headers);
        assert_eq!((action(&a).unwrap(), a.syscall()), (Action::Load, SyscallChoice::Legacy));
        let a = Args::try_parse_from(["kexec", "-c", "-p", "--hotplug", "/k"]).unwrap();
        assert!(a.hotplug && !a.no_hotplug);
        let a = Args::try_parse_from(["kexec", "-c", "-p", "--hotplug", "--no-hotplug", "/k"]).unwrap();
        assert!(!a.hotplug && a.no_hotplug, "the last one wins");
        let a = Args::try_parse_from(["kexec", "-p", "--print-plan", "--pass-memmap-cmdline", "/k"]).unwrap();
        assert_eq!(a.syscall(), SyscallChoice::Legacy, "--print-plan describes a kexec_load");
    }
}
