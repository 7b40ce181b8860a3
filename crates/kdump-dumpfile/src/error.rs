//! The crate's error type.

use std::io;

/// Everything that can go wrong while reading or writing a dump file.
///
/// Messages name the cause and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying reader or writer failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// The input ended before a structure that must be there.
    #[error(
        "{what} is truncated: needs {needed} bytes at offset {offset}, but the input ends at {len}; the dump file is incomplete (copy it again, or re-run the dump with enough space)"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Byte offset of the structure.
        offset: u64,
        /// Bytes needed from `offset`.
        needed: u64,
        /// Length of the input.
        len: u64,
    },

    /// The input does not start with the magic of the expected format.
    #[error(
        "not {expected}: bad magic {found:02x?}; pass a file of the right format (ELF vmcore, kdump-compressed, or makedumpfile flattened)"
    )]
    BadMagic {
        /// The format that was expected.
        expected: &'static str,
        /// The first bytes found.
        found: Vec<u8>,
    },

    /// The file is of a known format but a variant this crate does not read.
    #[error("unsupported {what}: {detail}")]
    Unsupported {
        /// What is unsupported.
        what: &'static str,
        /// Details.
        detail: String,
    },

    /// A header field has a value that cannot be right.
    #[error("corrupt {what}: {detail}; the dump file is damaged or was not written by a kdump tool")]
    Corrupt {
        /// The structure or field.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// A page failed to decompress.
    #[error("page {pfn:#x} cannot be decompressed with {codec}: {detail}; the dump file is damaged")]
    Decompress {
        /// Page frame number.
        pfn: u64,
        /// Codec name.
        codec: &'static str,
        /// Details.
        detail: String,
    },

    /// Compression failed (a codec library reported an error).
    #[error("{codec} compression failed: {detail}")]
    Compress {
        /// Codec name.
        codec: &'static str,
        /// Details.
        detail: String,
    },

    /// A caller passed a buffer of the wrong size or arguments that contradict each other.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Files given as the parts of a `--split` dump are not one whole set; the message names
    /// the file, the cause and the fix.
    #[error("{0}")]
    SplitSet(String),

    /// The writer was used out of order.
    #[error("writer misuse: {0}")]
    Usage(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Error {
    Error::Corrupt { what, detail: detail.into() }
}
