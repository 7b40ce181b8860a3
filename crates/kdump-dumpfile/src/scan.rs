//! Finding the kernel's VMCOREINFO note in a dump's memory, for dumps that carry no
//! VMCOREINFO note of their own (QEMU `dump-guest-memory`, `virsh dump --memory-only`).
//!
//! Since Linux 4.13 the kernel keeps its note in `vmcoreinfo_note`, allocated with
//! `alloc_pages_exact`: it starts on a page boundary with the ELF note header
//! `{namesz = 11, descsz, type = 0}`, the name `"VMCOREINFO\0"` padded to 12 bytes, and a
//! descriptor of at most one page (`VMCOREINFO_BYTES`) of `KEY=VALUE` lines that starts with
//! `OSRELEASE=`. So only the first bytes of each RAM page need a look; a candidate is kept
//! only if its whole text is well-formed.

use crate::error::Result;
use crate::physmem::{PageState, PfnRange, PhysMem};

/// A VMCOREINFO note read from the dump's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundVmcoreinfo {
    /// Physical address of the note header.
    pub paddr: u64,
    /// The descriptor: the VMCOREINFO text.
    pub text: Vec<u8>,
}

/// `namesz`, `descsz`, `type`, then the name padded to 4 bytes.
const HEADER_LEN: usize = 12 + 12;
const NAME: &[u8; 12] = b"VMCOREINFO\0\0";
const FIRST_KEY: &[u8] = b"OSRELEASE=";

/// The descriptor length a note header at the start of `page` declares, if the header and
/// name are VMCOREINFO's and the text starts with `OSRELEASE=`.
fn header_descsz(page: &[u8]) -> Option<usize> {
    let h = page.get(..HEADER_LEN + FIRST_KEY.len())?;
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if word(0) != 11 || word(8) != 0 || &h[12..24] != NAME || !h[24..].starts_with(FIRST_KEY) {
        return None;
    }
    usize::try_from(word(4)).ok()
}

/// Whether `text` reads as VMCOREINFO: printable `KEY=VALUE` lines (the last one's
/// newline may be missing: old kernels appended CRASHTIME without one).
fn well_formed(text: &[u8]) -> bool {
    text.starts_with(FIRST_KEY)
        && text
            .split(|&b| b == b'\n')
            .all(|line| line.is_empty() || (line.contains(&b'=') && line.iter().all(|&b| (0x20..0x7f).contains(&b))))
}

/// A scan of the start of every RAM page for the kernel's VMCOREINFO note, lowest address
/// first, resumable: the caller can check each note it yields (e.g. against the memory it
/// describes) and stop at the first good one, so a scan usually ends early in memory. Reads
/// one page at a time (two for a note that runs into the next page): memory use does not
/// depend on the dump's size.
#[derive(Debug, Clone)]
pub struct VmcoreinfoScan {
    ranges: Vec<PfnRange>,
    range: usize,
    pfn: u64,
    page: Vec<u8>,
    next: Vec<u8>,
    /// RAM pages whose start was examined so far.
    pub pages_scanned: u64,
    /// RAM pages the dump does not hold (excluded, lost, unreadable): not examined.
    pub pages_absent: u64,
}

impl VmcoreinfoScan {
    /// A scan of `mem`'s RAM ranges.
    pub fn new(mem: &dyn PhysMem) -> Self {
        let page_len = usize::try_from(mem.page_size()).unwrap_or(4096);
        let ranges = mem.ram_ranges().to_vec();
        let pfn = ranges.first().map_or(0, |r| r.start);
        Self {
            ranges,
            range: 0,
            pfn,
            page: vec![0; page_len],
            next: vec![0; page_len],
            pages_scanned: 0,
            pages_absent: 0,
        }
    }

