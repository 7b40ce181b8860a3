//! Finding the kallsyms tables inside the kernel image when VMCOREINFO does
//! not say where they are (kernels before 6.0).
//!
//! scripts/kallsyms.c emits, in .rodata, `[kallsyms_offsets,
//! kallsyms_relative_base | kallsyms_addresses], kallsyms_num_syms,
//! kallsyms_names, kallsyms_markers, kallsyms_token_table,
//! kallsyms_token_index` (6.x moved the offsets after the index, which is
//! tried too). Each table has a structure that can be checked:
//!
//! 1. The token table holds 256 non-empty NUL-terminated strings; a byte that
//!    occurs in names as itself is its own token, so tokens 0x30..0x39 are
//!    `"0" .. "9"`: the 20 bytes `0\0 1\0 … 9\0` are searched for.
//! 2. The token index (256 u16 right after the table, aligned) must give each
//!    token's offset exactly, which also fixes where the table starts.
//! 3. The markers (u32 or u64, the offset in the names of every 256th entry)
//!    end just before the token table: strictly increasing from 0, each step
//!    at least 512 bytes (256 entries of at least 2 bytes).
//! 4. The names start where a `kallsyms_num_syms` word right before them
//!    agrees with the number of markers, and walking the entries' lengths from
//!    there hits every marker and ends at the markers.
//! 5. The offsets: each candidate layout must put the decoded `_stext` exactly
//!    at VMCOREINFO's `SYMBOL(_stext)`.
//!
//! The work is bounded: the image is read once in 1 MiB chunks up to a limit
//! (pages missing from the dump are skipped),
//! at most [`MAX_CANDIDATES`] matches are examined, and every length read
//! from memory is checked before use.

use super::{
    Addressing, KallsymsTables, MAX_ENTRY_BYTES, MAX_NAMES_BYTES, MAX_SYMBOLS, PAGE, address, check_stext,
    decode_names, read_backward, read_forward,
};
use crate::memory::{KernelMemory, PhysRead};
use crate::{Error, Result};

const DIGIT_TOKENS: &[u8; 20] = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00";
const CHUNK: u64 = 1 << 20;
/// Matches of the digit tokens examined at most (real images have a handful).
pub const MAX_CANDIDATES: usize = 64;
/// The longest a token can be: the whole table is indexed by u16.
const MAX_TABLE: u64 = 1 << 16;

/// Searches `len` bytes of kernel image from `start` for the kallsyms tables;
/// `stext` (VMCOREINFO `SYMBOL(_stext)`) proves a candidate right.
pub fn scan_image<P: PhysRead>(mem: &mut KernelMemory<P>, start: u64, len: u64, stext: u64) -> Result<KallsymsTables> {
    let end = start.saturating_add(len);
    let mut at = start;
    let mut carry: Vec<u8> = Vec::new();
    let mut examined = 0usize;
    let mut last_error: Option<Error> = None;
    let mut missing = 0u64;
    while at < end {
        let n = CHUNK.min(end - at);
        let mut chunk = vec![0u8; crate::to_usize(n)];
        if mem.read(at, &mut chunk).is_err() {
            // Pages the kernel freed (the text/rodata gap, init memory) are
            // filtered out of dumps: search the pages that are there.
            chunk = read_forward(mem, at, n);
            if chunk.is_empty() {
                carry.clear();
                let next = (at | (PAGE - 1)) + 1;
                missing += next - at;
                at = next;
                continue;
            }
        }
        let n = chunk.len() as u64;
        let base = at - carry.len() as u64;
        let mut hay = std::mem::take(&mut carry);
        hay.extend_from_slice(&chunk);
        for i in find_all(&hay, DIGIT_TOKENS) {
            examined += 1;
            if examined > MAX_CANDIDATES {
                return Err(Error::Corrupt(format!(
                    "more than {MAX_CANDIDATES} places look like the start of the kallsyms digit tokens and none checked out"
                )));
            }
            match tables_around(mem, base + i as u64, stext) {
                Ok(t) => return Ok(t),
                Err(e) => last_error = Some(e),
            }
        }
        carry = hay[hay.len().saturating_sub(DIGIT_TOKENS.len() - 1)..].to_vec();
        at += n;
    }
    let scanned = (at - start - missing) >> 20;
    Err(Error::Corrupt(match last_error {
        Some(e) => format!(
            "no kallsyms tables in {scanned} MiB of kernel image from {start:#x} ({examined} candidates; the last: {e})"
        ),
        None => format!("no kallsyms token table in {scanned} MiB of kernel image from {start:#x}"),
    }))
}

fn find_all<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    hay.windows(needle.len()).enumerate().filter(move |(_, w)| w[0] == needle[0] && *w == needle).map(|(i, _)| i)
}

