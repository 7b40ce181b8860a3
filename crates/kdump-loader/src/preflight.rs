//! Checks made before any syscall, so a load that cannot work is refused with
//! its cause and its fix instead of a bare errno.

use kdump_machine::{Lockdown, MachineInfo};

use crate::image::BzImage;

/// Which syscall will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    /// kexec_file_load: the kernel parses and places the image itself.
    File,
    /// kexec_load: user space places every segment.
    Legacy,
}

/// Memory a panic load needs beyond the kernel and initrd: boot parameters,
/// the kernel's purgatory, ELF core headers and control pages, rounded up.
pub const LOAD_OVERHEAD: u64 = 1 << 20;

/// Memory a capture kernel needs to run once booted, used to suggest a
/// `crashkernel=` size (not enforced: the need depends on drivers and dump tools).
pub const CAPTURE_RUNTIME: u64 = 128 << 20;

/// Everything preflight looks at.
#[derive(Debug, Clone)]
pub struct LoadCheck<'a> {
    /// The running machine.
    pub machine: &'a MachineInfo,
    /// Panic (capture) load.
    pub panic: bool,
    /// The syscall that will be used.
    pub syscall: Syscall,
    /// The kernel image header.
    pub image: &'a BzImage,
    /// Initrd size in bytes, if any.
    pub initrd_len: Option<u64>,
    /// The caller holds CAP_SYS_BOOT.
    pub cap_sys_boot: bool,
}

/// A reason the load cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// No CAP_SYS_BOOT.
    #[error("kexec needs CAP_SYS_BOOT: run it as root")]
    NotPermitted,
    /// kexec_load_disabled is set.
    #[error("kernel.kexec_load_disabled is 1: the kernel refuses every kexec load until the next reboot")]
    LoadDisabled,
    /// Panic load without crashkernel=.
    #[error(
        "no memory is reserved for a capture kernel (/proc/iomem has no \"Crash kernel\" range): \
         add crashkernel={suggest_mib}M to the kernel command line (e.g. GRUB_CMDLINE_LINUX in /etc/default/grub, \
         then update-grub) and reboot"
    )]
    NoCrashMemory {
        /// Suggested reservation in MiB.
        suggest_mib: u64,
    },
    /// The reservation was released (kexec_crash_size shrunk to 0).
    #[error("the crash memory was released (/sys/kernel/kexec_crash_size is 0): reboot to reserve it again")]
    CrashMemoryReleased,
    /// Kernel + initrd larger than the reservation.
    #[error(
        "the capture kernel needs {need_mib} MiB to load (kernel init_size {init_mib} MiB + initrd {initrd_mib} MiB \
         + {overhead_mib} MiB of boot data) but crashkernel= reserved {have_mib} MiB: {short_mib} MiB short; \
         boot with crashkernel={suggest_mib}M or use a smaller initrd"
    )]
    CrashMemoryTooSmall {
        /// What the load needs.
        need_mib: u64,
        /// The kernel's init_size.
        init_mib: u64,
        /// The initrd.
        initrd_mib: u64,
        /// Fixed overhead.
        overhead_mib: u64,
        /// What is reserved (the region loaded into).
        have_mib: u64,
        /// The difference.
        short_mib: u64,
        /// A size that leaves room to run.
        suggest_mib: u64,
    },
    /// kexec_load under lockdown.
    #[error("kernel lockdown ({mode}) refuses kexec_load: use kexec_file_load (-s, the default) with a signed kernel")]
    LockdownRefusesLegacy {
        /// The lockdown mode.
        mode: &'static str,
    },
}

