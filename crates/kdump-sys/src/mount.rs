//! Mounting the dump target and reading the mount table.
//!
//! Errors are plain `std::io::Error`s (with the errno); the binaries add context.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use crate::SysRoot;
use crate::util::{check, cstring};

/// `mount(source, target, fstype, flags, NULL)`.
pub fn mount(source: &str, target: &Path, fstype: &str, flags: libc::c_ulong) -> io::Result<()> {
    let source = CString::new(source).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in source"))?;
    let fstype = CString::new(fstype).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in fstype"))?;
    let target = cstring(target)?;
    // SAFETY: all three strings are NUL-terminated and live across the call; data is NULL.
    check(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, std::ptr::null()) })
}

/// `umount(target)`.
pub fn umount(target: &Path) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: a NUL-terminated path that lives across the call.
    check(unsafe { libc::umount(target.as_ptr()) })
}

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The source (device).
    pub source: String,
    /// Where.
    pub target: PathBuf,
    /// Filesystem type.
    pub fstype: String,
}

/// The mounts of this process's namespace.
pub fn mounts(root: &SysRoot) -> io::Result<Vec<Mount>> {
    let text = root.read("/proc/self/mounts").map_err(|e| io::Error::other(e.to_string()))?;
    let unescape = |s: &str| s.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\");
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(Mount {
                source: unescape(w.next()?),
                target: PathBuf::from(unescape(w.next()?)),
                fstype: w.next()?.to_string(),
            })
        })
        .collect())
}

/// `mount` failed because something is mounted there already.
pub fn is_already_mounted(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY)
}

/// `umount` failed because nothing is mounted there.
pub fn is_not_mounted(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}
