//! kdump-compressed format (makedumpfile's default output, signature `"KDUMP   "`).
//!
//! Layout (64-bit little-endian, `block` = page size):
//!
//! ```text
//! block 0        disk_dump_header (464 bytes), rest zero
//! block 1        kdump_sub_header (104 bytes), ELF notes at block+104 (VMCOREINFO inside)
//! block 1+S      1st bitmap (bit set: PFN is RAM)          S = sub_hdr_size in blocks
//! ...            2nd bitmap (bit set: PFN has a page_desc) each bitmap = bitmap_blocks/2 blocks
//! block 1+S+B    page_desc[] (24 bytes each), indexed by the rank of the PFN in the 2nd bitmap
//! ...            page data at absolute offsets (page_desc.offset); offset 0 = page lost
//! ```
//!
//! The [`KdumpWriter`] writes in a single pass with bounded memory: it reserves one
//! descriptor per RAM page, or per page the caller says it will append (`descriptor_slots`)
//! (an upper bound; absolute data offsets make the unused tail of the
//! table harmless), writes the 1st bitmap up front and the 2nd bitmap block by block as pages
//! are appended in PFN order. Pages that are never appended are excluded.

/// Signature of kdump-compressed files.
pub const KDUMP_SIGNATURE: &[u8; 8] = b"KDUMP   ";
/// Header version written by this crate (and by makedumpfile and QEMU).
pub const HEADER_VERSION: i32 = 6;
/// Most note/VMCOREINFO bytes accepted by the reader.
pub const MAX_NOTES_SIZE: u64 = 64 << 20;
/// Most RAM ranges the reader builds from the 1st bitmap.
pub const MAX_RAM_RANGES: usize = 1 << 22;

#[deny(clippy::cast_possible_truncation)] // parses untrusted bytes: no silent truncation
mod header;
#[deny(clippy::cast_possible_truncation)]
mod reader;
mod sink;
pub mod split;
#[cfg(test)]
mod tests;
mod writer;

pub use header::*;
pub use reader::*;
pub use sink::*;
pub use split::{PfnSet, SetUse, SplitPart, SplitReader, balanced_ranges, check_split_set, reassemble};
pub use writer::*;
