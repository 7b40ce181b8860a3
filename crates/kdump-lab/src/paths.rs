//! Where the lab keeps its cache and its runs.

use std::path::PathBuf;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or(here)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// Downloaded kernels and other reusable inputs: `$KDUMP_LAB_CACHE`, else `target/lab-cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KDUMP_LAB_CACHE").map(PathBuf::from).unwrap_or_else(|| target_dir().join("lab-cache"))
}

/// One directory per scenario run: `target/lab-runs`.
pub fn runs_dir() -> PathBuf {
    target_dir().join("lab-runs")
}

pub(crate) fn static_target_dir() -> PathBuf {
    target_dir()
}
