//! The kernel's symbol table, decoded from the kallsyms tables in its memory,
//! or read from a System.map with the KASLR offset applied.
//!
//! Where the tables are: VMCOREINFO names them on 6.0+ kernels; older ones
//! (and any kernel whose VMCOREINFO lacks the keys) are searched for inside
//! the kernel image by their structure ([`scan_image`]). How their offsets
//! become addresses is decided from what is there, never from a version:
//!
//! - `kallsyms_relative_base` exported or found: base-relative offsets
//!   (4.6 .. 6.x). With KALLSYMS_ABSOLUTE_PERCPU (x86_64 SMP up to 6.12) text
//!   offsets are stored negative (`base - 1 - offset`) and per-CPU symbols as
//!   non-negative absolute values; without it every offset is `base + (u32)offset`.
//!   Any negative offset in the table means the former.
//! - `kallsyms_offsets` without a relative base (7.x): each entry is relative
//!   to its own address (`offset_to_ptr`), so `&offsets[i] + (s32)offsets[i]`.
//! - `kallsyms_addresses` (before 4.6, found by the scan only): absolute u64s.
//!
//! Every decoded table is checked against VMCOREINFO's `SYMBOL(_stext)`: the
//! decoded `_stext` must sit exactly there, so a wrong guess never yields
//! plausible-looking but wrong names.

use crate::memory::{KernelMemory, PhysRead};
use crate::vmcoreinfo::Vmcoreinfo;
use crate::{Error, Result};

/// A symbol: address, type letter (`T` text, `t` local text, `D` data…) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Runtime address.
    pub address: u64,
    /// `nm`-style type letter.
    pub kind: char,
    /// Name.
    pub name: String,
}

/// Symbols sorted by address, for address → name lookups.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    symbols: Vec<Symbol>,
}

/// More symbols than any kernel has; a larger count means the table is corrupt.
const MAX_SYMBOLS: u64 = 4_000_000;
/// Tokens in one name: KSYM_NAME_LEN is 512 characters and a token has at least one.
const MAX_NAME_TOKENS: usize = 1024;
/// Bytes of one `kallsyms_names` entry at most: a two-byte length and its tokens.
const MAX_ENTRY_BYTES: u64 = 2 + MAX_NAME_TOKENS as u64;
/// The names stream of the largest kernels is a few MiB; past this it is garbage.
const MAX_NAMES_BYTES: u64 = 64 << 20;

/// How `kallsyms_offsets` (or `kallsyms_addresses`) entries become addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// 32-bit offsets from `kallsyms_relative_base` (its value here).
    RelativeBase(u64),
    /// 32-bit offsets from each entry's own address (7.x, no relative base).
    PlaceRelative,
    /// `kallsyms_addresses`: one absolute u64 per symbol (before 4.6).
    Absolute,
}

/// Where a kernel's kallsyms tables are (kernel virtual addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KallsymsTables {
    /// Number of symbols (the value of `kallsyms_num_syms`).
    pub num_syms: u64,
    /// `kallsyms_names`.
    pub names: u64,
    /// `kallsyms_token_table`.
    pub token_table: u64,
    /// `kallsyms_token_index`.
    pub token_index: u64,
    /// `kallsyms_offsets`, or `kallsyms_addresses` with [`Addressing::Absolute`].
    pub addresses: u64,
    /// How entries of `addresses` become addresses.
    pub addressing: Addressing,
}

/// Where the symbols of a [`SymbolTable`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolSource {
    /// The kallsyms tables whose addresses VMCOREINFO exports.
    VmcoreinfoKallsyms,
    /// The kallsyms tables found by scanning the kernel image in the dump.
    ImageScan,
    /// The running kernel's /proc/kallsyms, saved by `kdump setup` in the capture initramfs.
    Saved,
}

