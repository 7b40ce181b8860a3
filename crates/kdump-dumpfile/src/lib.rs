//! Crash-dump file formats: read and write.
//!
//! A pure crate: it never opens a path. Readers take `Read + Seek` values, writers take
//! [`WriteAt`] sinks (a `Write + Seek` file, or a flattened stream).
//!
//! # Formats
//!
//! - **ELF vmcore** ([`elf`]): what `/proc/vmcore`, `makedumpfile -E` and QEMU
//!   `dump-guest-memory` produce. An `ET_CORE` ELF file with PT_NOTE segments
//!   (`NT_PRSTATUS` per CPU, a `VMCOREINFO` note) and one PT_LOAD per physical RAM range
//!   (`p_paddr`; bytes between `p_filesz` and `p_memsz` are zero).
//! - **kdump-compressed** ([`kdump`]): makedumpfile's default format (`"KDUMP   "`). Block 0
//!   is `disk_dump_header`, block 1 `kdump_sub_header` followed by the ELF notes, then two
//!   bitmaps (1st: PFN is RAM; 2nd: PFN has a page descriptor), then a table of 24-byte
//!   `page_desc {offset, size, flags, page_flags}` indexed by the rank of the PFN in the 2nd
//!   bitmap, then page data, each page raw or compressed with zlib, LZO1X, snappy or zstd.
//!   makedumpfile's `--split` writes one dump as several such files, each with the pages of
//!   one PFN range ([`kdump::split`]): read together ([`SplitReader`]) or joined
//!   ([`kdump::reassemble`]).
//! - **flattened** ([`flat`]): makedumpfile `-F`, for non-seekable outputs. A 4096-byte
//!   header (`"makedumpfile"`, type 1, version 1, big-endian) then records
//!   `{i64 offset, i64 size, data}` meaning "write these bytes at this offset of the
//!   rebuilt file", ended by an `offset = size = -1` record.
//!
//! All readers implement [`PhysMem`]: page-sized reads by page frame number that say
//! whether a page is present, zero-filled, excluded, lost or not RAM, plus the raw notes and
//! VMCOREINFO text. [`open_dump`] detects the format and opens any of them.
#![forbid(unsafe_code)]

pub mod codec;
#[deny(clippy::cast_possible_truncation)] // parses untrusted bytes: no silent truncation
pub mod detect;
#[deny(clippy::cast_possible_truncation)] // parses untrusted bytes: no silent truncation
pub mod elf;
pub mod error;
#[deny(clippy::cast_possible_truncation)] // parses untrusted bytes: no silent truncation
pub mod flat;
pub mod kdump;
pub mod lzo;
#[deny(clippy::cast_possible_truncation)] // parses untrusted bytes: no silent truncation
pub mod notes;
#[deny(clippy::cast_possible_truncation)] // parses untrusted bytes: no silent truncation
pub mod physmem;
#[deny(clippy::cast_possible_truncation)] // parses untrusted bytes: no silent truncation
pub mod scan;
pub mod utc;

pub use codec::{Codec, Encoded, PageDecoder, PageEncoder, decompress_page, is_zero_page};
pub use detect::{AnyDump, DumpFormat, detect_format, open_dump};
pub use elf::ElfVmcore;
pub use error::{Error, Result};
pub use flat::{FlatReader, FlatWriter, rebuild_flattened};
pub use kdump::{
    KdumpConfig, KdumpReader, KdumpWriter, LimitedSink, PfnSet, SeekSink, SetUse, SplitPart, SplitReader,
    WRITER_BUFFER_BYTES, WriteAt, WriteSummary, copy_pages,
};
pub use physmem::{PageState, PfnRange, PhysMem};
pub use scan::{FoundVmcoreinfo, VmcoreinfoScan};
