//! Writer for cpio archives in the SVR4 "newc" format, as unpacked by the
//! Linux kernel into the initramfs (rootfs).
//!
//! The crate is pure: it never touches the filesystem. Callers describe the
//! entries (regular files with their contents, directories, symlinks and
//! device nodes) and the [`Archive`] encodes them into bytes.
//!
//! # Format
//!
//! Every entry is a 110-byte ASCII header (magic `070701` followed by
//! thirteen 8-digit hexadecimal fields: `ino`, `mode`, `uid`, `gid`, `nlink`,
//! `mtime`, `filesize`, `devmajor`, `devminor`, `rdevmajor`, `rdevminor`,
//! `namesize`, `check`), then the NUL-terminated name padded with NULs so
//! that header plus name is a multiple of four bytes, then the body (file
//! contents or symlink target) padded to a multiple of four bytes. The
//! archive ends with an entry named `TRAILER!!!`. See the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst` and
//! `init/initramfs.c`.
//!
//! # Reproducibility
//!
//! The output depends only on the entries added and the archive-wide
//! settings, never on the order of the `add_*` calls:
//!
//! * entries are emitted sorted by their (normalised) path, byte-wise, so a
//!   directory always precedes its contents;
//! * a directory that is needed as a parent but was not added explicitly is
//!   emitted implicitly with mode `0755` ([`IMPLICIT_DIR_MODE`]);
//! * inode numbers are assigned sequentially from 1 in emission order;
//! * every entry gets the same mtime (default 0, see [`Archive::mtime`]) and
//!   the same owner (default `0:0`, see [`Archive::owner`]).
//!
//! # Paths
//!
//! Paths are normalised before use: leading `/`, repeated `/`, `.`
//! components and a trailing `/` are dropped, so `/bin/sh`, `./bin/sh` and
//! `bin//sh` all name the archive member `bin/sh`. Paths that are empty
//! after normalisation, contain a `..` component or a NUL byte, are longer
//! than [`MAX_NAME_LEN`] bytes, or equal the trailer name are rejected, as
//! are duplicates and entries whose parent was added as a non-directory.
//!
//! # Example
//!
//! ```
//! use kdump_cpio::Archive;
//!
//! # fn main() -> Result<(), kdump_cpio::Error> {
//! let mut archive = Archive::new().mtime(1_700_000_000);
//! archive
//!     .add_file("/init", 0o755, b"#!/bin/sh\nexec /bin/busybox sh\n".to_vec())?
//!     .add_symlink("/bin/sh", "busybox")?
//!     .add_char_device("/dev/console", 0o600, 5, 1)?
//!     .add_dir("/proc", 0o555)?;
//! let bytes = archive.encode()?;
//! assert_eq!(&bytes[..6], b"070701");
//! assert_eq!(bytes.len() as u64, archive.encoded_len());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Magic number at the start of every newc header (no checksum variant).
pub const MAGIC: &[u8; 6] = b"070701";

/// Length in bytes of a newc header, magic included.
pub const HEADER_LEN: usize = 110;

/// Name of the entry that terminates an archive.
pub const TRAILER_NAME: &str = "TRAILER!!!";

/// Longest accepted archive member name, in bytes.
///
/// The kernel ignores entries whose `namesize` (name plus its NUL) exceeds
/// `PATH_MAX` (4096).
pub const MAX_NAME_LEN: usize = 4095;

/// Longest accepted symlink target, in bytes (`PATH_MAX` minus the NUL).
pub const MAX_SYMLINK_TARGET_LEN: usize = 4095;

/// Largest regular file the format can describe (`filesize` is 32 bits).
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;

/// Largest device major number the kernel can represent (12 bits).
pub const MAX_DEVICE_MAJOR: u32 = (1 << 12) - 1;

/// Largest device minor number the kernel can represent (20 bits).
pub const MAX_DEVICE_MINOR: u32 = (1 << 20) - 1;

/// Permission bits of directories created implicitly as parents.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

const PERMISSION_MASK: u32 = 0o7777;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;

