//! Crash hotplug (Linux 6.6+): whether the kernel rewrites the loaded capture image's ELF
//! core headers itself when CPUs or memory come and go, and how large it needs them.

use kdump_machine::sysfs::{parse_decimal, parse_flag};

use crate::{SysError, SysRoot};

/// Where the elfcorehdr size is published: `/sys/kernel/kexec/` on kernels that grouped the
/// kexec files (the old path stays as a symlink there), `/sys/kernel/` before.
const ELFCOREHDR_SIZE_PATHS: [&str; 2] =
    ["/sys/kernel/kexec/crash_elfcorehdr_size", "/sys/kernel/crash_elfcorehdr_size"];
/// `1` when the kernel updates the loaded capture image on CPU hotplug, `0` when it does not
/// (or nothing is loaded); absent without `CONFIG_CRASH_HOTPLUG` + `CONFIG_HOTPLUG_CPU`.
pub const CPU_CRASH_HOTPLUG: &str = "/sys/devices/system/cpu/crash_hotplug";
/// The same for memory hotplug (absent without `CONFIG_MEMORY_HOTPLUG`).
pub const MEMORY_CRASH_HOTPLUG: &str = "/sys/devices/system/memory/crash_hotplug";

/// What the running kernel says about crash hotplug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CrashHotplug {
    /// `crash_elfcorehdr_size`: the program-header bytes the kernel may write into the
    /// elfcorehdr segment on an update. `None`: this kernel has no crash hotplug.
    pub elfcorehdr_size: Option<u64>,
    /// `cpu/crash_hotplug`: whether the kernel updates the loaded capture image on CPU
    /// hotplug. `None`: no such file (no crash hotplug, or no CPU hotplug).
    pub cpu: Option<bool>,
    /// `memory/crash_hotplug`: the same for memory hotplug.
    pub memory: Option<bool>,
}

impl CrashHotplug {
    /// The kernel can update a kexec_load image's headers if the loader asks
    /// (`KEXEC_UPDATE_ELFCOREHDR`) and sizes them for it.
    pub fn kernel_supports(&self) -> bool {
        self.elfcorehdr_size.is_some() && (self.cpu.is_some() || self.memory.is_some())
    }

    /// What a kexec_load panic load passes as `Options::hotplug`: the size to reserve
    /// for the kernel's header updates, where the kernel makes them.
    pub fn elfcorehdr_for_load(&self) -> Option<u64> {
        self.elfcorehdr_size.filter(|_| self.kernel_supports())
    }

    /// Whether the loaded capture image goes stale on CPU or memory hotplug, so that user
    /// space must reload it: the kernel said it does not update it (`0`, e.g. a kexec_load
    /// image loaded without `KEXEC_UPDATE_ELFCOREHDR`), or the kernel has no crash hotplug.
    pub fn reload_needed(&self) -> bool {
        self.cpu == Some(false) || self.memory == Some(false) || (self.cpu.is_none() && self.memory.is_none())
    }
}

/// Reads the crash hotplug files; absent files are `None`, unreadable or garbled ones errors.
pub fn crash_hotplug(root: &SysRoot) -> Result<CrashHotplug, SysError> {
    let flag = |path: &'static str| -> Result<Option<bool>, SysError> {
        root.read_optional(path)?
            .map(|t| parse_flag(path, &t).map_err(|source| SysError::Parse { path: path.into(), source }))
            .transpose()
    };
    let mut elfcorehdr_size = None;
    for path in ELFCOREHDR_SIZE_PATHS {
        if let Some(text) = root.read_optional(path)? {
            let size = parse_decimal(path, &text).map_err(|source| SysError::Parse { path: path.into(), source })?;
            elfcorehdr_size = Some(size);
            break;
        }
    }
    Ok(CrashHotplug { elfcorehdr_size, cpu: flag(CPU_CRASH_HOTPLUG)?, memory: flag(MEMORY_CRASH_HOTPLUG)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(base: &std::path::Path, path: &str, text: &str) {
        let p = base.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_support_and_the_loaded_images_state() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        assert_eq!(crash_hotplug(&root).unwrap(), CrashHotplug::default());
        assert!(!crash_hotplug(&root).unwrap().kernel_supports());

        write(dir.path(), "/sys/kernel/crash_elfcorehdr_size", "462448\n");
        write(dir.path(), CPU_CRASH_HOTPLUG, "0\n");
        write(dir.path(), MEMORY_CRASH_HOTPLUG, "1\n");
        let hp = crash_hotplug(&root).unwrap();
        assert_eq!(hp, CrashHotplug { elfcorehdr_size: Some(462_448), cpu: Some(false), memory: Some(true) });
        assert!(hp.kernel_supports());
        assert!(hp.reload_needed(), "CPU hotplug leaves the image alone");
        assert!(!CrashHotplug { cpu: Some(true), ..hp }.reload_needed());
        assert!(!CrashHotplug { cpu: Some(true), memory: None, ..hp }.reload_needed(), "no memory hotplug");
        assert!(CrashHotplug::default().reload_needed(), "no crash hotplug");

        // The grouped /sys/kernel/kexec/ path wins over the old one.
        write(dir.path(), "/sys/kernel/kexec/crash_elfcorehdr_size", "1000\n");
        assert_eq!(crash_hotplug(&root).unwrap().elfcorehdr_size, Some(1000));

        write(dir.path(), MEMORY_CRASH_HOTPLUG, "yes\n");
        let err = crash_hotplug(&root).unwrap_err();
        assert!(format!("{err}").contains("memory/crash_hotplug"), "{err}");
    }
}
