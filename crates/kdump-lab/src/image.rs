//! Guest initramfs images, written with our own cpio writer.

use kdump_cpio::Archive;

use crate::tools::{busybox, static_tools};
use crate::{LabError, io_err};

/// Which kernel an image boots in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    First,
    Capture,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::First => "first",
            Role::Capture => "capture",
        }
    }
}

/// The lab's init: mount the pseudo filesystems and the results disk, run the
/// scenario under `sh -e -x`, report its status on the console, power off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /results /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
i=0
while [ ! -b /dev/nvme0n1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 /dev/nvme0n1 /results || echo "LAB-NOTE results disk not mounted"
echo "LAB-SCENARIO-BEGIN @ROLE@"
cd /
sh -e -x /lab/scenario.sh
rc=$?
echo "LAB-SCENARIO-END @ROLE@ rc=$rc"
sync
umount /results 2>/dev/null
poweroff -f
"#;

/// Builds one guest image. `extra` files are added as given.
pub(crate) fn build(role: Role, script: &str, extra: &[(String, Vec<u8>, u32)]) -> Result<Vec<u8>, LabError> {
    let tools = static_tools()?;
    let busybox = busybox()?;
    let read = |p: &std::path::Path| std::fs::read(p).map_err(io_err(p));

    let mut archive = Archive::new();
    let cpio = |e: kdump_cpio::Error| LabError::Setup(format!("initramfs: {e}"));
    for dir in ["bin", "dev", "proc", "sys", "tmp", "results", "lab"] {
        archive.add_dir(dir, 0o755).map_err(cpio)?;
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    archive.add_char_device("dev/console", 0o600, 5, 1).map_err(cpio)?;
    archive.add_char_device("dev/null", 0o666, 1, 3).map_err(cpio)?;
    archive.add_file("init", 0o755, INIT.replace("@ROLE@", role.name())).map_err(cpio)?;
    archive.add_file("bin/busybox", 0o755, read(&busybox)?).map_err(cpio)?;
    archive.add_symlink("bin/sh", "busybox").map_err(cpio)?;
    archive.add_file("bin/kexec", 0o755, read(&tools.kexec)?).map_err(cpio)?;
    archive.add_file("bin/kdump", 0o755, read(&tools.kdump)?).map_err(cpio)?;
    archive.add_file("lab/scenario.sh", 0o755, script.to_string()).map_err(cpio)?;
    for (path, data, mode) in extra {
        archive.add_file(path.trim_start_matches('/'), *mode, data.clone()).map_err(cpio)?;
    }
    archive.encode().map_err(cpio)
}
