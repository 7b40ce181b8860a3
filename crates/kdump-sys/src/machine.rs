//! Assembles a [`MachineInfo`] from the files of a [`SysRoot`].

use std::path::PathBuf;

use kdump_machine::cpulist::parse_cpu_list;
use kdump_machine::sysfs::{
    parse_crash_notes_address, parse_crash_notes_size, parse_decimal, parse_flag, parse_lockdown, parse_vmcoreinfo,
};
use kdump_machine::{CpuNote, Iomem, Kcore, KexecState, Lockdown, MachineInfo, MemoryRange, ParseError};

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

    let crash_size = match root.read_optional("/sys/kernel/kexec_crash_size")? {
        Some(text) => parsed("/sys/kernel/kexec_crash_size", parse_decimal("kexec_crash_size", &text))?,
        None => 0,
    };
    let kexec = KexecState { loaded: kexec_loaded(root, false)?, crash_loaded: kexec_loaded(root, true)?, crash_size };
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

/// What `kexec -c` needs beyond [`MachineInfo`] to describe the machine to a capture kernel.
#[derive(Debug, Clone, Default)]
pub struct LoaderInputs {
    /// Top-level RAM / ACPI / NVS / reserved / PMEM ranges of `/proc/iomem`.
    pub memory_map: Vec<MemoryRange>,
    /// `/proc/kcore` program headers (kernel text and direct-map addresses, KASLR included);
    /// `None` when kcore is missing or unreadable (no CONFIG_PROC_KCORE, not root, lockdown).
    pub kcore: Option<Kcore>,
    /// The ACPI RSDP physical address: `/sys/firmware/efi/systab` (`ACPI20=`, then `ACPI=`),
    /// else `acpi_rsdp_addr` of the running kernel's boot_params (`/sys/kernel/boot_params/data`).
    pub acpi_rsdp: Option<u64>,
    /// Where `acpi_rsdp` came from, for the plan.
    pub acpi_rsdp_source: Option<&'static str>,
    /// Things that were missing, each a sentence for a person.
    pub warnings: Vec<String>,
}

/// Bytes of `/proc/kcore` read for its headers (the kernel writes about a dozen).
const KCORE_HEADER_BYTES: usize = 64 << 10;

/// Reads the memory map, `/proc/kcore` headers and ACPI RSDP location for `kexec -c`.
pub fn collect_loader_inputs(root: &SysRoot) -> Result<LoaderInputs, SysError> {
    let mut warnings = Vec::new();
    let memory_map = parsed("/proc/iomem", Iomem::parse(&root.read("/proc/iomem")?))?.memory_map();
    let kcore = match root.read_prefix("/proc/kcore", KCORE_HEADER_BYTES) {
        Ok(Some(bytes)) => match Kcore::parse(&bytes) {
            Ok(k) => Some(k),
            Err(e) => {
                warnings.push(format!("/proc/kcore headers are unreadable ({e})"));
                None
            }
        },
        Ok(None) => {
            warnings.push("/proc/kcore is missing (CONFIG_PROC_KCORE off)".to_string());
            None
        }
        Err(e) => {
            warnings.push(format!("{e}: {}", e.source_text()));
            None
        }
    };
    let mut acpi_rsdp = None;
    let mut acpi_rsdp_source = None;
    if let Some(systab) = root.read_optional("/sys/firmware/efi/systab")? {
        acpi_rsdp = parse_efi_systab_acpi(&systab);
        acpi_rsdp_source = acpi_rsdp.map(|_| "/sys/firmware/efi/systab");
    }
    if acpi_rsdp.is_none()
        && let Ok(Some(bp)) = root.read_prefix("/sys/kernel/boot_params/data", 4096)
        && let Some(b) = bp.get(0x70..0x78)
    {
        let addr = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        if addr != 0 {
            acpi_rsdp = Some(addr);
            acpi_rsdp_source = Some("/sys/kernel/boot_params/data");
        }
    }
    Ok(LoaderInputs { memory_map, kcore, acpi_rsdp, acpi_rsdp_source, warnings })
}

/// `ACPI20=0x…` (preferred) or `ACPI=0x…` from `/sys/firmware/efi/systab`.
fn parse_efi_systab_acpi(text: &str) -> Option<u64> {
    let find = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| {
            let v = v.trim();
            u64::from_str_radix(v.strip_prefix("0x").unwrap_or(v), 16).ok()
        })
    };
    find("ACPI20=").or_else(|| find("ACPI="))
}

impl SysError {
    fn source_text(&self) -> String {
        match self {
            SysError::Read { source, .. } => source.to_string(),
            SysError::Parse { source, .. } => source.to_string(),
        }
    }
}

/// Whether the kernel is locked down for confidentiality (`/sys/kernel/security/lockdown`),
/// which closes /proc/kcore; false when the file is missing or unreadable.
pub fn locked_for_confidentiality(root: &SysRoot) -> bool {
    matches!(root.read_optional("/sys/kernel/security/lockdown"), Ok(Some(t))
        if parse_lockdown(&t).is_ok_and(|l| l == Lockdown::Confidentiality))
}

/// Whether a kernel is loaded for `kexec -e` (`/sys/kernel/kexec_loaded`) or, with `panic`,
/// a capture kernel (`kexec_crash_loaded`). A kernel without kexec has neither file: false.
pub fn kexec_loaded(root: &SysRoot, panic: bool) -> Result<bool, SysError> {
    let path = if panic { "/sys/kernel/kexec_crash_loaded" } else { "/sys/kernel/kexec_loaded" };
    match root.read_optional(path)? {
        Some(text) => parsed(path, parse_flag(path, &text)),
        None => Ok(false),
    }
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
    fn loader_inputs_from_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        write(
            b,
            "/proc/iomem",
            "00001000-0009fbff : System RAM\n00100000-3ffdffff : System RAM\n3ffe0000-3fffffff : Reserved\n",
        );
        write(b, "/sys/firmware/efi/systab", "MPS=0x1\nACPI=0x3fbfa000\nACPI20=0x3fbfa014\nSMBIOS=0x1\n");
        let got = collect_loader_inputs(&SysRoot::at(b)).unwrap();
        assert_eq!(got.memory_map.len(), 3);
        assert_eq!(got.acpi_rsdp, Some(0x3fbf_a014));
        assert!(got.kcore.is_none());
        assert!(got.warnings.iter().any(|w| w.contains("kcore")), "{:?}", got.warnings);
        assert_eq!(parse_efi_systab_acpi("ACPI=0x10\n"), Some(0x10));
        assert_eq!(parse_efi_systab_acpi("SMBIOS=0x10\n"), None);
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
