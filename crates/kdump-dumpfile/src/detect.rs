//! Format detection: open any supported dump file through one type.

use std::io::{Read, Seek, SeekFrom};

use crate::error::{Error, Result};
use crate::flat::{FLAT_SIGNATURE, FlatReader};
use crate::{ElfVmcore, KdumpReader, PageState, PfnRange, PhysMem};

/// The format of a dump file, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// ELF vmcore.
    Elf,
    /// kdump-compressed (`"KDUMP   "`).
    Kdump,
    /// makedumpfile flattened stream.
    Flattened,
}

/// Identifies the format from the first 16 bytes.
pub fn detect_format(head: &[u8]) -> Option<DumpFormat> {
    if head.starts_with(b"\x7fELF") {
        Some(DumpFormat::Elf)
    } else if head.starts_with(crate::kdump::KDUMP_SIGNATURE) {
        Some(DumpFormat::Kdump)
    } else if head.len() >= 16
        && head.starts_with(FLAT_SIGNATURE)
        && head[FLAT_SIGNATURE.len()..16].iter().all(|&b| b == 0)
    {
        Some(DumpFormat::Flattened)
    } else {
        None
    }
}

/// Any dump this crate reads; implements [`PhysMem`] by delegation.
#[derive(Debug)]
pub enum AnyDump<R> {
    /// An ELF vmcore.
    Elf(ElfVmcore<R>),
    /// A kdump-compressed file.
    Kdump(KdumpReader<R>),
    /// A flattened kdump-compressed stream, read in place.
    Flattened(KdumpReader<FlatReader<R>>),
}

/// Detects the format of `r` and opens it.
pub fn open_dump<R: Read + Seek>(mut r: R) -> Result<AnyDump<R>> {
    let mut head = [0u8; 16];
    r.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    r.seek(SeekFrom::Start(0))?;
    match detect_format(&head[..n]) {
        Some(DumpFormat::Elf) => Ok(AnyDump::Elf(ElfVmcore::open(r)?)),
        Some(DumpFormat::Kdump) => Ok(AnyDump::Kdump(KdumpReader::open(r)?)),
        Some(DumpFormat::Flattened) => Ok(AnyDump::Flattened(KdumpReader::open(FlatReader::open(r)?)?)),
        None => Err(Error::BadMagic {
            expected: "a dump file (ELF vmcore, kdump-compressed or makedumpfile flattened)",
            found: head[..n.min(8)].to_vec(),
        }),
    }
}

macro_rules! delegate {
    ($self:ident, $m:ident => $e:expr) => {
        match $self {
            AnyDump::Elf($m) => $e,
            AnyDump::Kdump($m) => $e,
            AnyDump::Flattened($m) => $e,
        }
    };
}

impl<R: Read + Seek> PhysMem for AnyDump<R> {
    fn page_size(&self) -> u64 {
        delegate!(self, m => m.page_size())
    }
    fn max_pfn(&self) -> u64 {
        delegate!(self, m => m.max_pfn())
    }
    fn ram_ranges(&self) -> &[PfnRange] {
        delegate!(self, m => m.ram_ranges())
    }
    fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> Result<PageState> {
        delegate!(self, m => m.read_page(pfn, buf))
    }
    fn notes(&self) -> &[u8] {
        delegate!(self, m => m.notes())
    }
    fn vmcoreinfo(&self) -> Option<&[u8]> {
        delegate!(self, m => m.vmcoreinfo())
    }
    fn has_page(&mut self, pfn: u64) -> Result<bool> {
        delegate!(self, m => m.has_page(pfn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn detects_each_format() {
        assert_eq!(detect_format(b"\x7fELF\x02\x01"), Some(DumpFormat::Elf));
        assert_eq!(detect_format(b"KDUMP   \x06\0\0\0"), Some(DumpFormat::Kdump));
        assert_eq!(detect_format(&crate::flat::flat_header()[..16]), Some(DumpFormat::Flattened));
        assert_eq!(detect_format(b"makedumpfileXXXX"), None);
        assert_eq!(detect_format(b""), None);
        assert!(matches!(open_dump(Cursor::new(b"nope".to_vec())), Err(Error::BadMagic { .. })));
        let mut e = Vec::new();
        crate::elf::write_elf64_vmcore(&mut e, 62, &[], &[(0, 4096, &[1u8; 4096][..])]).unwrap();
        let mut d = open_dump(Cursor::new(e)).unwrap();
        assert!(matches!(d, AnyDump::Elf(_)));
        assert_eq!(d.read_page(0, &mut [0u8; 4096]).unwrap(), PageState::Present);
    }
}
