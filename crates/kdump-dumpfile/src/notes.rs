//! ELF notes: the contents of PT_NOTE segments.
//!
//! A note is `{u32 namesz; u32 descsz; u32 type}` followed by the name (with its NUL,
//! padded to 4 bytes) and the descriptor (padded to 4 bytes). Linux uses 4-byte padding in
//! both ELF32 and ELF64 cores.

use crate::error::{Result, corrupt};

/// `NT_PRSTATUS`: registers of one CPU (note name `"CORE"`).
pub use kdump_elf::NT_PRSTATUS;
/// Note name of the VMCOREINFO note (its type is 0).
pub const VMCOREINFO_NAME: &[u8] = b"VMCOREINFO";

/// One parsed note, borrowing from the notes buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// Name without the trailing NUL (`"CORE"`, `"VMCOREINFO"`, …).
    pub name: &'a [u8],
    /// Note type (`NT_PRSTATUS` = 1, …).
    pub ntype: u32,
    /// The descriptor bytes.
    pub desc: &'a [u8],
    /// Offset of the descriptor within the notes buffer.
    pub desc_offset: usize,
}

fn pad4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

/// Iterator over the notes in a buffer; see [`parse_notes`].
#[derive(Debug, Clone)]
pub struct NoteIter<'a> {
    buf: &'a [u8],
    pos: usize,
    little_endian: bool,
    done: bool,
}

/// Parses the notes in `buf` (little-endian byte order unless `little_endian` is false).
///
/// Iteration stops at the end of the buffer or at an all-zero note header (padding); a note
/// that runs past the end is an error.
pub fn parse_notes(buf: &[u8], little_endian: bool) -> NoteIter<'_> {
    NoteIter { buf, pos: 0, little_endian, done: false }
}

impl<'a> Iterator for NoteIter<'a> {
    type Item = Result<Note<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.buf.len().saturating_sub(self.pos) < 12 {
            return None;
        }
        let le = self.little_endian;
        let h = &self.buf[self.pos..];
        let namesz = crate::physmem::u32_at(h, 0, le) as usize;
        let descsz = crate::physmem::u32_at(h, 4, le) as usize;
        let ntype = crate::physmem::u32_at(h, 8, le);
        if namesz == 0 && descsz == 0 && ntype == 0 {
            self.done = true;
            return None;
        }
        let name_start = self.pos + 12;
        let desc_start = pad4(namesz).and_then(|n| n.checked_add(name_start));
        let end = desc_start.and_then(|d| pad4(descsz).and_then(|p| p.checked_add(d)));
        let (Some(desc_start), Some(end)) = (desc_start, end) else {
            self.done = true;
            return Some(Err(corrupt("ELF note", "size overflows")));
        };
        // The last note's descriptor padding may be missing.
        if desc_start + descsz > self.buf.len() || desc_start > self.buf.len() {
            self.done = true;
            return Some(Err(corrupt(
                "ELF note",
                format!(
                    "note at offset {} (namesz {namesz}, descsz {descsz}) runs past the end of the notes ({} bytes)",
                    self.pos,
                    self.buf.len()
                ),
            )));
        }
        let mut name = &self.buf[name_start..name_start + namesz];
        if let Some(stripped) = name.strip_suffix(&[0]) {
            name = stripped;
        }
        let desc = &self.buf[desc_start..desc_start + descsz];
        self.pos = end.min(self.buf.len());
        Some(Ok(Note { name, ntype, desc, desc_offset: desc_start }))
    }
}

/// Appends one note (little-endian) to `out`.
pub fn push_note(out: &mut Vec<u8>, name: &[u8], ntype: u32, desc: &[u8]) {
    // Notes we write are small (register sets, VMCOREINFO); a longer field saturates, which
    // readers reject rather than misparse.
    let namesz = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&namesz.to_le_bytes());
    out.extend_from_slice(&u32::try_from(desc.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&ntype.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Finds the VMCOREINFO note; returns `(offset of its descriptor, descriptor)`.
pub fn find_vmcoreinfo(notes: &[u8], little_endian: bool) -> Option<(usize, &[u8])> {
    parse_notes(notes, little_endian)
        .map_while(|n| n.ok())
        .find(|n| n.name == VMCOREINFO_NAME)
        .map(|n| (n.desc_offset, n.desc))
}

/// `notes` with the VMCOREINFO note's text replaced by `text` (added when there is none);
/// the other notes are kept, in order.
pub fn with_vmcoreinfo(notes: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(notes.len() + text.len());
    for n in parse_notes(notes, true).map_while(|n| n.ok()).filter(|n| n.name != VMCOREINFO_NAME) {
        out.resize(out.len().next_multiple_of(4), 0);
        push_note(&mut out, n.name, n.ntype, n.desc);
    }
    out.resize(out.len().next_multiple_of(4), 0);
    push_note(&mut out, VMCOREINFO_NAME, 0, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_roundtrip() {
        let mut b = Vec::new();
        push_note(&mut b, b"CORE", NT_PRSTATUS, &[1, 2, 3]);
        // header 12 + "CORE\0" padded to 8 + desc 3 padded to 4
        assert_eq!(b.len(), 24);
        assert_eq!(&b[0..12], &[5, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[12..20], b"CORE\0\0\0\0");
        push_note(&mut b, VMCOREINFO_NAME, 0, b"OSRELEASE=6.1\n");
        b.extend_from_slice(&[0; 12]);
        let notes: Vec<_> = parse_notes(&b, true).collect::<Result<_>>().unwrap();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].name, b"CORE");
        assert_eq!(notes[0].desc, &[1, 2, 3]);
        assert_eq!(notes[1].desc_offset, 24 + 12 + 12);
        assert_eq!(find_vmcoreinfo(&b, true).unwrap().1, b"OSRELEASE=6.1\n");
    }

    #[test]
    fn truncated_is_error() {
        let mut b = Vec::new();
        push_note(&mut b, b"CORE", 1, &[7; 40]);
        for cut in 12..b.len() - 1 {
            let r: Result<Vec<_>> = parse_notes(&b[..cut], true).collect();
            assert!(r.is_err(), "cut {cut}");
        }
    }

    #[test]
    fn the_vmcoreinfo_note_is_replaced_and_the_others_kept() {
        let mut notes = Vec::new();
        push_note(&mut notes, b"CORE", 1, &[7; 336]);
        notes.resize(notes.len().next_multiple_of(4), 0);
        push_note(&mut notes, VMCOREINFO_NAME, 0, b"OSRELEASE=6.1\n");
        notes.resize(notes.len().next_multiple_of(4), 0);
        push_note(&mut notes, b"CORE", 1, &[8; 336]);
        let out = with_vmcoreinfo(&notes, b"OSRELEASE=6.1\nLIVE_DUMP=1\n");
        let parsed: Vec<Note<'_>> = parse_notes(&out, true).map(|n| n.unwrap()).collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!((parsed[0].desc[0], parsed[1].desc[0]), (7, 8), "the others, in order");
        assert_eq!(find_vmcoreinfo(&out, true).unwrap().1, b"OSRELEASE=6.1\nLIVE_DUMP=1\n");
        assert_eq!(find_vmcoreinfo(&with_vmcoreinfo(&[], b"X=1\n"), true).unwrap().1, b"X=1\n");
    }
}