/// Errors reported while building or writing an archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path is empty once leading `/`, `.` components and repeated
    /// slashes are removed (for example `""`, `"/"` or `"./"`).
    #[error("path {0:?} is empty after normalisation")]
    EmptyPath(PathBuf),
    /// The path contains a NUL byte.
    #[error("path {0:?} contains a NUL byte")]
    NulInPath(PathBuf),
    /// The path contains a `..` component.
    #[error("path {0:?} contains a '..' component")]
    ParentComponent(PathBuf),
    /// The normalised path is longer than [`MAX_NAME_LEN`] bytes.
    #[error("path {path:?} is {len} bytes long, the limit is {MAX_NAME_LEN}")]
    PathTooLong {
        /// The path as given.
        path: PathBuf,
        /// Length of the normalised path in bytes.
        len: usize,
    },
    /// The path normalises to [`TRAILER_NAME`], which would end the archive.
    #[error("path {0:?} is reserved for the archive trailer")]
    ReservedName(PathBuf),
    /// An entry with the same normalised path was already added.
    #[error("duplicate archive entry {0:?}")]
    Duplicate(PathBuf),
    /// An entry would live below a path that was added as a non-directory.
    #[error("{parent:?} is not a directory, so it cannot contain {path:?}")]
    ParentNotDirectory {
        /// Normalised path of the entry below `parent`.
        path: PathBuf,
        /// Normalised path of the non-directory entry.
        parent: PathBuf,
    },
    /// The mode has bits outside the permission bits `0o7777`.
    #[error("mode {mode:#o} of {path:?} has bits outside 0o7777")]
    InvalidMode {
        /// The path as given.
        path: PathBuf,
        /// The rejected mode.
        mode: u32,
    },
    /// The file is larger than [`MAX_FILE_SIZE`] bytes.
    #[error("file {path:?} is {size} bytes, newc allows at most {MAX_FILE_SIZE}")]
    FileTooLarge {
        /// The path as given.
        path: PathBuf,
        /// Size of the rejected contents.
        size: u64,
    },
    /// The symlink target is empty, contains a NUL byte or is longer than
    /// [`MAX_SYMLINK_TARGET_LEN`] bytes.
    #[error("invalid target for symlink {path:?}: {reason}")]
    InvalidSymlinkTarget {
        /// The path of the symlink as given.
        path: PathBuf,
        /// Why the target was rejected.
        reason: &'static str,
    },
    /// The device number does not fit the kernel's 12-bit major, 20-bit
    /// minor encoding.
    #[error(
        "device number {major}:{minor} of {path:?} is out of range \
         (major <= {MAX_DEVICE_MAJOR}, minor <= {MAX_DEVICE_MINOR})"
    )]
    DeviceNumberOutOfRange {
        /// The path as given.
        path: PathBuf,
        /// The requested major number.
        major: u32,
        /// The requested minor number.
        minor: u32,
    },
    /// The archive has more entries than 32-bit inode numbers can tell apart.
    #[error("too many archive entries ({0}) for 32-bit inode numbers")]
    TooManyEntries(usize),
    /// Writing the encoded archive failed.
    #[error("writing cpio archive: {0}")]
    Io(#[from] io::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceKind {
    Char,
    Block,
}

#[derive(Clone)]
enum Node {
    File { mode: u32, data: Vec<u8> },
    Dir { mode: u32 },
    Symlink { target: Vec<u8> },
    Device { kind: DeviceKind, mode: u32, major: u32, minor: u32 },
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::File { mode, data } => {
                f.debug_struct("File").field("mode", &format_args!("{mode:#o}")).field("len", &data.len()).finish()
            }
            Node::Dir { mode } => f.debug_struct("Dir").field("mode", &format_args!("{mode:#o}")).finish(),
            Node::Symlink { target } => {
                f.debug_struct("Symlink").field("target", &String::from_utf8_lossy(target)).finish()
            }
            Node::Device { kind, mode, major, minor } => f
                .debug_struct("Device")
                .field("kind", kind)
                .field("mode", &format_args!("{mode:#o}"))
                .field("major", major)
                .field("minor", minor)
                .finish(),
        }
    }
}

