//! `kdump dmesg`: the crashed kernel's log.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use kdump_kernel::KernelMemory;
use kdump_kernel::memory::X86_64Layout;
use kdump_kernel::printk::{Record, format_log, read_log};

use kdump_collector::source;
use kdump_collector::{Dump, PhysAdapter};

/// Reads every log record of the dump.
pub fn records(dump: &mut Dump) -> anyhow::Result<Vec<Record>> {
    let info = dump.vmcoreinfo()?;
    let layout = X86_64Layout::from_vmcoreinfo(&info).context("cannot set up address translation")?;
    let mut mem = KernelMemory::new(PhysAdapter::new(dump.mem.as_mut()), layout);
    read_log(&mut mem, &info).context("cannot read the kernel log from the dump")
}

pub fn run(dump_paths: &[PathBuf], json: bool, caller_id: bool) -> anyhow::Result<()> {
    let mut dump = source::open_set(dump_paths)?;
    let name = names(dump_paths);
    let lone_part = dump.split_warning(&name);
    if let Some(w) = &lone_part {
        eprintln!("kdump: warning: {w}");
    }
    if let Some(at) = dump.resolve_vmcoreinfo()? {
        eprintln!("kdump: VMCOREINFO {}", crate::dump::found_in_memory(at));
    }
    let records = match (records(&mut dump), lone_part) {
        (Ok(r), _) => r,
        (Err(e), Some(_)) => {
            return Err(e.context(format!("{name} is one part of a split dump: give every part, or --reassemble them")));
        }
        (Err(e), None) => return Err(e),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &records)?;
        writeln!(out)?;
    } else {
        out.write_all(&format_log(&records, caller_id))?;
    }
    if caller_id && !json && records.iter().all(|r| r.caller.is_none()) {
        eprintln!(
            "kdump: warning: the dump's kernel records no caller ids (a log_buf kernel built without \
             CONFIG_PRINTK_CALLER); the log is printed without the caller column"
        );
    }
    if !dump.format.complete {
        eprintln!("kdump: warning: {name} is marked incomplete; the log may be missing records");
    }
    Ok(())
}

/// The dump's file names for messages: one, or the parts of a split dump.
pub fn names(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
