//! Block devices: the `/sys/class/block` scan, their superblocks' first bytes and the drivers behind them.
//!
//! Errors are plain `std::io::Error`s (with the errno); the binaries add context.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::SysRoot;

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
    driver_modules_above(root, &format!("/sys/class/block/{name}"))
}

/// The driver modules of a class device (`/sys/class/X/NAME`) and of every device above it
/// (the bus driver too: a disk needs its controller's driver, a NIC its bus's).
pub(crate) fn driver_modules_above(root: &SysRoot, class_path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut dir) = std::fs::canonicalize(root.path(class_path)) else { return out };
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
