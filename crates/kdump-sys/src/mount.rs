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
    mount_data(source, target, fstype, flags, None)
}

/// `mount(source, target, fstype, flags, data)`: with `data`, the filesystem's own options
/// (the text an NFS mount takes: `vers=4.1,addr=…`).
pub fn mount_with_options(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    mount_data(source, target, fstype, flags, Some(data))
}

fn mount_data(source: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    let c =
        |s: &str, what: &'static str| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, what));
    let source = c(source, "NUL in source")?;
    let fstype = c(fstype, "NUL in fstype")?;
    let data = data.map(|d| c(d, "NUL in options")).transpose()?;
    let target = cstring(target)?;
    let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every string is NUL-terminated and lives across the call; `data` is NULL or the
    // NUL-terminated option text the kernel reads for this fstype.
    check(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data_ptr) })
}

/// [`mount_with_options`] on a thread, waited for at most `limit`: a network filesystem's
/// mount can block in the kernel on a server that accepts connections but never answers. On
/// timeout the error is `TimedOut` and the thread is left to the kernel (a later success
/// leaves the filesystem mounted).
pub fn mount_with_options_within(
    source: &str,
    target: &Path,
    fstype: &str,
    data: &str,
    limit: std::time::Duration,
) -> io::Result<()> {
    let (source, target, fstype, data) =
        (source.to_string(), target.to_path_buf(), fstype.to_string(), data.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(mount_with_options(&source, &target, &fstype, 0, &data));
    });
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the mount did not finish within {} s", limit.as_secs()),
        )),
    }
}

/// `mount` failed because the kernel does not know the filesystem type (its module is missing).
pub fn is_unknown_fstype(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENODEV)
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
