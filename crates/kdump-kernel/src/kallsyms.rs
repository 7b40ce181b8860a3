//! The kernel's symbol table, decoded from the kallsyms tables in its memory
//! (VMCOREINFO exports their addresses on current kernels), or read from a
//! System.map with the KASLR offset applied.

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

    /// Decodes the kallsyms tables of the crashed kernel.
    ///
    /// Layout (kernel/kallsyms.c): `kallsyms_names` is a sequence of entries,
    /// each a length (one byte, or two when the first has bit 7 set, 6.1+)
    /// followed by that many token indices; `kallsyms_token_index[t]` is the
    /// offset of token `t`'s NUL-terminated text in `kallsyms_token_table`.
    /// The first character of the expansion is the type. Addresses come from
    /// `kallsyms_offsets` relative to `kallsyms_relative_base`: with
    /// KALLSYMS_ABSOLUTE_PERCPU (x86_64 SMP), a non-negative offset is an
    /// absolute value (per-CPU symbols) and a negative one is
    /// `relative_base - 1 - offset`.
    pub fn from_kallsyms<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Result<Self> {
        let num = u64::from(mem.read_u32(info.symbol("kallsyms_num_syms")?)?);
        if num == 0 || num > MAX_SYMBOLS {
            return Err(Error::Corrupt(format!("kallsyms_num_syms is {num}")));
        }
        let names_at = info.symbol("kallsyms_names")?;
        let token_table_at = info.symbol("kallsyms_token_table")?;
        let token_index_at = info.symbol("kallsyms_token_index")?;
        let offsets_at = info.symbol("kallsyms_offsets")?;
        let relative_base = mem.read_u64(info.symbol("kallsyms_relative_base")?)?;

        let raw_index = mem.read_vec(token_index_at, 256 * 2, 512, "kallsyms_token_index")?;
        let index: Vec<u64> = raw_index.chunks_exact(2).map(|c| u64::from(u16::from_le_bytes([c[0], c[1]]))).collect();
        let table_len = index.iter().max().copied().unwrap_or(0) + 64;
        let table = mem.read_vec(token_table_at, table_len, 1 << 16, "kallsyms_token_table")?;
        let tokens: Vec<Vec<u8>> = index
            .iter()
            .map(|&at| {
                let rest = table.get(at as usize..).unwrap_or_default();
                rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())].to_vec()
            })
            .collect();
        let offsets = mem.read_vec(offsets_at, num * 4, MAX_SYMBOLS * 4, "kallsyms_offsets")?;

        // The names stream has no stored length: read it in chunks as needed.
        let mut names = NameStream { at: names_at, buf: Vec::new(), pos: 0 };
        let mut symbols = Vec::with_capacity(num as usize);
        for i in 0..num as usize {
            let mut len = usize::from(names.byte(mem)?);
            if len & 0x80 != 0 {
                len = (len & 0x7f) | (usize::from(names.byte(mem)?) << 7);
            }
            let mut name = Vec::new();
            for _ in 0..len {
                name.extend_from_slice(&tokens[usize::from(names.byte(mem)?)]);
            }
            let Some((&kind, rest)) = name.split_first() else {
                return Err(Error::Corrupt(format!("kallsyms entry {i} is empty")));
            };
            let raw = i32::from_le_bytes(offsets[i * 4..i * 4 + 4].try_into().unwrap_or_default());
            let address =
                if raw >= 0 { raw as u64 } else { relative_base.wrapping_sub(1).wrapping_sub(i64::from(raw) as u64) };
            symbols.push(Symbol { address, kind: char::from(kind), name: String::from_utf8_lossy(rest).into_owned() });
        }
        Ok(Self::new(symbols))
    }
}

