//! Gets a real kernel: Debian's cloud kernel, downloaded once into the cache.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::paths::cache_dir;
use crate::{LabError, io_err};

/// The Debian metapackage whose dependency is the kernel the lab boots.
const METAPACKAGE: &str = "linux-image-cloud-amd64";

static FETCH: Mutex<()> = Mutex::new(());

/// The bzImage the lab boots: `$KDUMP_LAB_KERNEL` if set, else the kernel
/// package that `linux-image-cloud-amd64` depends on, fetched with
/// `apt-get download` and unpacked with `dpkg -x` into the cache.
pub fn kernel_image() -> Result<PathBuf, LabError> {
    if let Some(path) = std::env::var_os("KDUMP_LAB_KERNEL") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(LabError::Setup(format!("KDUMP_LAB_KERNEL={} is not a file", path.display())));
        }
        return Ok(path);
    }
    let _guard = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache_dir().join("kernel");
    std::fs::create_dir_all(&cache).map_err(io_err(&cache))?;
    // Other test processes may fetch at the same time: take a file lock.
    let lock_path = cache.join(".lock");
    let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;

    let package = match resolve_package() {
        Ok(p) => p,
        Err(e) => {
            // Offline or no apt lists: any kernel already in the cache will do.
            return find_cached_any(&cache).ok_or(e);
        }
    };
    let unpacked = cache.join(&package);
    if let Some(image) = find_vmlinuz(&unpacked) {
        return Ok(image);
    }
    run(Command::new("apt-get").arg("download").arg(&package).current_dir(&cache), "apt-get download")?;
    let deb = std::fs::read_dir(&cache)
        .map_err(io_err(&cache))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| LabError::Setup(format!("apt-get download {package} left no .deb in {}", cache.display())))?;
    let staging = cache.join(format!("{package}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&staging), "dpkg -x")?;
    std::fs::rename(&staging, &unpacked).map_err(io_err(&unpacked))?;
    let _ = std::fs::remove_file(&deb);
    find_vmlinuz(&unpacked).ok_or_else(|| LabError::Setup(format!("{package} holds no boot/vmlinuz-*")))
}

fn resolve_package() -> Result<String, LabError> {
    let out = Command::new("apt-cache")
        .args(["depends", METAPACKAGE])
        .output()
        .map_err(|e| LabError::Setup(format!("cannot run apt-cache: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .ok_or_else(|| {
            LabError::Setup(format!(
                "apt-cache depends {METAPACKAGE} names no kernel package (run `apt-get update`, or set KDUMP_LAB_KERNEL to a bzImage)"
            ))
        })
}

fn find_vmlinuz(unpacked: &Path) -> Option<PathBuf> {
    std::fs::read_dir(unpacked.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
}

fn find_cached_any(cache: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    dirs.iter().rev().find_map(|d| find_vmlinuz(d))
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<(), LabError> {
    let out = cmd.output().map_err(|e| LabError::Setup(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Setup(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}
