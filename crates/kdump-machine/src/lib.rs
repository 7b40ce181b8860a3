//! The machine as kdump sees it, parsed from the text the kernel exposes.
//!
//! Everything here is pure: functions take the contents of `/proc` and `/sys`
//! files as strings and return typed values. Reading those files is the job of
//! `kdump-sys`; deciding what to do with them is the job of the loaders and the
//! dump tools. Keeping the parsers free of I/O lets tests replay machines that
//! were captured elsewhere.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![deny(clippy::cast_possible_truncation)] // parses untrusted text and bytes: no silent truncation

pub mod cpulist;
pub mod iomem;
pub mod kcore;
pub mod machine;
pub mod route;
pub mod sysfs;

pub use iomem::{Iomem, MemoryKind, MemoryRange, Resource};
pub use kcore::{Kcore, KcoreLoad};
pub use machine::{CpuNote, KexecState, Lockdown, MachineInfo, PhysRange, VmcoreinfoLocation};

/// Why a piece of kernel-provided text could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line of `/proc/iomem` is not `start-end : name`.
    #[error("/proc/iomem line {line}: expected `start-end : name`, found {text:?}")]
    IomemLine {
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A resource ends before it starts.
    #[error("/proc/iomem line {line}: range end {end:#x} is below start {start:#x}")]
    IomemRange {
        /// 1-based line number.
        line: usize,
        /// Parsed start.
        start: u64,
        /// Parsed end (inclusive).
        end: u64,
    },
    /// A CPU list such as `0-3,6` is malformed.
    #[error("CPU list {0:?} is not of the form `0-3,5`")]
    CpuList(String),
    /// A sysfs value is not the expected number.
    #[error("{what}: expected {expected}, found {text:?}")]
    Value {
        /// Which file or value this was.
        what: &'static str,
        /// What was expected, for the message.
        expected: &'static str,
        /// The text found.
        text: String,
    },
}
