//! Reading a dump source (above all `/proc/vmcore`) through `mmap` windows.
//!
//! In the capture kernel, `read()` on `/proc/vmcore` maps and unmaps every
//! page of the crashed kernel's memory on its way (`copy_oldmem_page`), which
//! costs far more than the copy itself. `mmap` of `/proc/vmcore` (Linux 3.11+)
//! maps a whole window of old memory at once; makedumpfile reads it that way.
//! [`MappedReader`] maps the file [`DEFAULT_WINDOW`] bytes at a time and serves
//! `Read + Seek` from the mapping, so the pure dump readers above it need not
//! change. Where the kernel refuses the mapping (old kernels, some
//! filesystems, a last partial page), it falls back to `pread` into a buffer
//! of the same size; [`ReadMode::Read`] forces that path.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Bytes mapped (or read) at a time: makedumpfile's `MAP_REGION`. Larger
/// windows save nothing measurable (an `mmap` per 4 MiB is noise next to the
/// page copies) and would add to the resident set on regular files.
pub const DEFAULT_WINDOW: usize = 4 << 20;

/// Bytes read at a time without a mapping: what the buffered reader before
/// the mapping read. Scattered reads (page-table walks, struct pages of
/// sparse sections) would pay for a whole mapping window each.
pub const READ_WINDOW: usize = 1 << 20;

/// How to read the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// `mmap` windows, `pread` where mapping is refused.
    Auto,
    /// `pread` only (makedumpfile's `--non-mmap`).
    Read,
}

/// How the source was actually read, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPath {
    /// Nothing read yet.
    Unused,
    /// Every window was mapped.
    Mapped,
    /// `pread` because it was asked for.
    ReadForced,
    /// `pread` because the kernel refused to map the file (the error).
    ReadRefused(String),
    /// Mapped, but some windows were refused and read instead (count, first error).
    MappedWithReads(u64, String),
}

impl std::fmt::Display for ReadPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadPath::Unused => write!(f, "not read"),
            ReadPath::Mapped => write!(f, "mmap"),
            ReadPath::ReadForced => write!(f, "read() (mmap turned off)"),
            ReadPath::ReadRefused(e) => write!(f, "read() (mmap refused: {e})"),
            ReadPath::MappedWithReads(n, e) => write!(f, "mmap, {n} windows by read() (mmap refused: {e})"),
        }
    }
}

/// One mapping of `len` bytes at file offset `off`.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(file: &File, off: u64, len: usize) -> io::Result<Self> {
        let offset = libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: a fresh read-only private mapping of an open descriptor; the
        // kernel checks offset and length, and we only read through it.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), offset)
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Readahead hint for regular files; /proc/vmcore maps old memory directly and ignores it.
        // SAFETY: advice on the mapping just made; failure is harmless.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Ok(Self { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`. The source is a
        // dump that nobody writes while we read it (a truncated regular file
        // would raise SIGBUS, as for any reader of a mapped file).
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// A whole regular file mapped read-only: for a debug vmlinux (600 MiB, of which a reader
/// touches the DWARF and symbols), whose pages then stay the page cache's instead of a copy
/// on the heap.
pub struct MappedFile {
    /// None for an empty file (there is nothing to map).
    map: Option<Mapping>,
}

impl MappedFile {
    /// Maps `path` whole.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let map = if len == 0 { None } else { Some(Mapping::new(&file, 0, len)?) };
        Ok(Self { map })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], Mapping::bytes)
    }
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile").field("len", &self.bytes().len()).finish()
    }
}

/// The bytes of the window currently held: mapped, or read into a buffer.
enum Window {
    None,
    Mapped(Mapping),
    Buffered(Vec<u8>),
}

/// `Read + Seek` over a file through `mmap` windows; see the [module docs](self).
pub struct MappedReader {
    file: File,
    len: u64,
    pos: u64,
    window_size: usize,
    /// File offset of the window's first byte.
    window_off: u64,
    window: Window,
    /// `None` until the first window: then whether mapping works at all.
    mapping_works: Option<bool>,
    mode: ReadMode,
    refused: u64,
    first_refusal: Option<String>,
    buffer: Vec<u8>,
    tracker: PathTracker,
}

