//! `kdump info`: what happened, from the dump alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kdump_kernel::backtrace::{Frame, backtrace};
use kdump_kernel::crashing::{CrashSymbols, CrashingCpuMethod, crashing_cpu, registers_in_crash_kexec};
use kdump_kernel::kallsyms::{SymbolSource, SymbolTable};
use kdump_kernel::memory::X86_64Layout;
use kdump_kernel::printk::Record;
use kdump_kernel::prstatus::{REGISTER_NAMES, cpu_states};
use kdump_kernel::signature::Signature;
use kdump_kernel::{KernelMemory, Vmcoreinfo};
use serde::Serialize;

use crate::dmesg;
use kdump_collector::{DumpFormat, PhysAdapter};
use kdump_kernel::identity::KernelId;

#[derive(Debug, Serialize)]
struct Cpu {
    index: usize,
    pid: i32,
    crashing: bool,
    registers: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct Report {
    dump: String,
    format: DumpFormat,
    /// Where VMCOREINFO was found when the dump has no note (QEMU dumps).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex")]
    vmcoreinfo_found_at: Option<u64>,
    kernel: KernelId,
    /// A live dump (of a running kernel): when it was taken. No panic, no crashing CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    live_dump_time: Option<String>,
    /// A live dump: the `task_struct` address of the process that took it (crash's `SNAP` note).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex")]
    live_dump_task: Option<u64>,
    crash_time: Option<String>,
    uptime_seconds: Option<f64>,
    panic: Option<String>,
    /// The same bug on many hosts has one signature (`kdump fleet` groups by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<Signature>,
    crashing_cpu: Option<usize>,
    /// How the crashing CPU was found.
    crashing_cpu_found_by: Option<CrashingCpuMethod>,
    cpus: Vec<Cpu>,
    symbols: Option<String>,
    backtrace: Vec<Frame>,
    warnings: Vec<String>,
}

/// An address as a `0x…` string, as the registers are.
fn hex<S: serde::Serializer>(addr: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match addr {
        Some(a) => s.serialize_str(&format!("{a:#x}")),
        None => s.serialize_none(),
    }
}

/// The panic message: the last `Kernel panic - not syncing:` line, else the
/// first oops-style line.
fn panic_message(records: &[Record]) -> Option<String> {
    const PANIC: &str = "Kernel panic - not syncing: ";
    let texts: Vec<String> = records.iter().map(|r| String::from_utf8_lossy(&r.text).into_owned()).collect();
    if let Some(t) = texts.iter().rev().find_map(|t| t.find(PANIC).map(|i| t[i + PANIC.len()..].trim().to_string())) {
        return Some(t);
    }
    texts
        .iter()
        .find(|t| t.starts_with("BUG: ") || t.starts_with("Oops: ") || t.contains("general protection fault"))
        .map(|t| t.trim().to_string())
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: i64) -> String {
    let (year, month, day, hour, minute, second) = kdump_service::naming::civil(secs);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
}

pub fn run(dump_paths: &[PathBuf], json: bool, system_map: Option<&Path>) -> anyhow::Result<()> {
    write(dump_paths, json, system_map, None, &mut std::io::stdout().lock())
}

/// The symbols `kdump setup` saved in the capture initramfs (zstd), if they
/// are the crashed kernel's (same release and `_stext`).
fn saved_symbols(path: &Path, info: &Vmcoreinfo) -> anyhow::Result<SymbolTable> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = zstd::stream::decode_all(raw.as_slice()).with_context(|| format!("{} is not zstd", path.display()))?;
    Ok(SymbolTable::from_saved(&String::from_utf8_lossy(&text), info)?)
}

