//! Dump files: created private and new, their metadata space reserved up front.
//!
//! Errors are plain `std::io::Error`s (with the errno); the binaries add context.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::util::check;

/// Creates `path` as a new file, read-write, mode 0600, failing if anything is
/// there already, a symlink included (`O_EXCL|O_NOFOLLOW`): a dump holds the
/// crashed machine's memory and must not land where someone else points it.
pub fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// `NFS_SUPER_MAGIC`.
const NFS_MAGIC: i64 = 0x6969;

/// Whether `file` is on NFS.
pub fn is_on_nfs(file: &File) -> bool {
    // SAFETY: fstatfs fills the zeroed struct it is given; the descriptor is open.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` lives across the call.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &raw mut st) };
    rc == 0 && st.f_type == NFS_MAGIC
}

/// Like [`reserve_space`], but `Ok(false)` where the filesystem cannot reserve space, and
/// on NFS: its ALLOCATE (NFSv4.2) makes some servers fail the writes that follow, and a
/// server's space is not this machine's to reserve anyway.
pub fn reserve_space_if_supported(file: &File, len: u64) -> io::Result<bool> {
    if is_on_nfs(file) {
        return Ok(false);
    }
    match reserve_space(file, len) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reserves `len` bytes for a file (`fallocate`), so that space is there later.
pub fn reserve_space(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: fallocate on an open descriptor; no pointers.
    check(unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) })
}