/// A handle on how a [`MappedReader`] reads, valid after the reader moved
/// into a dump reader (updated once per window).
#[derive(Debug, Clone)]
pub struct PathTracker(std::sync::Arc<std::sync::Mutex<ReadPath>>);

impl PathTracker {
    /// How the file has been read so far.
    pub fn get(&self) -> ReadPath {
        self.0.lock().map(|p| p.clone()).unwrap_or(ReadPath::Unused)
    }
}

impl std::fmt::Debug for MappedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedReader").field("len", &self.len).field("path", &self.path()).finish_non_exhaustive()
    }
}

impl MappedReader {
    /// Reads `file` (whose size is taken now) in windows of [`DEFAULT_WINDOW`] bytes.
    pub fn new(file: File, mode: ReadMode) -> io::Result<Self> {
        Self::with_window(file, mode, DEFAULT_WINDOW)
    }

    /// Like [`new`](Self::new) with another window size (rounded up to whole pages).
    pub fn with_window(file: File, mode: ReadMode, window: usize) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let page = page_size();
        let window_size = window.max(page).next_multiple_of(page);
        Ok(Self {
            file,
            len,
            pos: 0,
            window_size,
            window_off: 0,
            window: Window::None,
            mapping_works: None,
            mode,
            refused: 0,
            first_refusal: None,
            buffer: Vec::new(),
            tracker: PathTracker(std::sync::Arc::new(std::sync::Mutex::new(match mode {
                ReadMode::Read => ReadPath::ReadForced,
                ReadMode::Auto => ReadPath::Unused,
            }))),
        })
    }

    /// A handle that reports [`path`](Self::path) after this reader is moved away.
    pub fn tracker(&self) -> PathTracker {
        self.tracker.clone()
    }

    fn track(&self) {
        if let Ok(mut p) = self.tracker.0.lock() {
            *p = self.path();
        }
    }

    /// How the file has been read so far.
    pub fn path(&self) -> ReadPath {
        match (self.mode, self.mapping_works, &self.first_refusal) {
            (ReadMode::Read, ..) => ReadPath::ReadForced,
            (_, None, _) => ReadPath::Unused,
            (_, Some(false), e) => ReadPath::ReadRefused(e.clone().unwrap_or_default()),
            (_, Some(true), None) => ReadPath::Mapped,
            (_, Some(true), Some(e)) => ReadPath::MappedWithReads(self.refused, e.clone()),
        }
    }

    fn window_bytes(&self) -> &[u8] {
        match &self.window {
            Window::None => &[],
            Window::Mapped(m) => m.bytes(),
            Window::Buffered(b) => b,
        }
    }

    /// Makes the window hold `self.pos` (which is below `self.len`).
    fn load_window(&mut self) -> io::Result<()> {
        let off = self.pos - self.pos % self.window_size as u64;
        let len = (self.len - off).min(self.window_size as u64) as usize;
        // Drop the old window first: a buffer is reused, a mapping unmapped.
        if let Window::Buffered(b) = std::mem::replace(&mut self.window, Window::None) {
            self.buffer = b;
        }
        let page = page_size() as u64;
        // /proc/vmcore maps only whole pages inside the file: a partial last page is read.
        let mappable = (len as u64 / page * page) as usize;
        if self.mode == ReadMode::Auto
            && self.mapping_works != Some(false)
            && mappable > 0
            && self.pos < off + mappable as u64
        {
            match Mapping::new(&self.file, off, mappable) {
                Ok(m) => {
                    self.mapping_works = Some(true);
                    self.window_off = off;
                    self.window = Window::Mapped(m);
                    self.track();
                    return Ok(());
                }
                Err(e) => {
                    if self.first_refusal.is_none() {
                        self.first_refusal = Some(e.to_string());
                    }
                    self.refused += 1;
                    self.mapping_works.get_or_insert(false);
                }
            }
        }
        let read_window = READ_WINDOW.min(self.window_size) as u64;
        let off = self.pos - self.pos % read_window;
        let len = (self.len - off).min(read_window) as usize;
        let mut buf = std::mem::take(&mut self.buffer);
        buf.resize(len, 0);
        let mut done = 0;
        while done < len {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buffer = buf;
                    return Err(e);
                }
            }
        }
        buf.truncate(done);
        self.window_off = off;
        self.window = Window::Buffered(buf);
        self.track();
        Ok(())
    }
}

