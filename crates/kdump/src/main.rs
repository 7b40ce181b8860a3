//! `kdump`: the crash-dump tool. Subcommands wire the library crates together;
//! no parsing or planning happens here.
#![forbid(unsafe_code)]

mod capture;
mod dmesg;
mod dump;
mod info;
mod network;
mod service;
mod ssh_key;
mod ssh_target;
mod sysinfo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "kdump", version, about = "Linux kernel crash dumps: inspect, save, analyse")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report what kdump needs from the running kernel: RAM, crash memory,
    /// VMCOREINFO, per-CPU crash notes, kexec state and lockdown.
    Sysinfo {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Read /proc and /sys under this directory instead of / (for captured machines).
        #[arg(long, value_name = "DIR", default_value = "/")]
        sysroot: PathBuf,
    },
    /// Print the crashed kernel's log, as `makedumpfile --dump-dmesg` writes it.
    Dmesg {
        /// The dump: ELF vmcore (e.g. /proc/vmcore), kdump-compressed or flattened.
        dump: PathBuf,
        /// Print JSON records (timestamp, level, caller) instead of text.
        #[arg(long)]
        json: bool,
        /// Add the caller column after the timestamp, as makedumpfile 1.7.5+ prints it:
        /// `[      T0]` (task id) or `[      C1]` (CPU, from interrupt context).
        #[arg(long)]
        caller_id: bool,
    },
    /// Save a dump (makedumpfile's options): `kdump dump -z -d 1 /proc/vmcore /var/crash/vmcore`.
    Dump(dump::DumpArgs),
    /// Summarise a crash: kernel, time, panic message, CPUs and a symbolized backtrace.
    Info {
        /// The dump: ELF vmcore, kdump-compressed or flattened.
        dump: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Symbols from this System.map (slid by the dump's KASLR offset) instead of the dump's kallsyms.
        #[arg(long, value_name = "FILE")]
        system_map: Option<PathBuf>,
    },
    /// Create an ed25519 key for the ssh target and print the line to authorize on the server.
    SshKey(ssh_key::SshKeyArgs),
    #[command(flatten)]
    Service(service::ServiceCommand),
}

fn main() -> ExitCode {
    // As /init of the capture initramfs that `kdump setup` builds: save the dump, never return.
    if capture::is_capture_init() {
        capture::run();
    }
    // Answer to the names of the tools we replace.
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    let name = argv0.as_deref().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("kdump");
    let as_subcommand = |sub: &str| {
        let mut args: Vec<std::ffi::OsString> = vec!["kdump".into(), sub.into()];
        args.extend(std::env::args_os().skip(1));
        Cli::parse_from(args)
    };
    let cli = match name {
        "vmcore-dmesg" => as_subcommand("dmesg"),
        "makedumpfile" => as_subcommand("dump"),
        _ => Cli::parse(),
    };
    let result = match cli.command {
        Command::Sysinfo { json, sysroot } => sysinfo::run(&sysroot, json),
        Command::Dmesg { dump, json, caller_id } => dmesg::run(&dump, json, caller_id),
        Command::Dump(args) => dump::run(&args),
        Command::Info { dump, json, system_map } => info::run(&dump, json, system_map.as_deref()),
        Command::SshKey(args) => ssh_key::run(&args),
        Command::Service(cmd) => service::run(&cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`kdump sysinfo | head`) is the reader's choice, not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kdump: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>().and_then(|e| e.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}