impl Node {
    fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }

    /// Full `st_mode`: file type plus permission bits.
    fn st_mode(&self) -> u32 {
        match self {
            Node::File { mode, .. } => S_IFREG | mode,
            Node::Dir { mode } => S_IFDIR | mode,
            Node::Symlink { .. } => S_IFLNK | 0o777,
            Node::Device { kind: DeviceKind::Char, mode, .. } => S_IFCHR | mode,
            Node::Device { kind: DeviceKind::Block, mode, .. } => S_IFBLK | mode,
        }
    }

    fn body(&self) -> &[u8] {
        match self {
            Node::File { data, .. } => data,
            Node::Symlink { target } => target,
            Node::Dir { .. } | Node::Device { .. } => &[],
        }
    }

    fn nlink(&self) -> u32 {
        if self.is_dir() { 2 } else { 1 }
    }

    fn rdev(&self) -> (u32, u32) {
        match self {
            Node::Device { major, minor, .. } => (*major, *minor),
            _ => (0, 0),
        }
    }
}

const IMPLICIT_DIR: Node = Node::Dir { mode: IMPLICIT_DIR_MODE };

/// An in-memory description of a newc cpio archive.
///
/// Entries are added with the `add_*` methods, which validate their
/// arguments immediately and return `&mut Self` so calls can be chained
/// with `?`. The archive is then serialised with [`Archive::encode`] or
/// [`Archive::write_to`]; see the [crate documentation](crate) for the
/// ordering and normalisation rules.
#[derive(Clone, Default)]
pub struct Archive {
    mtime: u32,
    uid: u32,
    gid: u32,
    entries: BTreeMap<Vec<u8>, Node>,
}

impl fmt::Debug for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entries<'a>(&'a BTreeMap<Vec<u8>, Node>);
        impl fmt::Debug for Entries<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.iter().map(|(name, node)| (String::from_utf8_lossy(name), node))).finish()
            }
        }
        f.debug_struct("Archive")
            .field("mtime", &self.mtime)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("entries", &Entries(&self.entries))
            .finish()
    }
}

impl Archive {
    /// Creates an empty archive with mtime 0 and owner `0:0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the modification time (seconds since the Unix epoch) recorded
    /// for every entry. Defaults to 0.
    #[must_use]
    pub fn mtime(mut self, mtime: u32) -> Self {
        self.mtime = mtime;
        self
    }

