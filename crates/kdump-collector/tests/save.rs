//! The save API on a small synthetic vmcore: every sink writes the same bytes, a request that
//! cannot work is refused before anything is written, and a sink that fails mid-way leaves an
//! incomplete dump that says so.

use std::io;
use std::path::{Path, PathBuf};

use kdump_collector::{Error, Quiet, SaveRequest, Sink, Written, save};
use kdump_dumpfile::elf::{EM_X86_64, write_elf64_vmcore};
use kdump_dumpfile::{Codec, KdumpReader, WriteAt};

const PAGES: u64 = 256;

fn vmcore(dir: &Path) -> PathBuf {
    let mut mem = vec![0u8; (PAGES * 4096) as usize];
    for (i, b) in mem.iter_mut().enumerate() {
        // Half the pages hold data (varied, so codecs work), half are zero.
        if (i / 4096) % 2 == 0 {
            *b = (i.wrapping_mul(2654435761) >> 13) as u8;
        }
    }
    let mut out = Vec::new();
    write_elf64_vmcore(&mut out, EM_X86_64, &[], &[(0, PAGES * 4096, &mem)]).unwrap();
    let path = dir.join("vmcore");
    std::fs::write(&path, out).unwrap();
    path
}

/// A positioned sink over memory, failing once it holds more than `limit` bytes.
struct Memory {
    bytes: Vec<u8>,
    limit: usize,
}

impl WriteAt for Memory {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset as usize + data.len();
        if end > self.limit {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "the sink is full"));
        }
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn request(codec: Codec) -> SaveRequest {
    SaveRequest { threads: Some(2), ..SaveRequest::new(1, codec) }
}

#[test]
fn a_positioned_sink_and_a_file_get_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore(dir.path());
    for codec in [Codec::None, Codec::Zlib, Codec::Lzo, Codec::Snappy, Codec::Zstd] {
        let dest = dir.path().join(format!("file-{codec}"));
        let file = save(&src, Sink::File { path: &dest, force: false }, &request(codec), &mut Quiet).unwrap();
        assert!(file.incomplete.is_none());
        let mut mem = Memory { bytes: Vec::new(), limit: usize::MAX };
        let at = save(
            &src,
            Sink::Positioned { sink: &mut mem, name: "memory", data_alignment: None },
            &request(codec),
            &mut Quiet,
        )
        .unwrap();
        let on_disk = std::fs::read(&dest).unwrap();
        // The header's timestamp (bytes 408..424) is the time of each save.
        assert_eq!(mem.bytes.len(), on_disk.len(), "{codec}");
        assert_eq!(&mem.bytes[..408], &on_disk[..408], "{codec}");
        assert_eq!(&mem.bytes[424..], &on_disk[424..], "{codec}");
        assert_eq!(at.file_size(), file.file_size());
        let Written::Kdump(report) = &at.written else { panic!("kdump format expected") };
        // Level 1 stores the 128 zero pages as one shared block.
        assert_eq!(report.written.pages, PAGES);
        assert_eq!(report.written.zero_pages, PAGES / 2);
        let mut r = KdumpReader::open(std::io::Cursor::new(mem.bytes)).unwrap();
        assert!(!r.is_incomplete());
        let mut page = vec![0u8; 4096];
        kdump_dumpfile::PhysMem::read_page(&mut r, 2, &mut page).unwrap();
        assert_eq!(page, on_disk_page(&src, 2));
    }
}

fn on_disk_page(src: &Path, pfn: u64) -> Vec<u8> {
    let bytes = std::fs::read(src).unwrap();
    let mut e = kdump_dumpfile::ElfVmcore::open(std::io::Cursor::new(bytes)).unwrap();
    let mut page = vec![0u8; 4096];
    kdump_dumpfile::PhysMem::read_page(&mut e, pfn, &mut page).unwrap();
    page
}

#[test]
fn impossible_requests_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore(dir.path());
    let dest = dir.path().join("out");
    let bad_level = SaveRequest::new(32, Codec::None);
    let e = save(&src, Sink::File { path: &dest, force: false }, &bad_level, &mut Quiet).unwrap_err();
    assert!(matches!(e, Error::Refused(ref m) if m.contains("out of range")), "{e}");
    let elf_zstd = SaveRequest { elf: true, ..SaveRequest::new(0, Codec::Zstd) };
    let e = save(&src, Sink::File { path: &dest, force: false }, &elf_zstd, &mut Quiet).unwrap_err();
    assert!(matches!(e, Error::Refused(ref m) if m.contains("-E")), "{e}");
    let mut mem = Memory { bytes: Vec::new(), limit: usize::MAX };
    let elf = SaveRequest { elf: true, ..SaveRequest::new(0, Codec::None) };
    let e = save(&src, Sink::Positioned { sink: &mut mem, name: "memory", data_alignment: None }, &elf, &mut Quiet)
        .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    assert!(mem.bytes.is_empty());
    std::fs::write(&dest, b"old").unwrap();
    let e = save(&src, Sink::File { path: &dest, force: false }, &request(Codec::None), &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("exists: use -f"), "{e}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    let e = save(
        &dir.path().join("absent"),
        Sink::File { path: &dir.path().join("x"), force: false },
        &request(Codec::None),
        &mut Quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("cannot open the dump"), "{e}");
    assert!(!dir.path().join("x").exists() && !dir.path().join("x.incomplete").exists());
}

#[test]
fn a_sink_that_fills_up_leaves_a_dump_marked_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let src = vmcore(dir.path());
    let mut mem = Memory { bytes: Vec::new(), limit: 256 * 1024 };
    let saved = save(
        &src,
        Sink::Positioned { sink: &mut mem, name: "memory", data_alignment: None },
        &request(Codec::None),
        &mut Quiet,
    )
    .unwrap();
    let inc = saved.incomplete.expect("the sink filled up");
    assert!(inc.reason.contains("full"), "{}", inc.reason);
    assert!(inc.pages > 0 && inc.pages < PAGES, "{}", inc.pages);
    let r = KdumpReader::open(std::io::Cursor::new(mem.bytes)).unwrap();
    assert!(r.is_incomplete());
}
