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

/// Like [`reserve_space`], but `Ok(false)` where the filesystem cannot reserve space.
pub fn reserve_space_if_supported(file: &File, len: u64) -> io::Result<bool> {
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
