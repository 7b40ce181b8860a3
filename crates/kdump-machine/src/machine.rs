//! The machine description kdump works from, assembled from many small files.

use serde::{Deserialize, Serialize};

/// A physical address range with an inclusive end, as `/proc/iomem` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl PhysRange {
    /// Builds a range from a start and a non-zero length.
    pub fn from_start_len(start: u64, len: u64) -> Option<Self> {
        let end = start.checked_add(len.checked_sub(1)?)?;
        Some(Self { start, end })
    }

    /// Size in bytes (`end - start + 1`; saturates for the full 64-bit space).
    pub fn len(&self) -> u64 {
        (self.end - self.start).saturating_add(1)
    }

    /// Always false: an inclusive range holds at least one byte. Present for
    /// the `len`/`is_empty` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when `other` lies entirely inside `self`.
    pub fn contains_range(&self, other: &PhysRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// True when `addr` lies inside the range.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr <= self.end
    }
}

/// Where the running kernel keeps its VMCOREINFO note (`/sys/kernel/vmcoreinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmcoreinfoLocation {
    /// Physical address of the note.
    pub address: u64,
    /// Size of the note buffer in bytes.
    pub size: u64,
}

/// A CPU's crash-notes buffer, where the kernel saves its registers at panic
/// (`/sys/devices/system/cpu/cpuN/crash_notes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuNote {
    /// CPU number.
    pub cpu: u32,
    /// Physical address of the note buffer.
    pub address: u64,
    /// Buffer size in bytes (`crash_notes_size`).
    pub size: u64,
}

/// What kexec has loaded right now (`/sys/kernel/kexec_loaded`, `kexec_crash_loaded`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KexecState {
    /// A kernel is loaded for `kexec -e` (reboot).
    pub loaded: bool,
    /// A capture kernel is loaded for panics.
    pub crash_loaded: bool,
    /// Bytes of crash memory the kernel still holds (`kexec_crash_size`).
    pub crash_size: u64,
}

/// Kernel lockdown mode (`/sys/kernel/security/lockdown`). Under any mode
/// other than `None`, only signed kernels load, and only via kexec_file_load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lockdown {
    /// Lockdown available and off.
    None,
    /// Integrity mode: kexec_load refused.
    Integrity,
    /// Confidentiality mode: kexec_load and /proc/kcore refused.
    Confidentiality,
    /// The lockdown file is absent (no securityfs or no lockdown LSM).
    Unknown,
}

/// Everything kdump needs to know about the running kernel, in one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// `uname -r` of the running kernel, when known.
    pub kernel_release: Option<String>,
    /// Top-level System RAM ranges from /proc/iomem.
    pub system_ram: Vec<PhysRange>,
    /// `Crash kernel` ranges from /proc/iomem (empty: nothing reserved).
    pub crash_regions: Vec<PhysRange>,
    /// `Kernel code` from /proc/iomem.
    pub kernel_code: Option<PhysRange>,
    /// VMCOREINFO note location; absent without CONFIG_CRASH_CORE.
    pub vmcoreinfo: Option<VmcoreinfoLocation>,
    /// CPUs that can ever exist (`/sys/devices/system/cpu/possible`).
    pub possible_cpus: Vec<u32>,
    /// CPUs present now (`/sys/devices/system/cpu/present`).
    pub present_cpus: Vec<u32>,
    /// Crash-notes buffers of the CPUs that have one.
    pub crash_notes: Vec<CpuNote>,
    /// kexec load state.
    pub kexec: KexecState,
    /// Lockdown mode.
    pub lockdown: Lockdown,
    /// `kernel.kexec_load_disabled` sysctl: once set, no kexec load of either kind works until reboot.
    pub kexec_load_disabled: Option<bool>,
    /// Things that were missing or odd, each a sentence for a person.
    pub warnings: Vec<String>,
}

impl MachineInfo {
    /// Total bytes reserved for the capture kernel.
    pub fn crash_reserved(&self) -> u64 {
        self.crash_regions.iter().map(PhysRange::len).sum()
    }

    /// Total System RAM in bytes.
    pub fn ram_total(&self) -> u64 {
        self.system_ram.iter().map(PhysRange::len).sum()
    }

    /// The crash region kexec loads into: the highest one, as kexec-tools does
    /// when `crashkernel=X,high` and `,low` give two.
    pub fn load_crash_region(&self) -> Option<PhysRange> {
        self.crash_regions.iter().max_by_key(|r| r.start).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_arithmetic() {
        let r = PhysRange::from_start_len(0x1000, 0x1000).unwrap();
        assert_eq!(r, PhysRange { start: 0x1000, end: 0x1fff });
        assert_eq!(r.len(), 0x1000);
        assert!(r.contains(0x1fff) && !r.contains(0x2000));
        assert!(PhysRange::from_start_len(5, 0).is_none());
        assert!(PhysRange::from_start_len(u64::MAX, 2).is_none());
        assert_eq!(PhysRange { start: 0, end: u64::MAX }.len(), u64::MAX);
    }
}