/// The tables around a match of the digit tokens at `digits_at`.
fn tables_around<P: PhysRead>(mem: &mut KernelMemory<P>, digits_at: u64, stext: u64) -> Result<KallsymsTables> {
    let (token_table, token_index, tokens) = token_tables(mem, digits_at)?;
    let markers = marker_candidates(mem, token_table);
    if markers.is_empty() {
        return Err(Error::Corrupt(format!("no kallsyms_markers before the token table at {token_table:#x}")));
    }
    let mut last_error = None;
    for (markers_at, marks) in markers {
        match names_before(mem, markers_at, &marks) {
            Ok((names, num_at, num)) => {
                let decoded = decode_names(mem, names, num, &tokens)?;
                return offsets_for(mem, &decoded, num_at, num, token_index, stext).map(|(addresses, addressing)| {
                    KallsymsTables { num_syms: num, names, token_table, token_index, addresses, addressing }
                });
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::Corrupt("no kallsyms_names".into())))
}

/// `(token table address, token index address, the 256 tokens)` when the
/// digit tokens at `digits_at` are token 0x30.. of a table whose index checks out.
fn token_tables<P: PhysRead>(mem: &mut KernelMemory<P>, digits_at: u64) -> Result<(u64, u64, Vec<Vec<u8>>)> {
    let not = |why: &str| Error::Corrupt(format!("{digits_at:#x} is not in a kallsyms token table: {why}"));
    // Back to the start of token 1 (token 0's start is fixed by the index below).
    let back = read_backward(mem, digits_at, MAX_TABLE);
    let mut p = back.len();
    for _ in 1..0x30 {
        if p < 2 || back[p - 1] != 0 {
            return Err(not("tokens before '0'"));
        }
        let start = back[..p - 1].iter().rposition(|&b| b == 0).map(|z| z + 1).ok_or_else(|| not("token 1"))?;
        if start == p - 1 {
            return Err(not("an empty token"));
        }
        p = start;
    }
    let token1 = digits_at - (back.len() - p) as u64;
    // Forward over tokens 0x30..=0xff to the end of the table.
    let fwd = read_forward(mem, digits_at, MAX_TABLE);
    let mut q = 0usize;
    for _ in 0x30..=0xff {
        let len = fwd.get(q..).and_then(|r| r.iter().position(|&b| b == 0)).ok_or_else(|| not("tokens after '9'"))?;
        if len == 0 {
            return Err(not("an empty token"));
        }
        q += len + 1;
    }
    let table_end = digits_at + q as u64;
    for align in [2u64, 4, 8] {
        let index_at = table_end.next_multiple_of(align);
        let Ok(raw) = mem.read_vec(index_at, 512, 512, "kallsyms_token_index") else { continue };
        let index: Vec<u64> = raw.chunks_exact(2).map(|c| u64::from(u16::from_le_bytes([c[0], c[1]]))).collect();
        let Some(table_at) = token1.checked_sub(index[1]) else { continue };
        if index[0] != 0 || token1 - table_at < 2 {
            continue;
        }
        // Tokens 1.. are where the index says, and token 0 fills the gap before token 1.
        let text_end = crate::to_usize(table_end - table_at);
        let Ok(text) = mem.read_vec(table_at, text_end as u64, MAX_TABLE, "kallsyms_token_table") else { continue };
        let mut tokens = Vec::with_capacity(256);
        let mut at = 0usize;
        let mut good = true;
        for &expected in &index {
            let len = text.get(at..).and_then(|r| r.iter().position(|&b| b == 0));
            match len {
                Some(len) if expected == at as u64 && len > 0 => {
                    tokens.push(text[at..at + len].to_vec());
                    at += len + 1;
                }
                _ => {
                    good = false;
                    break;
                }
            }
        }
        if good && at == text_end {
            return Ok((table_at, index_at, tokens));
        }
    }
    Err(not("no kallsyms_token_index after it gives the tokens' offsets"))
}

/// `(address of markers[0], markers)` for each reading of the words before
/// the token table: u32 or u64 entries, with or without 4 bytes of padding.
fn marker_candidates<P: PhysRead>(mem: &mut KernelMemory<P>, token_table: u64) -> Vec<(u64, Vec<u64>)> {
    let max_markers = MAX_SYMBOLS / 256 + 1;
    let back = read_backward(mem, token_table, (max_markers + 2) * 8);
    let mut out = Vec::new();
    for (width, pad) in [(4usize, 0usize), (4, 4), (8, 0)] {
        let Some(mut end) = back.len().checked_sub(pad) else { continue };
        if pad > 0 && back[end..].iter().any(|&b| b != 0) {
            continue;
        }
        let mut marks = Vec::new();
        while end >= width {
            let w = &back[end - width..end];
            let v = if width == 4 {
                u64::from(u32::from_le_bytes(w.try_into().unwrap_or_default()))
            } else {
                u64::from_le_bytes(w.try_into().unwrap_or_default())
            };
            end -= width;
            if let Some(&next) = marks.last()
                && (v >= next || next - v < 512 || next - v > 256 * MAX_ENTRY_BYTES)
            {
                marks.clear();
                break;
            }
            marks.push(v);
            if v == 0 {
                break;
            }
        }
        if marks.last() == Some(&0) {
            marks.reverse();
            let at = token_table - (back.len() - end) as u64;
            out.push((at, marks));
        }
    }
    out
}

/// `(names address, num_syms address, num_syms)`: the names end at the
/// markers, and walking them from the start hits every marker.
fn names_before<P: PhysRead>(mem: &mut KernelMemory<P>, markers_at: u64, marks: &[u64]) -> Result<(u64, u64, u64)> {
    let count = marks.len() as u64;
    let last = *marks.last().unwrap_or(&0);
    if last > MAX_NAMES_BYTES {
        return Err(Error::Corrupt(format!("kallsyms_markers at {markers_at:#x} claim {last} bytes of names")));
    }
    // The last block is 1..=256 entries after marks[last]; a word before the names holds num_syms.
    let span = last + 256 * MAX_ENTRY_BYTES + 8;
    let region = read_backward(mem, markers_at, span);
    let region_at = markers_at - region.len() as u64;
    let byte = |a: u64| a.checked_sub(region_at).and_then(|i| region.get(crate::to_usize(i))).copied();
    let word = |a: u64| -> Option<u64> {
        let i = crate::to_usize(a.checked_sub(region_at)?);
        Some(u64::from(u32::from_le_bytes(region.get(i..i + 4)?.try_into().ok()?)))
    };
    // Walks `n` entries from `at`; the end, or None past the region.
    let walk = |mut at: u64, n: u64| -> Option<u64> {
        for _ in 0..n {
            let b = byte(at)?;
            let (len, head) = if b & 0x80 != 0 {
                (u64::from(b & 0x7f) | u64::from(byte(at + 1)?) << 7, 2)
            } else {
                (u64::from(b), 1)
            };
            if len == 0 {
                return None;
            }
            at += head + len;
            if at > markers_at {
                return None;
            }
        }
        Some(at)
    };
    let highest = markers_at.checked_sub(last + 2).ok_or_else(|| Error::Corrupt("markers overflow".into()))?;
    let lowest = region_at + 8;
    let mut s = highest & !3;
    while s >= lowest {
        for gap in [4u64, 8] {
            let Some(num) = word(s - gap) else { continue };
            if num == 0 || num.div_ceil(256) != count {
                continue;
            }
            let tail = num - 256 * (count - 1);
            let Some(end) = walk(s + last, tail) else { continue };
            if markers_at - end > 7 || (end..markers_at).any(|a| byte(a) != Some(0)) {
                continue;
            }
            let every = marks.windows(2).all(|m| walk(s + m[0], 256) == Some(s + m[1]));
            if every {
                return Ok((s, s - gap, num));
            }
        }
        s -= 4;
    }
    Err(Error::Corrupt(format!("no kallsyms_names end at the {count} markers at {markers_at:#x}")))
}

/// Where the offsets (or addresses) are and how to read them: the layout
/// whose `_stext` is VMCOREINFO's.
fn offsets_for<P: PhysRead>(
    mem: &mut KernelMemory<P>,
    names: &[(u8, String)],
    num_at: u64,
    num: u64,
    token_index: u64,
    stext: u64,
) -> Result<(u64, Addressing)> {
    let mut candidates: Vec<(u64, Option<u64>)> = Vec::new(); // (offsets, relative base address)
    // Before num_syms: kallsyms_relative_base, preceded by the offsets (aligned or not).
    if let Some(base_at) = num_at.checked_sub(8) {
        for start in [base_at.checked_sub((4 * num).next_multiple_of(8)), base_at.checked_sub(4 * num)] {
            candidates.extend(start.map(|s| (s, Some(base_at))));
        }
    }
    // After the token index (6.x order): the offsets, then the relative base.
    for align in [4u64, 8] {
        let at = (token_index + 512).next_multiple_of(align);
        candidates.push((at, Some((at + 4 * num).next_multiple_of(8))));
        candidates.push((at, None));
    }
    for (at, base_at) in candidates {
        let addressing = match base_at {
            Some(b) => match mem.read_u64(b) {
                Ok(base) => Addressing::RelativeBase(base),
                Err(_) => continue,
            },
            None => Addressing::PlaceRelative,
        };
        // Whether offsets are stored negative (absolute per-CPU) is a property of the whole table.
        let Ok(raw) = mem.read_vec(at, 4 * num, 4 * MAX_SYMBOLS, "kallsyms_offsets") else { continue };
        let percpu = raw.chunks_exact(4).any(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) < 0);
        let at_index = |i: usize| {
            let r = raw.get(4 * i..4 * i + 4).ok_or_else(|| Error::Corrupt("short offsets".into()))?;
            Ok(address(addressing, at, i, i32::from_le_bytes(r.try_into().unwrap_or_default()), percpu))
        };
        if check_stext(names, at_index, stext).is_ok() {
            return Ok((at, addressing));
        }
    }
    // Before 4.6: absolute addresses before num_syms.
    if let Some(at) = num_at.checked_sub(8 * num) {
        let at_index = |i: usize| mem.read_u64(at + 8 * i as u64);
        if check_stext(names, at_index, stext).is_ok() {
            return Ok((at, Addressing::Absolute));
        }
    }
    Err(Error::Corrupt(format!(
        "the kallsyms names decode, but no offsets table around them puts _stext at {stext:#x}"
    )))
}
