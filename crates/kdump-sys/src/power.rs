//! Ending the capture kernel's work: reboot, power off or halt, and the sysrq crash of `kdump test`.
//!
//! Errors are plain `std::io::Error`s (with the errno); the binaries add context.

use std::io;

/// How to stop the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `LINUX_REBOOT_CMD_RESTART`.
    Reboot,
    /// `LINUX_REBOOT_CMD_POWER_OFF`.
    Poweroff,
    /// `LINUX_REBOOT_CMD_HALT`.
    Halt,
}

/// Flushes filesystems and stops the machine with `reboot(2)`. Returns only on failure.
pub fn stop_machine(how: Stop) -> io::Error {
    let cmd = match how {
        Stop::Reboot => libc::LINUX_REBOOT_CMD_RESTART,
        Stop::Poweroff => libc::LINUX_REBOOT_CMD_POWER_OFF,
        Stop::Halt => libc::LINUX_REBOOT_CMD_HALT,
    };
    crate::kexec::sync_filesystems();
    // SAFETY: reboot takes no pointer with these commands.
    unsafe { libc::reboot(cmd) };
    io::Error::last_os_error()
}

/// Crashes the machine on purpose: enables sysrq, syncs, writes `c` to
/// `/proc/sysrq-trigger`. Returns only on failure.
pub fn crash_now() -> io::Error {
    if let Err(e) = std::fs::write("/proc/sys/kernel/sysrq", "1") {
        return e;
    }
    crate::kexec::sync_filesystems();
    match std::fs::write("/proc/sysrq-trigger", "c") {
        Ok(()) => io::Error::other("the sysrq crash returned"),
        Err(e) => e,
    }
}
