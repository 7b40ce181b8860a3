//! What can stop a dump from being opened or saved.

/// An error of the collector. Each message names the file or step; its source says why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be carried out as asked; the message says what to change.
    #[error("{0}")]
    Refused(String),
    /// A file or device could not be used.
    #[error("{what}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A dump's bytes could not be read or written in its format.
    #[error("{what}")]
    Dump {
        /// What was being done, with the path.
        what: String,
        /// The format's reason.
        #[source]
        source: kdump_dumpfile::Error,
    },
    /// The dump cannot be decoded as a kernel's memory; the message says what would help.
    #[error("{0}")]
    Undecodable(String),
}

/// The collector's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches what was being done to an error of a lower layer.
pub(crate) trait Context<T> {
    /// Wraps the error with `what()`.
    fn what(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

impl<T> Context<T> for kdump_dumpfile::Result<T> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Dump { what: what(), source })
    }
}