/// The report of `kdump info` written to `out`. The capture init writes
/// `info.json` with it, passing the symbols `kdump setup` saved
/// (`saved_symbols`, used when they are the crashed kernel's).
pub fn write(
    dump_paths: &[PathBuf],
    json: bool,
    system_map: Option<&Path>,
    saved: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut dump = kdump_collector::source::open_set(dump_paths)?;
    let name = dmesg::names(dump_paths);
    let found_at = dump.resolve_vmcoreinfo()?;
    let info: Vmcoreinfo = dump.vmcoreinfo()?;
    let mut warnings: Vec<String> = dump.split_warning(&name).into_iter().collect();
    if !dump.format.complete {
        warnings.push("the dump is marked incomplete: some pages are missing".to_string());
    }
    let records = match dmesg::records(&mut dump) {
        Ok(r) => r,
        Err(e) => {
            warnings.push(format!("kernel log unavailable: {e:#}"));
            Vec::new()
        }
    };
    let notes = dump.mem.notes().to_vec();
    let format = dump.format.clone();
    let layout = X86_64Layout::from_vmcoreinfo(&info).context("cannot set up address translation")?;
    let mut mem = KernelMemory::new(PhysAdapter::new(dump.mem.as_mut()), layout);

    let kernel = kdump_kernel::identity::identity(&mut mem, &info);

    let (symbols, source) = match system_map {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let offset = info.kernel_offset()?;
            (
                Some(SymbolTable::from_system_map(&text, offset)?),
                Some(format!("{} (KASLR offset {offset:#x})", path.display())),
            )
        }
        None => match saved.filter(|p| p.exists()).map(|p| saved_symbols(p, &info)) {
            Some(Ok(t)) => (Some(t), Some(SymbolSource::Saved.describe().to_string())),
            other => {
                if let Some(Err(e)) = other {
                    warnings.push(format!("saved symbols not used: {e:#}"));
                }
                match SymbolTable::from_dump(&mut mem, &info) {
                    Ok((t, from)) => (Some(t), Some(from.describe().to_string())),
                    Err(e) => {
                        warnings.push(format!("no symbols: {e} (give --system-map for this kernel)"));
                        (None, None)
                    }
                }
            }
        },
    };

    let states = cpu_states(&notes);
    let crash_symbols = symbols.as_ref().map(CrashSymbols::from_table);
    let live = info.live_dump_time();
    let crashing = if live.is_some() { None } else { crashing_cpu(&mut mem, crash_symbols.as_ref(), &states) };
    if let Some(c) = crashing
        && c.method == CrashingCpuMethod::Guess
    {
        warnings.push(format!("the crashing CPU is {}", c.method.describe()));
    }
    // The crashing CPU saved its own registers in __crash_kexec: a variable that names another CPU is stale.
    if let (Some(c), Some(syms)) = (crashing, crash_symbols.as_ref())
        && let Some(by_registers) = registers_in_crash_kexec(syms, &states)
        && by_registers != c.index
    {
        warnings.push(format!(
            "{} says CPU {}, but CPU {by_registers} saved its registers in __crash_kexec",
            c.method.describe(),
            c.index
        ));
    }
    let crashing_cpu = crashing.map(|c| c.index);

    let mut frames = Vec::new();
    if let (Some(cpu), Some(syms)) = (crashing_cpu.and_then(|c| states.get(c)), symbols.as_ref()) {
        let reg = |n: &str| cpu.register(n).unwrap_or(0);
        frames = backtrace(&mut mem, syms, reg("rip"), reg("rsp"), reg("rbp"));
    }

    let cpus = states
        .iter()
        .map(|s| Cpu {
            index: s.index,
            pid: s.pid,
            crashing: Some(s.index) == crashing_cpu,
            registers: REGISTER_NAMES
                .iter()
                .zip(&s.registers)
                .map(|(n, v)| (n.to_string(), format!("{v:#018x}")))
                .collect(),
        })
        .collect();
    let panic = if live.is_some() { None } else { panic_message(&records) };
    let named = frames.iter().filter_map(|f| f.symbol.as_deref());
    let signature = live.is_none().then(|| kdump_kernel::signature::signature(panic.as_deref(), named));
    let report = Report {
        dump: name,
        format,
        vmcoreinfo_found_at: found_at,
        kernel,
        live_dump_time: live.map(utc),
        live_dump_task: live.and(snap_task(&notes)),
        crash_time: info.crash_time().map(utc),
        uptime_seconds: records.last().map(|r| r.ts_nsec as f64 / 1e9),
        panic,
        signature,
        crashing_cpu,
        crashing_cpu_found_by: crashing.map(|c| c.method),
        cpus,
        symbols: source,
        backtrace: frames,
        warnings,
    };
    if json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&report, symbols.as_ref()).as_bytes())?;
    }
    Ok(())
}