/// Sequential reader over `kallsyms_names`, fetched 64 KiB at a time.
struct NameStream {
    at: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl NameStream {
    fn byte<P: PhysRead>(&mut self, mem: &mut KernelMemory<P>) -> Result<u8> {
        if self.pos == self.buf.len() {
            self.at += self.buf.len() as u64;
            self.buf = vec![0; 1 << 16];
            mem.read(self.at, &mut self.buf)?;
            self.pos = 0;
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::tests::layout;
    use crate::memory::{FlatMemory, START_KERNEL_MAP};

    #[test]
    fn decodes_kallsyms_tables() {
        // Tokens: 0 = "T", 1 = "pan", 2 = "ic", 3 = "t", 4 = "sysrq_handle_crash", 5 = "A", 6 = "_etext".
        let tokens: [&[u8]; 7] = [b"T", b"pan", b"ic", b"t", b"sysrq_handle_crash", b"A", b"_etext"];
        let mut table = Vec::new();
        let mut index = vec![0u16; 256];
        for (i, t) in tokens.iter().enumerate() {
            index[i] = table.len() as u16;
            table.extend_from_slice(t);
            table.push(0);
        }
        let names: Vec<u8> = vec![3, 0, 1, 2, /* Tpanic */ 2, 3, 4, /* tsysrq_handle_crash */ 2, 0, 6];
        let base = START_KERNEL_MAP + 0x20_0000;
        // panic at base+0x100, sysrq_handle_crash at base+0x200, _etext at base+0x300.
        let offsets: Vec<i32> = vec![-1 - 0x100, -1 - 0x200, -1 - 0x300];
        let mut mem = FlatMemory { bytes: vec![0; 1 << 20], base: 0 };
        let mut put = |at: usize, b: &[u8]| mem.bytes[at..at + b.len()].copy_from_slice(b);
        put(0x10000, &3u32.to_le_bytes());
        put(0x11000, &names);
        put(0x20000, &table);
        put(0x30000, &index.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>());
        put(0x40000, &offsets.iter().flat_map(|o| o.to_le_bytes()).collect::<Vec<_>>());
        put(0x50000, &base.to_le_bytes());
        let info = Vmcoreinfo::parse(
            format!(
                "SYMBOL(kallsyms_num_syms)={:x}\nSYMBOL(kallsyms_names)={:x}\nSYMBOL(kallsyms_token_table)={:x}\n\
SYMBOL(kallsyms_token_index)={:x}\nSYMBOL(kallsyms_offsets)={:x}\nSYMBOL(kallsyms_relative_base)={:x}\n",
                START_KERNEL_MAP + 0x10000,
                START_KERNEL_MAP + 0x11000,
                START_KERNEL_MAP + 0x20000,
                START_KERNEL_MAP + 0x30000,
                START_KERNEL_MAP + 0x40000,
                START_KERNEL_MAP + 0x50000
            )
            .as_bytes(),
        );
        let mut km = KernelMemory::new(mem, layout(false));
        let syms = SymbolTable::from_kallsyms(&mut km, &info).unwrap();
        assert_eq!(syms.len(), 3);
        assert_eq!(syms.address_of("panic"), Some(base + 0x100));
        let (s, off, size) = syms.lookup_text(base + 0x210).unwrap();
        assert_eq!((s.name.as_str(), s.kind, off, size), ("sysrq_handle_crash", 't', 0x10, 0x100));
        assert!(syms.lookup_text(base).is_none());
    }

    #[test]
    fn system_map_with_kaslr_offset() {
        let map = "ffffffff81000000 T _stext\nffffffff81000100 T panic\nffffffff81000200 T _etext\n0000000000000000 A fixed_percpu_data\n";
        let syms = SymbolTable::from_system_map(map, 0x1120_0000).unwrap();
        assert_eq!(syms.address_of("panic"), Some(0xffff_ffff_9220_0100));
        assert_eq!(syms.address_of("fixed_percpu_data"), Some(0));
        assert!(syms.is_kernel_text(0xffff_ffff_9220_0150));
        let placeholder = "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n";
        assert!(SymbolTable::from_system_map(placeholder, 0).unwrap_err().to_string().contains("-dbg"));
        assert!(SymbolTable::from_system_map("", 0).is_err());
    }
}
