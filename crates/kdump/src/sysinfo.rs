//! `kdump sysinfo`: the machine description, as text or JSON.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use kdump_machine::{Lockdown, MachineInfo, PhysRange};
use kdump_sys::{SysRoot, collect_machine_info};

pub fn run(sysroot: &Path, json: bool) -> anyhow::Result<()> {
    let info = collect_machine_info(&SysRoot::at(sysroot)).context("cannot describe this machine")?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &info)?;
        writeln!(out)?;
    } else {
        out.write_all(render_text(&info).as_bytes())?;
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn range(r: &PhysRange) -> String {
    format!("{:#014x}-{:#014x} ({})", r.start, r.end, mib(r.len()))
}

fn render_text(info: &MachineInfo) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("kernel:        {}", info.kernel_release.as_deref().unwrap_or("unknown")));
    line(format!("System RAM:    {} in {} ranges", mib(info.ram_total()), info.system_ram.len()));
    for r in &info.system_ram {
        line(format!("  {}", range(r)));
    }
    if info.crash_regions.is_empty() {
        line("crash memory:  none reserved".to_string());
    } else {
        line(format!("crash memory:  {}", mib(info.crash_reserved())));
        for r in &info.crash_regions {
            line(format!("  {}", range(r)));
        }
    }
    match &info.vmcoreinfo {
        Some(v) => line(format!("VMCOREINFO:    {:#x} ({} bytes)", v.address, v.size)),
        None => line("VMCOREINFO:    not available".to_string()),
    }
    line(format!(
        "CPUs:          {} possible, {} present, {} with crash notes",
        info.possible_cpus.len(),
        info.present_cpus.len(),
        info.crash_notes.len()
    ));
    for n in &info.crash_notes {
        line(format!("  cpu{}: crash notes at {:#x} ({} bytes)", n.cpu, n.address, n.size));
    }
    let yes_no = |b: bool| if b { "loaded" } else { "not loaded" };
    line(format!(
        "kexec:         reboot kernel {}, capture kernel {}",
        yes_no(info.kexec.loaded),
        yes_no(info.kexec.crash_loaded)
    ));
    let lockdown = match info.lockdown {
        Lockdown::None => "none",
        Lockdown::Integrity => "integrity (only signed kernels, kexec_file_load only)",
        Lockdown::Confidentiality => "confidentiality (only signed kernels, kexec_file_load only)",
        Lockdown::Unknown => "unknown (no /sys/kernel/security/lockdown)",
    };
    line(format!("lockdown:      {lockdown}"));
    if info.kexec_load_disabled == Some(true) {
        line("kexec_load:    disabled by kernel.kexec_load_disabled until reboot".to_string());
    }
    for w in &info.warnings {
        line(format!("warning: {w}"));
    }
    s
}
