//! The thin layer between kdump and the running kernel.
//!
//! Two things live here and nowhere else: reading `/proc` and `/sys` (always
//! through a [`SysRoot`], so tests can point it at a directory of captured
//! files), and the raw syscalls. Everything above this crate is either pure
//! planning code or a binary that wires the two together.
#![deny(missing_docs)]

pub mod block;
pub mod file;
mod hotplug;
pub mod kexec;
pub mod legacy;
mod machine;
pub mod mapped;
pub mod module;
pub mod mount;
pub mod net;
pub mod power;
mod root;
pub mod usage;
mod util;

pub use hotplug::{CPU_CRASH_HOTPLUG, CrashHotplug, MEMORY_CRASH_HOTPLUG, crash_hotplug};
pub use machine::{
    LoaderInputs, collect_loader_inputs, collect_machine_info, kexec_loaded, locked_for_confidentiality,
};
pub use root::SysRoot;

/// A failure to read what the kernel exposes.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path as seen by the system (under the root).
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file was read but its contents made no sense.
    #[error("cannot understand {path}")]
    Parse {
        /// The path as seen by the system.
        path: std::path::PathBuf,
        /// What was wrong with it.
        source: kdump_machine::ParseError,
    },
}