fn mib_up(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

fn page_up(bytes: u64) -> u64 {
    bytes.div_ceil(4096) * 4096
}

/// The `crashkernel=` size (MiB, a multiple of 64) to suggest for a load that needs `need` bytes.
pub fn suggest_crashkernel_mib(need: u64) -> u64 {
    mib_up(need + CAPTURE_RUNTIME).div_ceil(64) * 64
}

/// Bytes a panic load of this kernel and initrd occupies in the crash region.
pub fn crash_load_size(image: &BzImage, initrd_len: Option<u64>) -> u64 {
    page_up(u64::from(image.init_size)) + page_up(initrd_len.unwrap_or(0)) + LOAD_OVERHEAD
}

/// Every problem found; empty means the load may proceed.
pub fn check_load(c: &LoadCheck<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !c.cap_sys_boot {
        problems.push(Problem::NotPermitted);
    }
    if c.machine.kexec_load_disabled == Some(true) {
        problems.push(Problem::LoadDisabled);
    }
    if c.syscall == Syscall::Legacy {
        match c.machine.lockdown {
            Lockdown::Integrity => problems.push(Problem::LockdownRefusesLegacy { mode: "integrity" }),
            Lockdown::Confidentiality => problems.push(Problem::LockdownRefusesLegacy { mode: "confidentiality" }),
            Lockdown::None | Lockdown::Unknown => {}
        }
    }
    if c.panic {
        let need = crash_load_size(c.image, c.initrd_len);
        match c.machine.load_crash_region() {
            None => problems.push(Problem::NoCrashMemory { suggest_mib: suggest_crashkernel_mib(need) }),
            Some(_) if c.machine.kexec.crash_size == 0 && !c.machine.crash_regions.is_empty() => {
                problems.push(Problem::CrashMemoryReleased)
            }
            Some(region) if region.len() < need => problems.push(Problem::CrashMemoryTooSmall {
                need_mib: mib_up(need),
                init_mib: mib_up(u64::from(c.image.init_size)),
                initrd_mib: mib_up(c.initrd_len.unwrap_or(0)),
                overhead_mib: mib_up(LOAD_OVERHEAD),
                have_mib: region.len() >> 20,
                short_mib: mib_up(need - region.len()),
                suggest_mib: suggest_crashkernel_mib(need),
            }),
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::fake_bzimage;
    use kdump_machine::{KexecState, PhysRange};

    fn machine(crash_mib: u64) -> MachineInfo {
        let crash = PhysRange::from_start_len(0x2f00_0000, crash_mib << 20);
        MachineInfo {
            kernel_release: None,
            system_ram: vec![PhysRange { start: 0x10_0000, end: 0x3ffd_6fff }],
            crash_regions: crash.into_iter().collect(),
            kernel_code: None,
            vmcoreinfo: None,
            possible_cpus: vec![0],
            present_cpus: vec![0],
            crash_notes: vec![],
            kexec: KexecState { loaded: false, crash_loaded: false, crash_size: crash_mib << 20 },
            lockdown: Lockdown::None,
            kexec_load_disabled: Some(false),
            warnings: vec![],
        }
    }

    fn check(m: &MachineInfo, syscall: Syscall, initrd: u64, cap: bool) -> Vec<Problem> {
        let image = BzImage::parse(&fake_bzimage()).unwrap();
        check_load(&LoadCheck {
            machine: m,
            panic: true,
            syscall,
            image: &image,
            initrd_len: Some(initrd),
            cap_sys_boot: cap,
        })
    }

    #[test]
    fn a_fitting_load_passes() {
        assert_eq!(check(&machine(256), Syscall::File, 20 << 20, true), vec![]);
    }

    #[test]
    fn too_small_says_by_how_much() {
        let problems = check(&machine(16), Syscall::File, 4 << 20, true);
        let [Problem::CrashMemoryTooSmall { need_mib, have_mib, short_mib, suggest_mib, .. }] = problems.as_slice()
        else {
            panic!("{problems:?}")
        };
        assert_eq!((*need_mib, *have_mib), (57, 16));
        assert_eq!(*short_mib, 41);
        assert_eq!(*suggest_mib, 192);
        assert!(problems[0].to_string().contains("41 MiB short"));
    }

    #[test]
    fn nothing_reserved_lockdown_and_permissions() {
        let mut m = machine(0);
        m.kexec.crash_size = 0;
        m.lockdown = Lockdown::Integrity;
        m.kexec_load_disabled = Some(true);
        let problems = check(&m, Syscall::Legacy, 0, false);
        assert!(problems.contains(&Problem::NotPermitted));
        assert!(problems.contains(&Problem::LoadDisabled));
        assert!(problems.contains(&Problem::LockdownRefusesLegacy { mode: "integrity" }));
        assert!(problems.iter().any(|p| matches!(p, Problem::NoCrashMemory { .. })), "{problems:?}");
        // kexec_file_load is what lockdown allows.
        assert!(!check(&m, Syscall::File, 0, true).iter().any(|p| matches!(p, Problem::LockdownRefusesLegacy { .. })));
    }
}