fn render(r: &Report, symbols: Option<&SymbolTable>) -> String {
    let mut s = String::new();
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    let _ = writeln!(
        s,
        "dump:        {} ({}{}{})",
        r.dump,
        r.format.kind,
        r.format.dump_level.map(|l| format!(", dump level {l}")).unwrap_or_default(),
        r.format.codec.as_ref().map(|c| format!(", {c}")).unwrap_or_default()
    );
    let _ = writeln!(s, "complete:    {}", if r.format.complete { "yes" } else { "NO: the file is marked incomplete" });
    if let Some(at) = r.vmcoreinfo_found_at {
        let _ = writeln!(s, "VMCOREINFO:  {}", crate::dump::found_in_memory(at));
    }
    let _ = writeln!(s, "kernel:      {} {} ({})", or(&r.kernel.release), or(&r.kernel.version), or(&r.kernel.machine));
    let _ = writeln!(s, "host:        {}", or(&r.kernel.nodename));
    if let Some(t) = &r.live_dump_time {
        let _ = writeln!(s, "live dump:   of the running kernel, taken at {t} (no crash, no panic)");
        if let Some(task) = r.live_dump_task {
            let _ = writeln!(s, "taken by:    the task at {task:#x} (its registers are not in a live dump)");
        }
    } else {
        let _ = writeln!(s, "crash time:  {}", or(&r.crash_time));
    }
    let _ = writeln!(
        s,
        "uptime:      {}",
        r.uptime_seconds.map(|u| format!("{u:.3} s")).unwrap_or_else(|| "unknown".into())
    );
    let _ = writeln!(
        s,
        "panic:       {}",
        if r.live_dump_time.is_some() { "none (a live dump)".into() } else { or(&r.panic) }
    );
    if let Some(sig) = &r.signature {
        let _ = writeln!(s, "signature:   {} ({})", sig.id, sig.title);
    }
    let _ = match (r.crashing_cpu, r.crashing_cpu_found_by) {
        _ if r.live_dump_time.is_some() => writeln!(s, "crashing CPU: none (a live dump)"),
        (Some(c), Some(how)) => writeln!(s, "crashing CPU: {c} (found by {})", how.describe()),
        _ => writeln!(s, "crashing CPU: unknown"),
    };
    let _ = writeln!(s, "\nbacktrace of the crashing CPU ({}):", r.symbols.as_deref().unwrap_or("no symbols"));
    for f in &r.backtrace {
        let _ = writeln!(s, "  {}", f.display());
    }
    for cpu in &r.cpus {
        let mark = if cpu.crashing { " (crashing)" } else { "" };
        let _ = writeln!(s, "\nCPU {}{mark}: pid {}", cpu.index, cpu.pid);
        let rip = cpu.registers.get("rip").and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
        if let (Some(rip), Some(syms)) = (rip, symbols)
            && let Some((sym, off, size)) = syms.lookup_text(rip)
        {
            let _ = writeln!(s, "  RIP: {}+{off:#x}/{size:#x}", sym.name);
        }
        let regs: Vec<String> = REGISTER_NAMES
            .iter()
            .filter(|n| !matches!(**n, "fs_base" | "gs_base" | "ds" | "es" | "fs" | "gs"))
            .filter_map(|n| cpu.registers.get(*n).map(|v| format!("{:>6}: {v}", n.to_uppercase())))
            .collect();
        for chunk in regs.chunks(3) {
            let _ = writeln!(s, "  {}", chunk.join("  "));
        }
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

/// The task a live dump names in crash's `SNAP` note (0 or absent: none).
fn snap_task(notes: &[u8]) -> Option<u64> {
    use kdump_kernel::live::{NT_TASKSTRUCT, SNAP_NOTE_NAME};
    kdump_dumpfile::notes::parse_notes(notes, true)
        .map_while(Result::ok)
        .find(|n| n.name == SNAP_NOTE_NAME && n.ntype == NT_TASKSTRUCT)
        .and_then(|n| n.desc.get(..8))
        .map(|d| u64::from_le_bytes(d.try_into().expect("8 bytes")))
        .filter(|&t| t != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_671_706), "2026-11-26 05:41:46 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn finds_the_panic_line() {
        let rec = |t: &str| Record { seq: 0, ts_nsec: 0, level: None, caller: None, text: t.as_bytes().to_vec() };
        let records = vec![rec("sysrq: Trigger a crash"), rec("Kernel panic - not syncing: sysrq triggered crash")];
        assert_eq!(panic_message(&records).as_deref(), Some("sysrq triggered crash"));
        assert_eq!(
            panic_message(&[rec("BUG: kernel NULL pointer dereference")]).as_deref(),
            Some("BUG: kernel NULL pointer dereference")
        );
        assert_eq!(panic_message(&[]), None);
    }
}