impl SymbolSource {
    /// Words for a report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::VmcoreinfoKallsyms => "kallsyms tables in the dump (located by VMCOREINFO)",
            Self::ImageScan => "kallsyms tables in the dump (found by scanning the kernel image)",
            Self::Saved => "the crashed kernel's /proc/kallsyms, saved by kdump setup (same release and _stext)",
        }
    }
}

mod scan;
pub use scan::scan_image;

/// How much of the kernel image [`SymbolTable::from_dump`] searches, from `_stext`:
/// text and rodata of any distribution kernel fit well within it.
pub const SCAN_LIMIT: u64 = 128 << 20;

impl SymbolTable {
    /// Builds a table from symbols in any order.
    pub fn new(mut symbols: Vec<Symbol>) -> Self {
        symbols.sort_by(|a, b| a.address.cmp(&b.address).then_with(|| a.name.cmp(&b.name)));
        Self { symbols }
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The address of a symbol by name.
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|s| s.name == name).map(|s| s.address)
    }

    /// The text symbol containing `addr`: (symbol, offset into it, its size
    /// up to the next symbol). Only text symbols (`T`/`t`/`W`/`w`) answer.
    pub fn lookup_text(&self, addr: u64) -> Option<(&Symbol, u64, u64)> {
        let idx = self.symbols.partition_point(|s| s.address <= addr).checked_sub(1)?;
        let sym = &self.symbols[idx];
        if !matches!(sym.kind, 'T' | 't' | 'W' | 'w') {
            return None;
        }
        let next = self.symbols[idx + 1..].iter().find(|s| s.address > sym.address).map(|s| s.address)?;
        Some((sym, addr - sym.address, next - sym.address))
    }

    /// True when `addr` lies in the kernel's text (`_stext` ≤ addr < `_etext`).
    pub fn is_kernel_text(&self, addr: u64) -> bool {
        match (self.address_of("_stext"), self.address_of("_etext")) {
            (Some(start), Some(end)) => (start..end).contains(&addr),
            _ => self.lookup_text(addr).is_some(),
        }
    }

    /// Parses a System.map (`address type name` lines) and slides every
    /// address by `kaslr_offset` (VMCOREINFO `KERNELOFFSET`).
    pub fn from_system_map(text: &str, kaslr_offset: u64) -> Result<Self> {
        if text.contains("The real System.map is in") {
            return Err(Error::Corrupt(
                "this System.map is Debian's placeholder: the real one is in the matching linux-image-*-dbg package \
                 (or leave --system-map out to use the kallsyms tables in the dump)"
                    .into(),
            ));
        }
        let mut symbols = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let mut f = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else { continue };
            let address = u64::from_str_radix(addr, 16)
                .map_err(|_| Error::Corrupt(format!("System.map line {}: bad address {addr:?}", n + 1)))?;
            let kind = kind.chars().next().unwrap_or('?');
            // Absolute symbols (`A`) and per-CPU offsets do not move with KASLR.
            let address = if matches!(kind, 'A' | 'a') { address } else { address.wrapping_add(kaslr_offset) };
            symbols.push(Symbol { address, kind, name: name.to_string() });
        }
        if symbols.is_empty() {
            return Err(Error::Corrupt("the System.map has no symbols (is it Debian's placeholder?)".into()));
        }
        Ok(Self::new(symbols))
    }

    /// Decodes the kallsyms tables whose addresses VMCOREINFO exports.
    pub fn from_kallsyms<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Result<Self> {
        let tables = KallsymsTables::from_vmcoreinfo(mem, info)?;
        decode(mem, &tables, info.symbol("_stext").ok())
    }

    /// The crashed kernel's symbols from the dump alone: the tables VMCOREINFO
    /// points at, else the tables found by scanning the kernel image.
    pub fn from_dump<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Result<(Self, SymbolSource)> {
        KallsymsTables::in_dump(mem, info, |mem, tables, stext| decode(mem, tables, stext))
    }

    /// Every symbol, by address.
    pub fn iter(&self) -> impl Iterator<Item = &Symbol> {
        self.symbols.iter()
    }
}