impl Read for MappedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let held = self.window_bytes().len() as u64;
        if !(self.window_off..self.window_off + held).contains(&self.pos) {
            self.load_window()?;
        }
        let at = (self.pos - self.window_off) as usize;
        let bytes = self.window_bytes();
        if at >= bytes.len() {
            return Ok(0); // the file shrank under us: end of file
        }
        let n = (bytes.len() - at).min(out.len());
        out[..n].copy_from_slice(&bytes[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for MappedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 4096) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        (f, data)
    }

    /// Reads `want` bytes at `off` through `r`, as the dump readers do (seek, read_exact).
    fn at(r: &mut MappedReader, off: u64, want: usize) -> Vec<u8> {
        r.seek(SeekFrom::Start(off)).unwrap();
        let mut out = vec![0; want];
        r.read_exact(&mut out).unwrap();
        out
    }

    #[test]
    fn mapped_and_read_paths_return_the_file_bytes_across_windows() {
        // A window of 3 pages over a file whose end is a partial page.
        let (f, data) = file_of(10 * 4096 + 100);
        for mode in [ReadMode::Auto, ReadMode::Read] {
            let mut r = MappedReader::with_window(File::open(f.path()).unwrap(), mode, 3 * 4096).unwrap();
            assert_eq!(r.path(), if mode == ReadMode::Read { ReadPath::ReadForced } else { ReadPath::Unused });
            // Straddling window boundaries, backwards, the partial last page.
            for (off, len) in
                [(0, 10), (3 * 4096 - 5, 20), (100, 7 * 4096), (10 * 4096 + 50, 50), (4096, 4096), (0, data.len())]
            {
                assert_eq!(at(&mut r, off as u64, len), &data[off..off + len], "{mode:?} at {off} len {len}");
            }
            if mode == ReadMode::Auto {
                assert_eq!(r.path(), ReadPath::Mapped, "a regular file maps");
            }
            assert_eq!(r.tracker().get(), r.path());
            // Reading past the end is end of file, not an error.
            r.seek(SeekFrom::Start(data.len() as u64 - 3)).unwrap();
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, &data[data.len() - 3..]);
            r.seek(SeekFrom::End(10)).unwrap();
            assert_eq!(r.read(&mut [0u8; 8]).unwrap(), 0);
            assert!(r.seek(SeekFrom::Current(-1_000_000)).is_err());
        }
    }

    #[test]
    fn a_whole_file_maps_to_its_bytes() {
        let (f, want) = file_of(3 * 4096 + 17);
        assert_eq!(MappedFile::open(f.path()).unwrap().bytes(), &want[..]);
        let (empty, _) = file_of(0);
        assert!(MappedFile::open(empty.path()).unwrap().bytes().is_empty());
        assert!(MappedFile::open(std::path::Path::new("/nonexistent/vmlinux")).is_err());
    }

    #[test]
    fn a_file_that_cannot_be_mapped_is_read() {
        // sysfs attributes refuse mmap (ENODEV), like /proc/vmcore on a kernel
        // without mmap support, but read fine; their size is a page.
        let path = "/sys/devices/system/cpu/online";
        let Ok(file) = File::open(path) else {
            eprintln!("skipped: no {path}");
            return;
        };
        let want = std::fs::read(path).unwrap();
        let mut r = MappedReader::new(file, ReadMode::Auto).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, want);
        assert!(matches!(r.path(), ReadPath::ReadRefused(ref e) if !e.is_empty()), "{:?}", r.path());
        assert!(r.path().to_string().starts_with("read() (mmap refused: "), "{}", r.path());
    }
}