    /// Sets the numeric owner recorded for every entry, implicit parent
    /// directories included. Defaults to `0:0` (root).
    #[must_use]
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Adds a regular file with permission bits `mode` (at most `0o7777`,
    /// e.g. `0o755`) and contents `data`.
    ///
    /// Fails if the path is invalid or already present, if `mode` has bits
    /// outside `0o7777`, or if `data` is larger than [`MAX_FILE_SIZE`].
    pub fn add_file(
        &mut self,
        path: impl AsRef<Path>,
        mode: u32,
        data: impl Into<Vec<u8>>,
    ) -> Result<&mut Self, Error> {
        let path = path.as_ref();
        check_mode(path, mode)?;
        let data = data.into();
        check_file_size(path, data.len() as u64)?;
        self.insert(path, Node::File { mode, data })
    }

    /// Adds a directory with permission bits `mode` (at most `0o7777`).
    ///
    /// Adding a directory that is otherwise created implicitly (because
    /// entries below it exist) only changes its mode.
    pub fn add_dir(&mut self, path: impl AsRef<Path>, mode: u32) -> Result<&mut Self, Error> {
        let path = path.as_ref();
        check_mode(path, mode)?;
        self.insert(path, Node::Dir { mode })
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    ///
    /// The target is stored verbatim (it is not normalised and may be
    /// absolute or contain `..`); it must be non-empty, free of NUL bytes
    /// and at most [`MAX_SYMLINK_TARGET_LEN`] bytes long. The link's mode
    /// is recorded as `0777`.
    pub fn add_symlink(&mut self, path: impl AsRef<Path>, target: impl AsRef<Path>) -> Result<&mut Self, Error> {
        let path = path.as_ref();
        let target = target.as_ref().as_os_str().as_bytes();
        let reason = if target.is_empty() {
            Some("target is empty")
        } else if target.contains(&0) {
            Some("target contains a NUL byte")
        } else if target.len() > MAX_SYMLINK_TARGET_LEN {
            Some("target is longer than PATH_MAX - 1 bytes")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidSymlinkTarget { path: path.to_owned(), reason });
        }
        self.insert(path, Node::Symlink { target: target.to_vec() })
    }

    /// Adds a character device node with permission bits `mode` and device
    /// number `major:minor` (at most [`MAX_DEVICE_MAJOR`] and
    /// [`MAX_DEVICE_MINOR`]).
    pub fn add_char_device(
        &mut self,
        path: impl AsRef<Path>,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, Error> {
        self.add_device(path.as_ref(), DeviceKind::Char, mode, major, minor)
    }

    /// Adds a block device node with permission bits `mode` and device
    /// number `major:minor` (at most [`MAX_DEVICE_MAJOR`] and
    /// [`MAX_DEVICE_MINOR`]).
    pub fn add_block_device(
        &mut self,
        path: impl AsRef<Path>,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, Error> {
        self.add_device(path.as_ref(), DeviceKind::Block, mode, major, minor)
    }

    /// Exact number of bytes [`Archive::encode`] and [`Archive::write_to`]
    /// produce, trailer included.
    pub fn encoded_len(&self) -> u64 {
        self.plan().iter().map(|(name, node)| record_len(name.len(), node.body().len())).sum::<u64>()
            + record_len(TRAILER_NAME.len(), 0)
    }

    /// Encodes the archive, trailer included, into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let capacity = usize::try_from(self.encoded_len()).unwrap_or(0);
        let mut out = Vec::with_capacity(capacity);
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Writes the encoded archive, trailer included, to `w` and returns the
    /// number of bytes written.
    ///
    /// No padding is added after the trailer; the result can be
    /// concatenated with other (possibly compressed) archives as the kernel
    /// allows.
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> Result<u64, Error> {
        let plan = self.plan();
        if u32::try_from(plan.len()).is_err() {
            return Err(Error::TooManyEntries(plan.len()));
        }
        let mut written = 0;
        for (index, (name, node)) in plan.into_iter().enumerate() {
            // Cannot truncate: the entry count was checked above.
            let ino = (index + 1) as u32;
            let (rdevmajor, rdevminor) = node.rdev();
            written += write_record(
                w,
                &Record {
                    ino,
                    mode: node.st_mode(),
                    uid: self.uid,
                    gid: self.gid,
                    nlink: node.nlink(),
                    mtime: self.mtime,
                    rdevmajor,
                    rdevminor,
                    name,
                    body: node.body(),
                },
            )?;
        }
        written += write_record(
            w,
            &Record {
                ino: 0,
                mode: 0,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: 0,
                rdevmajor: 0,
                rdevminor: 0,
                name: TRAILER_NAME.as_bytes(),
                body: &[],
            },
        )?;
        Ok(written)
    }

    fn add_device(
        &mut self,
        path: &Path,
        kind: DeviceKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, Error> {
        check_mode(path, mode)?;
        if major > MAX_DEVICE_MAJOR || minor > MAX_DEVICE_MINOR {
            return Err(Error::DeviceNumberOutOfRange { path: path.to_owned(), major, minor });
        }
        self.insert(path, Node::Device { kind, mode, major, minor })
    }

    fn insert(&mut self, path: &Path, node: Node) -> Result<&mut Self, Error> {
        let name = normalize(path)?;
        if self.entries.contains_key(&name) {
            return Err(Error::Duplicate(path.to_owned()));
        }
        // Every existing ancestor must be a directory.
        for (i, _) in name.iter().enumerate().filter(|&(_, &b)| b == b'/') {
            let parent = &name[..i];
            if let Some(existing) = self.entries.get(parent)
                && !existing.is_dir()
            {
                return Err(Error::ParentNotDirectory { path: bytes_to_path(&name), parent: bytes_to_path(parent) });
            }
        }
        // A non-directory must not have existing descendants. Names with the
        // prefix `name/` sort contiguously, starting at `name/` itself.
        if !node.is_dir() {
            let mut prefix = name.clone();
            prefix.push(b'/');
            if let Some((child, _)) = self.entries.range(prefix.clone()..).next()
                && child.starts_with(&prefix)
            {
                return Err(Error::ParentNotDirectory { path: bytes_to_path(child), parent: bytes_to_path(&name) });
            }
        }
        self.entries.insert(name, node);
        Ok(self)
    }

    /// All entries to emit, implicit parent directories included, sorted
    /// by name.
    fn plan(&self) -> Vec<(&[u8], &Node)> {
        let mut all: BTreeMap<&[u8], &Node> = self.entries.iter().map(|(name, node)| (name.as_slice(), node)).collect();
        for name in self.entries.keys() {
            for (i, _) in name.iter().enumerate().filter(|&(_, &b)| b == b'/') {
                all.entry(&name[..i]).or_insert(&IMPLICIT_DIR);
            }
        }
        all.into_iter().collect()
    }
}

fn bytes_to_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Turns `path` into an archive member name; see the crate documentation.
fn normalize(path: &Path) -> Result<Vec<u8>, Error> {
    let raw = path.as_os_str().as_bytes();
    if raw.contains(&0) {
        return Err(Error::NulInPath(path.to_owned()));
    }
    let mut name = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => return Err(Error::ParentComponent(path.to_owned())),
            _ => {}
        }
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(component);
    }
    if name.is_empty() {
        return Err(Error::EmptyPath(path.to_owned()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::PathTooLong { path: path.to_owned(), len: name.len() });
    }
    if name == TRAILER_NAME.as_bytes() {
        return Err(Error::ReservedName(path.to_owned()));
    }
    Ok(name)
}

fn check_mode(path: &Path, mode: u32) -> Result<(), Error> {
    if mode & !PERMISSION_MASK != 0 {
        return Err(Error::InvalidMode { path: path.to_owned(), mode });
    }
    Ok(())
}

fn check_file_size(path: &Path, size: u64) -> Result<(), Error> {
    if size > MAX_FILE_SIZE {
        return Err(Error::FileTooLarge { path: path.to_owned(), size });
    }
    Ok(())
}

/// Number of NUL bytes needed after `len` bytes to reach a multiple of 4.
fn pad4(len: u64) -> u64 {
    (4 - len % 4) % 4
}

/// Size of one record: header, name with NUL and padding, body and padding.
fn record_len(name_len: usize, body_len: usize) -> u64 {
    let head = (HEADER_LEN + name_len + 1) as u64;
    let body = body_len as u64;
    head + pad4(head) + body + pad4(body)
}

struct Record<'a> {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    rdevmajor: u32,
    rdevminor: u32,
    name: &'a [u8],
    body: &'a [u8],
}

fn write_record<W: Write + ?Sized>(w: &mut W, rec: &Record<'_>) -> io::Result<u64> {
    // Both were validated when the entry was added.
    let namesize = u32::try_from(rec.name.len() + 1).expect("name length was validated");
    let filesize = u32::try_from(rec.body.len()).expect("body length was validated");
    let fields = [
        rec.ino,
        rec.mode,
        rec.uid,
        rec.gid,
        rec.nlink,
        rec.mtime,
        filesize,
        0, // devmajor: only used by the kernel to match hard links
        0, // devminor
        rec.rdevmajor,
        rec.rdevminor,
        namesize,
        0, // check: always 0 for 070701
    ];
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    for (chunk, value) in header[MAGIC.len()..].chunks_exact_mut(8).zip(fields) {
        put_hex(chunk, value);
    }
    const ZEROS: [u8; 4] = [0; 4];
    let head = (HEADER_LEN + rec.name.len() + 1) as u64;
    let head_pad = pad4(head) as usize;
    let body_pad = pad4(rec.body.len() as u64) as usize;
    w.write_all(&header)?;
    w.write_all(rec.name)?;
    // The name's NUL terminator followed by the padding.
    w.write_all(&ZEROS[..1 + head_pad])?;
    w.write_all(rec.body)?;
    w.write_all(&ZEROS[..body_pad])?;
    Ok(record_len(rec.name.len(), rec.body.len()))
}

/// Writes `value` as 8 lowercase hexadecimal digits into `out`.
fn put_hex(out: &mut [u8], value: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().rev().enumerate() {
        *byte = DIGITS[((value >> (4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests;
