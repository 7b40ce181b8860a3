//! What the kdump service needs from the system: mounts, module loading,
//! block devices, reboot/poweroff/halt and the crash trigger.
//!
//! Errors are plain `std::io::Error`s (with the errno); the binary adds context.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::SysRoot;

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

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

/// A block device of `/sys/class/block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name (`nvme0n1p1`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// Every block device the kernel knows, sorted by name.
pub fn block_devices(root: &SysRoot) -> io::Result<Vec<BlockDevice>> {
    let dir = match std::fs::read_dir(root.path("/sys/class/block")) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in dir {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let sectors = root
            .read_optional(&format!("/sys/class/block/{name}/size"))
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        out.push(BlockDevice { name, size: sectors * 512 });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The kernel name of a device node (`/dev/nvme0n1` → `nvme0n1`), following symlinks.
pub fn block_name_of(dev: &Path) -> Option<String> {
    let real = std::fs::canonicalize(dev).unwrap_or_else(|_| dev.to_path_buf());
    real.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Reads up to `len` bytes from the start of a device (fewer if it is smaller).
pub fn read_head(dev: &Path, len: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(len);
    File::open(dev)?.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The loadable modules that drive a block device: the `driver/module` of the
/// device and of every parent in sysfs (e.g. `virtio_blk`, `virtio_pci`).
pub fn block_device_modules(root: &SysRoot, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut dir) = std::fs::canonicalize(root.path(&format!("/sys/class/block/{name}"))) else { return out };
    let top = root.path("/sys/devices");
    loop {
        if let Ok(module) = std::fs::read_link(dir.join("driver/module"))
            && let Some(m) = module.file_name()
        {
            let m = m.to_string_lossy().into_owned();
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if !dir.pop() || !dir.starts_with(&top) {
            break;
        }
    }
    out
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

/// The running kernel's release (`/proc/sys/kernel/osrelease`).
pub fn kernel_release(root: &SysRoot) -> io::Result<String> {
    root.read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).map_err(|e| io::Error::other(e.to_string()))
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

/// `mount` failed because something is mounted there already.
pub fn is_already_mounted(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY)
}

/// `umount` failed because nothing is mounted there.
pub fn is_not_mounted(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_devices_and_modules_from_a_captured_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        let dev = dir.path().join("sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("size"), "2048\n").unwrap();
        std::fs::create_dir_all(dir.path().join("sys/module/virtio_blk")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/module/virtio_pci")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/bus/virtio/drivers/virtio_blk")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/bus/pci/drivers/virtio-pci")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("sys/module/virtio_blk"),
            dir.path().join("sys/bus/virtio/drivers/virtio_blk/module"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("sys/module/virtio_pci"),
            dir.path().join("sys/bus/pci/drivers/virtio-pci/module"),
        )
        .unwrap();
        let virtio1 = dir.path().join("sys/devices/pci0000:00/0000:00:04.0/virtio1");
        std::os::unix::fs::symlink(dir.path().join("sys/bus/virtio/drivers/virtio_blk"), virtio1.join("driver"))
            .unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("sys/bus/pci/drivers/virtio-pci"),
            dir.path().join("sys/devices/pci0000:00/0000:00:04.0/driver"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
        std::os::unix::fs::symlink(&dev, dir.path().join("sys/class/block/vda")).unwrap();

        let devs = block_devices(&root).unwrap();
        assert_eq!(devs, [BlockDevice { name: "vda".into(), size: 1 << 20 }]);
        assert_eq!(block_device_modules(&root, "vda"), ["virtio_blk", "virtio_pci"]);
        assert!(block_device_modules(&root, "nosuch").is_empty());
    }
}
