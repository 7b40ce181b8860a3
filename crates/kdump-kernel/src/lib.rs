//! The crashed kernel, read from its own memory.
//!
//! A dump carries enough to explain a crash without a 1.7 GB debug vmlinux:
//! VMCOREINFO names the addresses and layouts of the printk ring buffer, the
//! page tables and the kallsyms tables; the ELF notes hold every CPU's
//! registers. This crate is pure: it reads memory through [`PhysRead`], which
//! the dump readers implement, so every decoder here is tested on synthetic
//! memory as well as on real dumps.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![deny(clippy::cast_possible_truncation)] // reads untrusted memory: no silent truncation

pub mod backtrace;
pub mod crashing;
pub mod identity;
pub mod kallsyms;
pub mod live;
pub mod memory;
pub mod pages;
pub mod printk;
pub mod prstatus;
pub mod signature;
pub mod vmcoreinfo;

pub use memory::{KernelMemory, PhysRead};
pub use vmcoreinfo::Vmcoreinfo;

/// Why something could not be read from the crashed kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A VMCOREINFO key the decoder needs is absent.
    #[error("VMCOREINFO has no {0}: the crashed kernel did not export it, so this cannot be decoded")]
    MissingKey(String),
    /// A VMCOREINFO value is malformed.
    #[error("VMCOREINFO {key}={value:?} is not a valid value")]
    BadValue {
        /// The key.
        key: String,
        /// Its text.
        value: String,
    },
    /// A physical page is not in the dump.
    #[error("physical address {0:#x} is not in the dump (filtered out, lost, or not RAM)")]
    NotInDump(u64),
    /// Reading the dump failed.
    #[error("reading physical address {addr:#x}: {reason}")]
    Read {
        /// The address.
        addr: u64,
        /// What the reader said.
        reason: String,
    },
    /// A virtual address has no mapping in the crashed kernel's page tables.
    #[error("virtual address {0:#x} is not mapped in the crashed kernel's page tables")]
    NotMapped(u64),
    /// Data read from the dump is inconsistent.
    #[error("inconsistent kernel data: {0}")]
    Corrupt(String),
}

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;

/// `v` as an in-memory length or index. Dumps are read on 64-bit hosts, where every `u64`
/// fits; were a value not to fit, it saturates, so the bounds check or allocation that follows
/// fails loudly instead of using a small wrong value.
pub(crate) fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
