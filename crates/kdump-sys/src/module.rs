//! Kernel modules: loading one from a file, and the running kernel's release.
//!
//! Errors are plain `std::io::Error`s (with the errno); the binaries add context.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use crate::SysRoot;

/// Loads a kernel module from an open `.ko` file (`finit_module(fd, "", 0)`).
/// A module that is already loaded is not an error.
pub fn finit_module(module: &File) -> io::Result<()> {
    let params = c"";
    // SAFETY: the fd is open for the call and `params` is a NUL-terminated static string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, module.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) { Ok(()) } else { Err(err) }
}

/// The running kernel's release (`/proc/sys/kernel/osrelease`).
pub fn kernel_release(root: &SysRoot) -> io::Result<String> {
    root.read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).map_err(|e| io::Error::other(e.to_string()))
}
