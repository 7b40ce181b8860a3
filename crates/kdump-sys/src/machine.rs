//! Assembles a [`MachineInfo`] from the files of a [`SysRoot`].

use std::path::PathBuf;

use kdump_machine::cpulist::parse_cpu_list;
use kdump_machine::sysfs::{
    parse_crash_notes_address, parse_crash_notes_size, parse_decimal, parse_flag, parse_lockdown, parse_vmcoreinfo,
};
use kdump_machine::{CpuNote, Iomem, KexecState, Lockdown, MachineInfo, ParseError};

use crate::{SysError, SysRoot};

/// The note buffer size the kernel used before `crash_notes_size` existed.
const DEFAULT_CRASH_NOTES_SIZE: u64 = 1024;

fn parsed<T>(path: &str, result: Result<T, ParseError>) -> Result<T, SysError> {
    result.map_err(|source| SysError::Parse { path: PathBuf::from(path), source })
}

/// Reads everything kdump needs to know about the running kernel.
///
/// Files that exist only with some kernel options are optional and their
/// absence becomes a warning; `/proc/iomem` and the CPU lists are required.
pub fn collect_machine_info(root: &SysRoot) -> Result<MachineInfo, SysError> {
    let mut warnings = Vec::new();

    let kernel_release = root.read_optional("/proc/sys/kernel/osrelease")?.map(|s| s.trim().to_string());

    let iomem = parsed("/proc/iomem", Iomem::parse(&root.read("/proc/iomem")?))?;
    if iomem.is_redacted() {
        warnings.push("/proc/iomem shows only zero addresses: read it as root (CAP_SYS_ADMIN)".to_string());
    }

    let vmcoreinfo = match root.read_optional("/sys/kernel/vmcoreinfo")? {
        Some(text) => Some(parsed("/sys/kernel/vmcoreinfo", parse_vmcoreinfo(&text))?),
        None => {
            warnings.push(
                "/sys/kernel/vmcoreinfo is missing: this kernel lacks CONFIG_CRASH_CORE, so dumps cannot be filtered"
                    .to_string(),
            );
            None
        }
    };

    let cpu_dir = "/sys/devices/system/cpu";
    let possible_path = format!("{cpu_dir}/possible");
    let possible_cpus = parsed(&possible_path, parse_cpu_list(&root.read(&possible_path)?))?;
    let present_path = format!("{cpu_dir}/present");
    let present_cpus = parsed(&present_path, parse_cpu_list(&root.read(&present_path)?))?;

    let mut crash_notes = Vec::new();
    for &cpu in &possible_cpus {
        let notes_path = format!("{cpu_dir}/cpu{cpu}/crash_notes");
        // No cpuN directory (or no crash_notes in it) means the CPU is not present.
        let Some(text) = root.read_optional(&notes_path)? else { continue };
        let address = parsed(&notes_path, parse_crash_notes_address(&text))?;
        let size_path = format!("{cpu_dir}/cpu{cpu}/crash_notes_size");
        let size = match root.read_optional(&size_path)? {
            Some(text) => parsed(&size_path, parse_crash_notes_size(&text))?,
            None => DEFAULT_CRASH_NOTES_SIZE,
        };
        crash_notes.push(CpuNote { cpu, address, size });
    }
    if crash_notes.is_empty() {
        warnings.push("no CPU has crash_notes: this kernel was built without CONFIG_CRASH_DUMP".to_string());
    }

    let flag = |path: &'static str| -> Result<bool, SysError> {
        match root.read_optional(path)? {
            Some(text) => parsed(path, parse_flag(path, &text)),
            None => Ok(false),
        }
    };
    let crash_size = match root.read_optional("/sys/kernel/kexec_crash_size")? {
        Some(text) => parsed("/sys/kernel/kexec_crash_size", parse_decimal("kexec_crash_size", &text))?,
        None => 0,
    };
    let kexec = KexecState {
        loaded: flag("/sys/kernel/kexec_loaded")?,
        crash_loaded: flag("/sys/kernel/kexec_crash_loaded")?,
        crash_size,
    };
    if !root.exists("/sys/kernel/kexec_loaded") {
        warnings.push("/sys/kernel/kexec_loaded is missing: this kernel was built without CONFIG_KEXEC".to_string());
    }

    let lockdown = match root.read_optional("/sys/kernel/security/lockdown")? {
        Some(text) => parsed("/sys/kernel/security/lockdown", parse_lockdown(&text))?,
        None => Lockdown::Unknown,
    };

    let kexec_load_disabled = match root.read_optional("/proc/sys/kernel/kexec_load_disabled")? {
        Some(text) => Some(parsed("/proc/sys/kernel/kexec_load_disabled", parse_flag("kexec_load_disabled", &text))?),
        None => None,
    };

    let crash_regions = iomem.crash_regions();
    if crash_regions.is_empty() {
        warnings.push(
            "no memory is reserved for a capture kernel: boot with crashkernel=256M (or more) on the kernel command line"
                .to_string(),
        );
    }

    Ok(MachineInfo {
        kernel_release,
        system_ram: iomem.system_ram(),
        crash_regions,
        kernel_code: iomem.kernel_code(),
        vmcoreinfo,
        possible_cpus,
        present_cpus,
        crash_notes,
        kexec,
        lockdown,
        kexec_load_disabled,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kdump_machine::PhysRange;
    use std::path::Path;

    fn write(base: &Path, path: &str, text: &str) {
        let full = base.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    #[test]
    fn collects_a_two_cpu_machine() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        write(b, "/proc/iomem", "00100000-3ffdffff : System RAM\n  2b000000-3affffff : Crash kernel\n");
        write(b, "/proc/sys/kernel/osrelease", "6.1.0-test\n");
        write(b, "/sys/kernel/vmcoreinfo", "3a1e5000 1000\n");
        write(b, "/sys/devices/system/cpu/possible", "0-3\n");
        write(b, "/sys/devices/system/cpu/present", "0-1\n");
        write(b, "/sys/devices/system/cpu/cpu0/crash_notes", "3fc1b2c8\n");
        write(b, "/sys/devices/system/cpu/cpu0/crash_notes_size", "432\n");
        write(b, "/sys/devices/system/cpu/cpu1/crash_notes", "3fd1b2c8\n");
        write(b, "/sys/kernel/kexec_loaded", "0\n");
        write(b, "/sys/kernel/kexec_crash_loaded", "1\n");
        write(b, "/sys/kernel/kexec_crash_size", "268435456\n");
        write(b, "/sys/kernel/security/lockdown", "[none] integrity confidentiality\n");

        let info = collect_machine_info(&SysRoot::at(b)).unwrap();
        assert_eq!(info.kernel_release.as_deref(), Some("6.1.0-test"));
        assert_eq!(info.crash_regions, vec![PhysRange { start: 0x2b00_0000, end: 0x3aff_ffff }]);
        assert_eq!(info.crash_reserved(), 256 << 20);
        assert_eq!(info.possible_cpus, vec![0, 1, 2, 3]);
        assert_eq!(
            info.crash_notes,
            vec![
                CpuNote { cpu: 0, address: 0x3fc1_b2c8, size: 432 },
                CpuNote { cpu: 1, address: 0x3fd1_b2c8, size: 1024 }
            ]
        );
        assert!(info.kexec.crash_loaded && !info.kexec.loaded);
        assert_eq!(info.lockdown, Lockdown::None);
        assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    }

    #[test]
    fn missing_iomem_is_an_error_missing_extras_are_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        let err = collect_machine_info(&SysRoot::at(b)).unwrap_err().to_string();
        assert!(err.contains("/proc/iomem"), "{err}");

        write(b, "/proc/iomem", "00100000-3ffdffff : System RAM\n");
        write(b, "/sys/devices/system/cpu/possible", "0\n");
        write(b, "/sys/devices/system/cpu/present", "0\n");
        let info = collect_machine_info(&SysRoot::at(b)).unwrap();
        assert_eq!(info.lockdown, Lockdown::Unknown);
        assert!(info.warnings.iter().any(|w| w.contains("crashkernel=")), "{:?}", info.warnings);
        assert!(info.warnings.iter().any(|w| w.contains("vmcoreinfo")), "{:?}", info.warnings);
    }

    #[test]
    fn corrupt_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        write(b, "/proc/iomem", "00100000-3ffdffff : System RAM\n");
        write(b, "/sys/devices/system/cpu/possible", "zero\n");
        let err = collect_machine_info(&SysRoot::at(b)).unwrap_err().to_string();
        assert!(err.contains("/sys/devices/system/cpu/possible"), "{err}");
    }
}