impl KallsymsTables {
    /// Runs `use_tables` on the tables VMCOREINFO points at, else on the tables
    /// found by scanning the kernel image, whichever first gives an answer.
    pub fn in_dump<P: PhysRead, T>(
        mem: &mut KernelMemory<P>,
        info: &Vmcoreinfo,
        mut use_tables: impl FnMut(&mut KernelMemory<P>, &KallsymsTables, Option<u64>) -> Result<T>,
    ) -> Result<(T, SymbolSource)> {
        let exported = match Self::from_vmcoreinfo(mem, info) {
            Ok(tables) => match use_tables(mem, &tables, info.symbol("_stext").ok()) {
                Ok(t) => return Ok((t, SymbolSource::VmcoreinfoKallsyms)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        let stext = info.symbol("_stext").map_err(|_| {
            Error::Corrupt(format!("{exported}; and without SYMBOL(_stext) the kernel image cannot be searched"))
        })?;
        let found = scan_image(mem, stext, SCAN_LIMIT.min(mem.layout().kernel_image_size), stext)
            .and_then(|tables| use_tables(mem, &tables, Some(stext)));
        match found {
            Ok(t) => Ok((t, SymbolSource::ImageScan)),
            Err(e) => Err(Error::Corrupt(format!("{exported}; searching the kernel image: {e}"))),
        }
    }

    /// The tables VMCOREINFO names. A `kallsyms_relative_base` key means
    /// base-relative offsets; its absence (7.x) means place-relative ones.
    pub fn from_vmcoreinfo<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Result<Self> {
        let num_syms = u64::from(mem.read_u32(info.symbol("kallsyms_num_syms")?)?);
        let names = info.symbol("kallsyms_names")?;
        let token_table = info.symbol("kallsyms_token_table")?;
        let token_index = info.symbol("kallsyms_token_index")?;
        let addresses = info.symbol("kallsyms_offsets")?;
        let addressing = match info.symbol("kallsyms_relative_base") {
            Ok(at) => Addressing::RelativeBase(mem.read_u64(at)?),
            Err(_) => Addressing::PlaceRelative,
        };
        Ok(Self { num_syms, names, token_table, token_index, addresses, addressing })
    }
}

/// Decodes every symbol of `tables`; with `stext`, checks that the decoded
/// `_stext` is there (the proof that tables and addressing are right).
pub fn decode<P: PhysRead>(
    mem: &mut KernelMemory<P>,
    tables: &KallsymsTables,
    stext: Option<u64>,
) -> Result<SymbolTable> {
    let num = tables.num_syms;
    if num == 0 || num > MAX_SYMBOLS {
        return Err(Error::Corrupt(format!("kallsyms_num_syms is {num}")));
    }
    let tokens = read_tokens(mem, tables.token_table, tables.token_index)?;
    let names = decode_names(mem, tables.names, num, &tokens)?;
    let addresses = addresses(mem, tables, num)?;
    if let Some(stext) = stext {
        check_stext(&names, |i| Ok(addresses[i]), stext)?;
    }
    let symbols = names
        .into_iter()
        .zip(addresses)
        .map(|((kind, name), address)| Symbol { address, kind: char::from(kind), name })
        .collect();
    Ok(SymbolTable::new(symbols))
}

/// The symbols whose names `wanted` accepts, each with its extent up to the
/// next symbol's address (`None` for the last), in one pass over the names
/// that keeps no other: a distribution kernel's whole table is tens of MiB of
/// strings, too much for a capture kernel that needs three symbols. With
/// `stext`, checks the decoded `_stext` as [`decode`] does.
pub fn find<P: PhysRead>(
    mem: &mut KernelMemory<P>,
    tables: &KallsymsTables,
    stext: Option<u64>,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<(Symbol, Option<u64>)>> {
    let num = tables.num_syms;
    if num == 0 || num > MAX_SYMBOLS {
        return Err(Error::Corrupt(format!("kallsyms_num_syms is {num}")));
    }
    let tokens = read_tokens(mem, tables.token_table, tables.token_index)?;
    let mut kept: Vec<(usize, u8, String)> = Vec::new();
    let mut stext_index = None;
    for_each_name(mem, tables.names, num, &tokens, |i, kind, name| {
        if name == b"_stext" {
            stext_index = Some(i);
        }
        let name = String::from_utf8_lossy(name);
        if wanted(&name) {
            kept.push((i, kind, name.into_owned()));
        }
    })?;
    let addresses = addresses(mem, tables, num)?;
    if let Some(stext) = stext {
        let Some(i) = stext_index else {
            return Err(Error::Corrupt("the decoded kallsyms names have no _stext".into()));
        };
        check_stext_address(addresses[i], stext)?;
    }
    Ok(kept
        .into_iter()
        .map(|(i, kind, name)| {
            let address = addresses[i];
            let end = addresses.iter().copied().filter(|&a| a > address).min();
            (Symbol { address, kind: char::from(kind), name }, end.map(|e| e - address))
        })
        .collect())
}

/// The decoded `_stext` must be VMCOREINFO's.
fn check_stext(names: &[(u8, String)], address: impl FnOnce(usize) -> Result<u64>, stext: u64) -> Result<()> {
    let Some(i) = names.iter().position(|(_, n)| n == "_stext") else {
        return Err(Error::Corrupt("the decoded kallsyms names have no _stext".into()));
    };
    check_stext_address(address(i)?, stext)
}

fn check_stext_address(got: u64, stext: u64) -> Result<()> {
    if got != stext {
        return Err(Error::Corrupt(format!(
            "the decoded _stext is at {got:#x} but VMCOREINFO says {stext:#x}: the kallsyms addressing is not understood"
        )));
    }
    Ok(())
}

/// The 256 tokens: `kallsyms_token_index[t]` is the offset of token `t`'s
/// NUL-terminated text in `kallsyms_token_table`.
fn read_tokens<P: PhysRead>(mem: &mut KernelMemory<P>, table_at: u64, index_at: u64) -> Result<Vec<Vec<u8>>> {
    let raw_index = mem.read_vec(index_at, 256 * 2, 512, "kallsyms_token_index")?;
    let index: Vec<usize> = raw_index.chunks_exact(2).map(|c| usize::from(u16::from_le_bytes([c[0], c[1]]))).collect();
    let last = index.iter().max().copied().unwrap_or(0);
    // The last token is short; read what is there past its start (up to a page).
    let mut table = mem.read_vec(table_at, last as u64, 1 << 16, "kallsyms_token_table")?;
    table.extend(read_forward(mem, table_at + last as u64, 4096));
    Ok(index
        .iter()
        .map(|&at| {
            let rest = table.get(at..).unwrap_or_default();
            rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())].to_vec()
        })
        .collect())
}

/// `(type, name)` of each of the `num` entries of `kallsyms_names`: a length
/// (one byte, or two when the first has bit 7 set, 6.1+) and that many token
/// indices; the first character of the expansion is the type.
fn decode_names<P: PhysRead>(
    mem: &mut KernelMemory<P>,
    names_at: u64,
    num: u64,
    tokens: &[Vec<u8>],
) -> Result<Vec<(u8, String)>> {
    let mut out = Vec::with_capacity(crate::to_usize(num));
    for_each_name(mem, names_at, num, tokens, |_, kind, name| {
        out.push((kind, String::from_utf8_lossy(name).into_owned()));
    })?;
    Ok(out)
}

/// Calls `visit(index, type, name)` for each of the `num` entries of `kallsyms_names`.
fn for_each_name<P: PhysRead>(
    mem: &mut KernelMemory<P>,
    names_at: u64,
    num: u64,
    tokens: &[Vec<u8>],
    mut visit: impl FnMut(usize, u8, &[u8]),
) -> Result<()> {
    let mut names = NameStream { start: names_at, at: names_at, buf: Vec::new(), pos: 0 };
    let mut name = Vec::new();
    for i in 0..num {
        let mut len = usize::from(names.byte(mem)?);
        if len & 0x80 != 0 {
            len = (len & 0x7f) | (usize::from(names.byte(mem)?) << 7);
        }
        if len == 0 || len > MAX_NAME_TOKENS {
            return Err(Error::Corrupt(format!("kallsyms entry {i} has {len} tokens")));
        }
        if names.consumed() > MAX_NAMES_BYTES {
            return Err(Error::Corrupt(format!("kallsyms_names runs past {MAX_NAMES_BYTES} bytes")));
        }
        name.clear();
        for _ in 0..len {
            name.extend_from_slice(&tokens[usize::from(names.byte(mem)?)]);
        }
        let Some((&kind, rest)) = name.split_first() else {
            return Err(Error::Corrupt(format!("kallsyms entry {i} is empty")));
        };
        visit(crate::to_usize(i), kind, rest);
    }
    Ok(())
}

/// Every symbol's address.
fn addresses<P: PhysRead>(mem: &mut KernelMemory<P>, tables: &KallsymsTables, num: u64) -> Result<Vec<u64>> {
    if tables.addressing == Addressing::Absolute {
        let raw = mem.read_vec(tables.addresses, num * 8, MAX_SYMBOLS * 8, "kallsyms_addresses")?;
        return Ok(raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect());
    }
    let raw = mem.read_vec(tables.addresses, num * 4, MAX_SYMBOLS * 4, "kallsyms_offsets")?;
    let offsets: Vec<i32> = raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default())).collect();
    let percpu = offsets.iter().any(|&o| o < 0);
    Ok(offsets.iter().enumerate().map(|(i, &o)| address(tables.addressing, tables.addresses, i, o, percpu)).collect())
}