    /// The next well-formed note, or `None` when every RAM page was examined. Pages that
    /// cannot be read are skipped; only an I/O error of the underlying reader stops the scan.
    pub fn next_note(&mut self, mem: &mut dyn PhysMem) -> Result<Option<FoundVmcoreinfo>> {
        let page_len = self.page.len();
        // The kernel's VMCOREINFO_BYTES is one page; a longer descsz is not this note.
        let max_text = page_len.max(4096);
        while let Some(range) = self.ranges.get(self.range) {
            if self.pfn >= range.end {
                self.range += 1;
                self.pfn = self.ranges.get(self.range).map_or(0, |r| r.start);
                continue;
            }
            let pfn = self.pfn;
            self.pfn += 1;
            match mem.read_page(pfn, &mut self.page) {
                Ok(PageState::Present | PageState::ZeroFilled) => self.pages_scanned += 1,
                Ok(_) => {
                    self.pages_absent += 1;
                    continue;
                }
                Err(crate::Error::Io(e)) => return Err(crate::Error::Io(e)),
                Err(_) => {
                    self.pages_absent += 1;
                    continue;
                }
            }
            let Some(descsz) = header_descsz(&self.page) else { continue };
            if descsz < FIRST_KEY.len() || descsz > max_text {
                continue;
            }
            let end = HEADER_LEN + descsz;
            let text = if end <= page_len {
                self.page[HEADER_LEN..end].to_vec()
            } else {
                match mem.read_page(pfn + 1, &mut self.next) {
                    Ok(PageState::Present | PageState::ZeroFilled) => {}
                    _ => continue,
                }
                let mut t = self.page[HEADER_LEN..].to_vec();
                t.extend_from_slice(&self.next[..end - page_len]);
                t
            };
            if well_formed(&text) {
                return Ok(Some(FoundVmcoreinfo { paddr: pfn * mem.page_size(), text }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use super::*;
    use crate::notes::{VMCOREINFO_NAME, push_note};

    /// Pages in a vector; PFNs listed in `absent` read as excluded.
    struct Pages {
        bytes: Vec<u8>,
        ranges: Vec<PfnRange>,
        absent: Vec<u64>,
    }

    impl PhysMem for Pages {
        fn page_size(&self) -> u64 {
            4096
        }
        fn max_pfn(&self) -> u64 {
            self.bytes.len() as u64 / 4096
        }
        fn ram_ranges(&self) -> &[PfnRange] {
            &self.ranges
        }
        fn read_page(&mut self, pfn: u64, buf: &mut [u8]) -> Result<PageState> {
            let at = pfn as usize * 4096;
            if self.absent.contains(&pfn) || at + 4096 > self.bytes.len() {
                buf.fill(0);
                return Ok(PageState::Excluded);
            }
            buf.copy_from_slice(&self.bytes[at..at + 4096]);
            Ok(PageState::Present)
        }
        fn notes(&self) -> &[u8] {
            &[]
        }
        fn vmcoreinfo(&self) -> Option<&[u8]> {
            None
        }
    }

    /// Every note the scan yields, up to `max`, and the scan's counters.
    fn scan(mem: &mut Pages, max: usize) -> (Vec<FoundVmcoreinfo>, u64, u64) {
        let mut s = VmcoreinfoScan::new(mem);
        let mut found = Vec::new();
        while found.len() < max {
            match s.next_note(mem).unwrap() {
                Some(f) => found.push(f),
                None => break,
            }
        }
        (found, s.pages_scanned, s.pages_absent)
    }

    fn memory(pages: u64) -> Pages {
        Pages { bytes: vec![0; pages as usize * 4096], ranges: std::iter::once(0..pages).collect(), absent: Vec::new() }
    }

    fn put_note(mem: &mut Pages, at: usize, text: &[u8]) {
        let mut note = Vec::new();
        push_note(&mut note, VMCOREINFO_NAME, 0, text);
        mem.bytes[at..at + note.len()].copy_from_slice(&note);
    }

    const TEXT: &[u8] = b"OSRELEASE=6.1.0-57-cloud-amd64\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82a0d4a0\n";

    #[test]
    fn finds_a_page_aligned_note() {
        let mut mem = memory(16);
        put_note(&mut mem, 7 * 4096, TEXT);
        let (found, scanned, _) = scan(&mut mem, 4);
        assert_eq!(found, vec![FoundVmcoreinfo { paddr: 7 * 4096, text: TEXT.to_vec() }]);
        assert_eq!(scanned, 16);
        // Stopping at the first note reads no further.
        let mut s = VmcoreinfoScan::new(&mem);
        assert_eq!(s.next_note(&mut mem).unwrap().map(|f| f.paddr), Some(7 * 4096));
        assert_eq!(s.pages_scanned, 8);
    }

    #[test]
    fn a_note_running_into_the_next_page_is_read_whole() {
        let mut mem = memory(4);
        let mut text = b"OSRELEASE=6.1\n".to_vec();
        while text.len() < 4090 {
            text.extend_from_slice(b"NUMBER(x)=1\n");
        }
        put_note(&mut mem, 4096, &text);
        let (found, _, _) = scan(&mut mem, 4);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].text, text);
        // The continuation page is not in the dump: not a usable note.
        mem.absent.push(2);
        assert!(scan(&mut mem, 4).0.is_empty());
    }

    #[test]
    fn rejects_what_only_looks_like_a_note() {
        let mut mem = memory(8);
        // Raw text without a note header (vmcoreinfo_data), not page aligned, wrong type,
        // binary text, descsz past one page, a line that is not KEY=VALUE.
        mem.bytes[4096..4096 + TEXT.len()].copy_from_slice(TEXT);
        put_note(&mut mem, 2 * 4096 + 64, TEXT);
        put_note(&mut mem, 3 * 4096, TEXT);
        mem.bytes[3 * 4096 + 8] = 1;
        put_note(&mut mem, 4 * 4096, b"OSRELEASE=6.1\n\x01\x02=\n");
        put_note(&mut mem, 5 * 4096, TEXT);
        mem.bytes[5 * 4096 + 4..5 * 4096 + 8].copy_from_slice(&8192u32.to_le_bytes());
        put_note(&mut mem, 6 * 4096, b"OSRELEASE=6.1\nnot a key\n");
        let (found, _, _) = scan(&mut mem, 4);
        assert!(found.is_empty(), "{found:?}");
        // An unterminated last line is still VMCOREINFO.
        put_note(&mut mem, 7 * 4096, b"OSRELEASE=6.1\nCRASHTIME=1700000000");
        assert_eq!(scan(&mut mem, 4).0.iter().map(|f| f.paddr).collect::<Vec<_>>(), vec![7 * 4096]);
    }

    #[test]
    fn garbage_never_panics_and_the_count_is_bounded() {
        // Every page starts with a valid header whose descsz is arbitrary.
        let mut mem = memory(64);
        let mut x = 0x1234_5678u32;
        for (i, b) in mem.bytes.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = if i % 4096 < 40 { 0 } else { x as u8 };
        }
        for p in 0..64 {
            put_note(&mut mem, p * 4096, TEXT);
            let descsz = (p as u32).wrapping_mul(0x9e37_79b9);
            mem.bytes[p * 4096 + 4..p * 4096 + 8].copy_from_slice(&descsz.to_le_bytes());
        }
        let (found, scanned, _) = scan(&mut mem, 64);
        assert_eq!(scanned, 64);
        assert!(found.iter().all(|f| f.text.starts_with(FIRST_KEY)));
        for p in 0..64 {
            put_note(&mut mem, p * 4096, TEXT);
        }
        assert_eq!(scan(&mut mem, 100).0.len(), 64);
        mem.absent = (0..64).collect();
        let (found, _, absent) = scan(&mut mem, 3);
        assert_eq!((found.len(), absent), (0, 64));
    }
}
