//! The programs that go into guest images: our static binaries and busybox.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::LabError;
use crate::paths::{static_target_dir, workspace_root};

/// The only target this machine has; static builds must name it explicitly.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Our fully static binaries.
#[derive(Debug, Clone)]
pub struct StaticTools {
    /// `kexec`.
    pub kexec: PathBuf,
    /// `kdump`.
    pub kdump: PathBuf,
}

static TOOLS: OnceLock<Result<StaticTools, String>> = OnceLock::new();

/// Builds (once per process) and returns the static `kexec` and `kdump`,
/// exactly as a release would: `RUSTFLAGS='-C target-feature=+crt-static'
/// cargo build --release --target x86_64-unknown-linux-gnu`.
pub fn static_tools() -> Result<StaticTools, LabError> {
    TOOLS.get_or_init(build_static_tools).clone().map_err(LabError::Setup)
}

fn build_static_tools() -> Result<StaticTools, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--release", "--target", STATIC_TARGET, "--bin", "kexec", "--bin", "kdump"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("static build of kexec and kdump failed ({status})"));
    }
    let dir = static_target_dir().join(STATIC_TARGET).join("release");
    let tools = StaticTools { kexec: dir.join("kexec"), kdump: dir.join("kdump") };
    for path in [&tools.kexec, &tools.kdump] {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !is_static_elf(&bytes) {
            return Err(format!("{} is not a static executable (it names a dynamic loader)", path.display()));
        }
    }
    Ok(tools)
}

/// A statically linked busybox: `$KDUMP_LAB_BUSYBOX`, else Debian's
/// busybox-static at /bin/busybox.
pub fn busybox() -> Result<PathBuf, LabError> {
    let path =
        std::env::var_os("KDUMP_LAB_BUSYBOX").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    let bytes = std::fs::read(&path)
        .map_err(|e| LabError::Setup(format!("{}: {e} (install busybox-static)", path.display())))?;
    if !is_static_elf(&bytes) {
        return Err(LabError::Setup(format!(
            "{} is dynamically linked; the guest has no libc: install busybox-static",
            path.display()
        )));
    }
    Ok(path)
}

/// True for an ELF executable that names no dynamic loader (the same check
/// `kdump setup` makes before using its own binary as the capture init).
pub use kdump_service::initramfs::is_static_elf;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_host_binary_is_not_static() {
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(!is_static_elf(&sh));
        assert!(!is_static_elf(b"not an elf"));
    }
}
