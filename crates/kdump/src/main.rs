//! `kdump`: the crash-dump tool. Subcommands wire the library crates together;
//! no parsing or planning happens here.
#![forbid(unsafe_code)]

mod capture;
mod dmesg;
mod dump;
mod fleet;
mod info;
mod network;
mod nfs_target;
mod s3_target;
mod service;
mod ssh_key;
mod ssh_target;
mod sysinfo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
        /// The dump: ELF vmcore (e.g. /proc/vmcore), kdump-compressed or flattened; or every
        /// file of a `kdump dump --split` dump.
        #[arg(value_name = "DUMP", required = true, num_args = 1..)]
        dump: Vec<PathBuf>,
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
        /// The dump: ELF vmcore, kdump-compressed or flattened; or every file of a
        /// `kdump dump --split` dump.
        #[arg(value_name = "DUMP", required = true, num_args = 1..)]
        dump: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Symbols from this System.map (slid by the dump's KASLR offset) instead of the dump's kallsyms.
        #[arg(long, value_name = "FILE")]
        system_map: Option<PathBuf>,
    },
    /// A fleet's crashes in one S3 bucket, grouped by signature: list, show, fetch, report, add.
    Fleet(fleet::FleetArgs),
    /// Print a shell completion script: `kdump completions bash > /usr/share/bash-completion/completions/kdump`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (kdump.1 and one per subcommand, e.g. kdump-dump.1) into a directory.
    Man {
        /// Where to write them.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
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
        Command::Fleet(args) => fleet::run(&args),
        Command::Completions { shell } => {
            // Into a buffer first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kdump", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script).map_err(anyhow::Error::from)
        }
        Command::Man { out } => write_man_pages(&out),
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

/// `kdump.1`, and `kdump-<sub>.1` for every subcommand (`kdump-fleet-list.1` for nested ones);
/// `kdump-makedumpfile.8` and `kdump-vmcore-dmesg.8`, the pages of the names kdump answers
/// to (the package links `makedumpfile(8)` and `vmcore-dmesg(8)` to them as alternatives).
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = 0;
    let mut pending = vec![("kdump".to_string(), cmd)];
    while let Some((name, cmd)) = pending.pop() {
        let page = dir.join(format!("{name}.1"));
        let mut text = Vec::new();
        clap_mangen::Man::new(cmd.clone()).title(name.clone()).render(&mut text)?;
        std::fs::write(&page, text).with_context(|| format!("cannot write {}", page.display()))?;
        written += 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
    }
    let root = Cli::command();
    for (alias, sub, about) in [
        (
            "makedumpfile",
            "dump",
            "save a crash dump, filtered and compressed: makedumpfile's command line, run by kdump dump",
        ),
        ("vmcore-dmesg", "dmesg", "print the crashed kernel's log: vmcore-dmesg's command line, run by kdump dmesg"),
    ] {
        let cmd = root.find_subcommand(sub).expect("the subcommand exists").clone();
        let cmd = cmd.name(alias).bin_name(alias).about(about);
        let page = dir.join(format!("kdump-{alias}.8"));
        let mut text = Vec::new();
        clap_mangen::Man::new(cmd).title(alias).section("8").render(&mut text)?;
        std::fs::write(&page, text).with_context(|| format!("cannot write {}", page.display()))?;
        written += 1;
    }
    let config_page = dir.join("kdump.toml.5");
    std::fs::write(&config_page, config_man_page())
        .with_context(|| format!("cannot write {}", config_page.display()))?;
    written += 1;
    eprintln!("kdump: {written} man pages in {}", dir.display());
    Ok(())
}

/// kdump.toml(5): the config file, every key with its default and meaning (the text
/// `kdump config --defaults` prints, which docs/CONFIG.md shows too).
fn config_man_page() -> String {
    let mut page = format!(
        ".TH KDUMP.TOML 5 \"\" \"kdump {}\" \"File formats\"\n\
         .SH NAME\nkdump.toml \\- configuration of the kdump service\n\
         .SH SYNOPSIS\n/etc/kdump.toml\n\
         .SH DESCRIPTION\n\
         The TOML file \\fBkdump setup\\fR reads to build and load the capture kernel, and the capture kernel's \
         init reads to save the dump. Only \\fItarget.device\\fR (or \\fItarget.url\\fR) is required. \
         \\fBkdump config\\fR checks a file and prints it with every default filled in.\n\
         .SH KEYS\nEvery key, with its default and what it means:\n.nf\n",
        env!("CARGO_PKG_VERSION")
    );
    for line in kdump_service::config::DEFAULTS_TOML.lines() {
        let line = line.replace('\\', "\\e");
        // A line starting with a dot or quote would be a request.
        if line.starts_with(['.', '\'']) {
            page.push_str("\\&");
        }
        page.push_str(&line);
        page.push('\n');
    }
    page.push_str(".fi\n.SH SEE ALSO\n\\fBkdump\\fR(1), \\fBkdump-setup\\fR(1), \\fBkdump-config\\fR(1)\n");
    page
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>().and_then(|e| e.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}