/// Entry `i` (value `raw`) of the offsets table at `table_at` as an address.
/// `absolute_percpu`: the table holds negative offsets (KALLSYMS_ABSOLUTE_PERCPU).
fn address(addressing: Addressing, table_at: u64, i: usize, raw: i32, absolute_percpu: bool) -> u64 {
    match addressing {
        Addressing::RelativeBase(base) if absolute_percpu => {
            if raw >= 0 {
                raw as u64
            } else {
                base.wrapping_sub(1).wrapping_sub(i64::from(raw) as u64)
            }
        }
        Addressing::RelativeBase(base) => base.wrapping_add(u64::from(raw as u32)),
        Addressing::PlaceRelative => table_at.wrapping_add(4 * i as u64).wrapping_add(i64::from(raw) as u64),
        Addressing::Absolute => raw as u64,
    }
}

/// Sequential reader over `kallsyms_names`, fetched 64 KiB (or to the end of
/// the page, near the end of what is readable) at a time.
struct NameStream {
    start: u64,
    at: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl NameStream {
    fn byte<P: PhysRead>(&mut self, mem: &mut KernelMemory<P>) -> Result<u8> {
        if self.pos == self.buf.len() {
            self.at += self.buf.len() as u64;
            self.buf = vec![0; 1 << 16];
            if mem.read(self.at, &mut self.buf).is_err() {
                self.buf = vec![0; crate::to_usize(PAGE - (self.at & (PAGE - 1)))];
                mem.read(self.at, &mut self.buf)?;
            }
            self.pos = 0;
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }

    fn consumed(&self) -> u64 {
        (self.at - self.start) + self.pos as u64
    }
}

const PAGE: u64 = 4096;

/// Up to `max` bytes from `at`, page by page, stopping at the first unreadable page.
fn read_forward<P: PhysRead>(mem: &mut KernelMemory<P>, at: u64, max: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut addr = at;
    while (out.len() as u64) < max {
        let n = (PAGE - (addr & (PAGE - 1))).min(max - out.len() as u64);
        let mut page = vec![0u8; crate::to_usize(n)];
        if mem.read(addr, &mut page).is_err() {
            break;
        }
        out.extend_from_slice(&page);
        addr = addr.wrapping_add(n);
    }
    out
}

/// Up to `max` bytes that end just before `end`, page by page backwards,
/// stopping at the first unreadable page.
fn read_backward<P: PhysRead>(mem: &mut KernelMemory<P>, end: u64, max: u64) -> Vec<u8> {
    let mut pages: Vec<Vec<u8>> = Vec::new();
    let mut addr = end;
    let mut got = 0u64;
    while got < max && addr > 0 {
        let in_page = match addr & (PAGE - 1) {
            0 => PAGE,
            n => n,
        };
        let n = in_page.min(max - got).min(addr);
        let mut page = vec![0u8; crate::to_usize(n)];
        if mem.read(addr - n, &mut page).is_err() {
            break;
        }
        got += n;
        addr -= n;
        pages.push(page);
    }
    pages.into_iter().rev().flatten().collect()
}

/// First line of the symbols `kdump setup` saves; the release follows.
const SAVED_HEADER: &str = "# kdump-rs: /proc/kallsyms of ";

/// The running kernel's `/proc/kallsyms` reduced to what a crash report needs
/// (text symbols, with their module, and the few data symbols `kdump info`
/// reads), headed by its release, for the capture initramfs. Refused when
/// the addresses are hidden (`kptr_restrict`), since they would tie nothing.
pub fn saved_symbols(proc_kallsyms: &str, release: &str) -> Result<String> {
    let mut out = format!("{SAVED_HEADER}{release}\n");
    let mut stext = None;
    for line in proc_kallsyms.lines() {
        let mut f = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else { continue };
        let wanted = matches!(kind, "T" | "t" | "W" | "w") || matches!(name, "panic_cpu" | "crashing_cpu");
        if !wanted {
            continue;
        }
        if name == "_stext" {
            stext = u64::from_str_radix(addr, 16).ok();
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    match stext {
        Some(a) if a != 0 => Ok(out),
        Some(_) => Err(Error::Corrupt(
            "/proc/kallsyms shows zero addresses (kernel.kptr_restrict): run as root with kptr_restrict below 2".into(),
        )),
        None => Err(Error::Corrupt("/proc/kallsyms has no _stext".into())),
    }
}

impl SymbolTable {
    /// The symbols [`saved_symbols`] wrote, if they are the crashed kernel's:
    /// its release is VMCOREINFO's `OSRELEASE` and its `_stext` is
    /// `SYMBOL(_stext)` (the same boot, so the same KASLR offset).
    pub fn from_saved(text: &str, info: &Vmcoreinfo) -> Result<Self> {
        let mut lines = text.lines();
        let release = lines
            .next()
            .and_then(|l| l.strip_prefix(SAVED_HEADER))
            .ok_or_else(|| Error::Corrupt("not a symbols file written by kdump setup".into()))?;
        if let Some(crashed) = info.osrelease()
            && crashed != release
        {
            return Err(Error::Corrupt(format!("the saved symbols are of {release}, the crashed kernel is {crashed}")));
        }
        let mut symbols = Vec::new();
        for line in lines {
            let mut f = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else { continue };
            let Ok(address) = u64::from_str_radix(addr, 16) else { continue };
            let name = match f.next() {
                Some(module) => format!("{name} {module}"),
                None => name.to_string(),
            };
            symbols.push(Symbol { address, kind: kind.chars().next().unwrap_or('?'), name });
        }
        let table = Self::new(symbols);
        let stext = info.symbol("_stext")?;
        match table.address_of("_stext") {
            Some(a) if a == stext => Ok(table),
            a => Err(Error::Corrupt(format!(
                "the saved symbols put _stext at {a:x?}, the crashed kernel at {stext:#x}: they are of another boot"
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests;
