//! A root directory for `/proc` and `/sys` reads.

use std::io;
use std::path::{Path, PathBuf};

use crate::SysError;

/// Where `/proc` and `/sys` are. The running system is `SysRoot::host()`;
/// tests use a directory holding files captured from another machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot {
    base: PathBuf,
}

impl SysRoot {
    /// The running system (`/`).
    pub fn host() -> Self {
        Self { base: PathBuf::from("/") }
    }

    /// A directory that stands in for `/`.
    pub fn at(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    /// The real path of an absolute system path such as `/proc/iomem`.
    pub fn path(&self, system_path: &str) -> PathBuf {
        self.base.join(system_path.trim_start_matches('/'))
    }

    /// Reads a whole text file; the error names the system path.
    pub fn read(&self, system_path: &str) -> Result<String, SysError> {
        std::fs::read_to_string(self.path(system_path))
            .map_err(|source| SysError::Read { path: PathBuf::from(system_path), source })
    }

    /// Like [`read`](Self::read), but a missing file is `Ok(None)`: many kdump
    /// files exist only with some kernel options.
    pub fn read_optional(&self, system_path: &str) -> Result<Option<String>, SysError> {
        match std::fs::read_to_string(self.path(system_path)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SysError::Read { path: PathBuf::from(system_path), source }),
        }
    }

    /// Reads at most `max` bytes from the start of a (possibly binary or huge) file such as
    /// `/proc/kcore`; a missing file is `Ok(None)`.
    pub fn read_prefix(&self, system_path: &str, max: usize) -> Result<Option<Vec<u8>>, SysError> {
        use std::io::Read as _;
        let err = |source| SysError::Read { path: PathBuf::from(system_path), source };
        let file = match std::fs::File::open(self.path(system_path)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let mut buf = Vec::with_capacity(max.min(1 << 20));
        file.take(max as u64).read_to_end(&mut buf).map_err(err)?;
        Ok(Some(buf))
    }

    /// True when the system path exists under this root.
    pub fn exists(&self, system_path: &str) -> bool {
        self.path(system_path).exists()
    }

    /// The directory this root stands for.
    pub fn base(&self) -> &Path {
        &self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_under_the_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/iomem"), "x").unwrap();
        let root = SysRoot::at(dir.path());
        assert_eq!(root.read("/proc/iomem").unwrap(), "x");
        assert!(root.read_optional("/proc/missing").unwrap().is_none());
        let err = root.read("/proc/missing").unwrap_err().to_string();
        assert!(err.contains("/proc/missing"), "{err}");
    }
}
