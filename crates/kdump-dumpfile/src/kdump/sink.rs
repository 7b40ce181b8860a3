//! Where a kdump-compressed file is written: anything that takes bytes at absolute offsets.

use std::io::{self, Seek, SeekFrom, Write};

/// Something that can write bytes at absolute offsets: a seekable file, or a flattened stream.
pub trait WriteAt {
    /// Writes all of `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Flushes buffered bytes to the underlying writer.
    fn flush(&mut self) -> io::Result<()>;
}

/// [`WriteAt`] over a `Write + Seek` value (a regular file).
#[derive(Debug)]
pub struct SeekSink<W> {
    inner: W,
    pos: Option<u64>,
}

impl<W: Write + Seek> SeekSink<W> {
    /// Wraps a seekable writer.
    pub fn new(inner: W) -> Self {
        SeekSink { inner, pos: None }
    }

    /// Gives back the writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write + Seek> WriteAt for SeekSink<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.pos != Some(offset) {
            self.pos = None;
            self.inner.seek(SeekFrom::Start(offset))?;
        }
        self.pos = None;
        self.inner.write_all(data)?;
        self.pos = Some(offset + data.len() as u64);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// [`WriteAt`] that refuses bytes past `limit` (makedumpfile's `-L SIZE`): the first write
/// that would end beyond it fails as a full disk would, so the writer ends the dump as
/// incomplete with what fitted.
#[derive(Debug)]
pub struct LimitedSink<W> {
    inner: W,
    limit: u64,
}

impl<W: WriteAt> LimitedSink<W> {
    /// Wraps `inner`; nothing is written at or past byte `limit`.
    pub fn new(inner: W, limit: u64) -> Self {
        LimitedSink { inner, limit }
    }

    /// Gives back the sink.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: WriteAt> WriteAt for LimitedSink<W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset.saturating_add(data.len() as u64) > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("the size limit of {} bytes (-L) is reached", self.limit),
            ));
        }
        self.inner.write_at(offset, data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: WriteAt + ?Sized> WriteAt for &mut T {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}
