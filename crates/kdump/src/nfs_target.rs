//! The NFS target (`target.url = "nfs://…"`): the mount the capture kernel makes, and
//! `kdump check-target` / `kdump setup`'s check of it from the running machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use kdump_service::NfsDestination;
use kdump_sys::{mount, net};

/// The least a mount itself is given once the server accepts connections.
const MOUNT_LIMIT: Duration = Duration::from_secs(30);
/// How long the running machine's check waits for the server.
const CHECK_WAIT: Duration = Duration::from_secs(5);

/// Mounts `nfs` on `at`: waits up to `wait` for the server's port, then mounts with the
/// kernel's client (soft, bounded retries), giving up on a mount that takes longer than what
/// is left of `wait` (at least 30 s).
pub fn mount(nfs: &NfsDestination, at: &Path, wait: Duration) -> Result<(), String> {
    let started = Instant::now();
    let server = std::net::SocketAddr::from((nfs.address, nfs.port));
    net::wait_for_tcp(server, wait)
        .map_err(|e| format!("{server} did not answer within {} s ({e})", wait.as_secs()))?;
    let limit = wait.saturating_sub(started.elapsed()).max(MOUNT_LIMIT);
    mount::mount_with_options_within(&nfs.source(), at, nfs.fstype(), &nfs.mount_options(), limit).map_err(|e| {
        if mount::is_unknown_fstype(&e) {
            format!(
                "{e}: this kernel has no NFS client ({}): load the modules {} (kdump setup puts them in the \
                 capture initramfs)",
                nfs.fstype(),
                nfs.modules().join(", ")
            )
        } else if e.kind() == std::io::ErrorKind::TimedOut {
            format!("{e}: the server accepts connections but does not answer NFS")
        } else {
            format!("the server refused or failed the mount of {}: {e}", nfs.source())
        }
    })
}

/// Mounts the export in a directory of its own, writes, reads back and removes a file, and
/// unmounts: what the capture kernel will do, from here. Each step is reported.
fn probe(nfs: &NfsDestination, steps: &mut Vec<String>) -> Result<(), String> {
    let dir = PathBuf::from(format!("/run/kdump-nfs-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = (|| {
        mount(nfs, &dir, CHECK_WAIT)?;
        steps.push(format!("mounted {} ({})", nfs.source(), nfs.mount_options()));
        let file = dir.join(format!(".kdump-check-{}", std::process::id()));
        let text = b"kdump check-target\n";
        let written = std::fs::write(&file, text).and_then(|()| std::fs::read(&file));
        let _ = std::fs::remove_file(&file);
        match written {
            Ok(back) if back == text => {
                steps.push(format!("writable ({} written, read back, removed)", file.display()));
                Ok(())
            }
            Ok(_) => Err("a file written to the export reads back different".to_string()),
            Err(e) => Err(format!("cannot write to the export: {e} (export it read-write, without root squash)")),
        }
    })();
    kdump_sys::kexec::sync_filesystems();
    if let Err(e) = mount::umount(&dir)
        && !mount::is_not_mounted(&e)
    {
        steps.push(format!("cannot unmount {}: {e}", dir.display()));
    }
    let _ = std::fs::remove_dir(&dir);
    result
}

/// `kdump setup`'s check: problems are warnings (the running machine may reach the server
/// differently, or lack the NFS client the capture initramfs gets).
pub fn for_setup(nfs: &NfsDestination, report: &mut Vec<String>) {
    report.push(format!("target: {nfs}, modules {}", nfs.modules().join(", ")));
    let mut steps = Vec::new();
    match probe(nfs, &mut steps) {
        Ok(()) => report.push("target: check-target passed (export mounted and writable)".into()),
        Err(e) => report.push(format!(
            "target: WARNING: the export cannot be used from here now ({e}); the capture kernel will try; run \
             kdump check-target once it is fixed"
        )),
    }
}

/// `kdump check-target` for an NFS target: each step with its outcome; an error when one fails.
pub fn check_target(nfs: &NfsDestination) -> anyhow::Result<()> {
    println!("target:     {nfs}");
    let mut steps = Vec::new();
    let result = probe(nfs, &mut steps);
    for s in &steps {
        println!("ok          {s}");
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            println!("PROBLEM     {e}");
            bail!("the NFS target {nfs} is not ready: fix the PROBLEM line above")
        }
    }
}
