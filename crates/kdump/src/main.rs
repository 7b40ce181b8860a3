//! `kdump`: the crash-dump tool. Subcommands wire the library crates together;
//! no parsing or planning happens here.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sysinfo { json, sysroot } => sysinfo::run(&sysroot, json),
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
