use super::*;
use crate::memory::tests::layout;
use crate::memory::{FlatMemory, START_KERNEL_MAP};

/// Physical (= text offset, phys_base 0) address of the synthetic `_stext`.
const STEXT: u64 = 0x10_0000;
const K: u64 = START_KERNEL_MAP;

/// A token table where every printable byte is its own token and the other
/// byte values hold 3-character tokens, as real tables fill unused slots.
fn tokens() -> Vec<Vec<u8>> {
    (0u16..256)
        .map(|t| if (0x21..0x7f).contains(&t) { vec![t as u8] } else { format!("x{t:02x}").into_bytes() })
        .collect()
}

/// `count` symbols: `_stext` first, then text functions (`sysrq_handle_crash`
/// among them), `_etext`, and a per-CPU symbol at absolute 0x1000.
fn symbols(count: usize) -> Vec<(u64, char, String)> {
    let mut v = vec![(K + STEXT, 'T', "_stext".to_string())];
    for i in 1..count - 2 {
        let name = if i == count / 2 { "sysrq_handle_crash".to_string() } else { format!("function_number_{i}") };
        v.push((K + STEXT + 0x40 * i as u64, if i % 3 == 0 { 't' } else { 'T' }, name));
    }
    v.push((K + STEXT + 0x40 * count as u64, 'T', "_etext".to_string()));
    v.push((0x1000, 'D', "fixed_percpu_data".to_string()));
    v
}

fn names_stream(syms: &[(u64, char, String)]) -> (Vec<u8>, Vec<u32>) {
    let mut names = Vec::new();
    let mut markers = Vec::new();
    for (i, (_, kind, name)) in syms.iter().enumerate() {
        if i % 256 == 0 {
            markers.push(names.len() as u32);
        }
        let text: Vec<u8> = std::iter::once(*kind as u8).chain(name.bytes()).collect();
        names.push(text.len() as u8);
        names.extend(text);
    }
    (names, markers)
}

fn token_blobs() -> (Vec<u8>, Vec<u8>) {
    let mut table = Vec::new();
    let mut index = Vec::new();
    for t in tokens() {
        index.extend((table.len() as u16).to_le_bytes());
        table.extend(t);
        table.push(0);
    }
    (table, index)
}

/// How a synthetic image stores addresses.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    /// Negative offsets below relative_base, per-CPU absolute (x86_64 to 6.12).
    AbsolutePercpu,
    /// `base + (u32)offset` (after KALLSYMS_ABSOLUTE_PERCPU went away).
    Unsigned,
    /// `&offsets[i] + offset` (7.x).
    PlaceRelative,
    /// u64 `kallsyms_addresses` (before 4.6).
    Absolute,
}

struct Image {
    mem: FlatMemory,
    /// (name, virtual address) of each table written.
    at: Vec<(&'static str, u64)>,
}

impl Image {
    fn get(&self, name: &str) -> u64 {
        self.at.iter().find(|(n, _)| *n == name).map(|(_, a)| *a).unwrap()
    }

    fn vmcoreinfo(&self) -> Vmcoreinfo {
        let text: String = self.at.iter().map(|(n, a)| format!("SYMBOL({n})={a:x}\n")).collect();
        Vmcoreinfo::parse(format!("{text}SYMBOL(_stext)={:x}\n", K + STEXT).as_bytes())
    }
}

/// Writes the tables as scripts/kallsyms.c lays them out (8-byte aligned
/// labels): `pre_6` puts the addresses before num_syms (the 5.x order),
/// otherwise after the token index (the 6.x order) with the 7.x alignment.
fn image(syms: &[(u64, char, String)], layout: Layout, pre_6: bool) -> Image {
    let mut mem = FlatMemory { bytes: vec![0; 4 << 20], base: 0 };
    let mut at = 0x30_0000usize;
    let mut out = Vec::new();
    let mut put = |bytes: &mut Vec<u8>, label: &'static str, data: &[u8], at: &mut usize, align: usize| {
        *at = at.next_multiple_of(align);
        bytes[*at..*at + data.len()].copy_from_slice(data);
        out.push((label, K + *at as u64));
        *at += data.len();
    };
    // Decoys: a table of all byte values (as in real .rodata) that contains the digit tokens.
    let decoy: Vec<u8> = (1u8..=255).flat_map(|b| [b, 0]).collect();
    put(&mut mem.bytes, "decoy", &decoy, &mut at, 8);
    let base = K + STEXT;
    let mut offsets_at = 0usize;
    let offsets = |offsets_at: u64| -> Vec<u8> {
        syms.iter()
            .enumerate()
            .flat_map(|(i, (addr, _, _))| {
                let v: i64 = match layout {
                    Layout::AbsolutePercpu if *addr < K => *addr as i64,
                    Layout::AbsolutePercpu => base as i64 - 1 - *addr as i64,
                    Layout::Unsigned => addr.wrapping_sub(base) as i64,
                    Layout::PlaceRelative => addr.wrapping_sub(offsets_at + 4 * i as u64) as i64,
                    Layout::Absolute => 0,
                };
                (v as i32).to_le_bytes()
            })
            .collect()
    };
    let (names, markers) = names_stream(syms);
    let (table, index) = token_blobs();
    // Old kernels (here: those with kallsyms_addresses) wrote num_syms and the markers as pointers.
    let old = layout == Layout::Absolute;
    let num = if old { (syms.len() as u64).to_le_bytes().to_vec() } else { (syms.len() as u32).to_le_bytes().to_vec() };
    let marker_bytes: Vec<u8> = if old {
        markers.iter().flat_map(|m| u64::from(*m).to_le_bytes()).collect()
    } else {
        markers.iter().flat_map(|m| m.to_le_bytes()).collect()
    };
    let align = if pre_6 { 8 } else { 4 };
    if pre_6 {
        if layout == Layout::Absolute {
            let addrs: Vec<u8> = syms.iter().flat_map(|(a, _, _)| a.to_le_bytes()).collect();
            put(&mut mem.bytes, "kallsyms_addresses", &addrs, &mut at, 8);
        } else {
            offsets_at = at.next_multiple_of(8);
            let o = offsets(K + offsets_at as u64);
            put(&mut mem.bytes, "kallsyms_offsets", &o, &mut at, 8);
            put(&mut mem.bytes, "kallsyms_relative_base", &base.to_le_bytes(), &mut at, 8);
        }
    }
    put(&mut mem.bytes, "kallsyms_num_syms", &num, &mut at, align);
    put(&mut mem.bytes, "kallsyms_names", &names, &mut at, align);
    put(&mut mem.bytes, "kallsyms_markers", &marker_bytes, &mut at, align);
    put(&mut mem.bytes, "kallsyms_token_table", &table, &mut at, align);
    put(&mut mem.bytes, "kallsyms_token_index", &index, &mut at, align);
    if !pre_6 {
        offsets_at = at.next_multiple_of(align);
        let o = offsets(K + offsets_at as u64);
        put(&mut mem.bytes, "kallsyms_offsets", &o, &mut at, align);
        if layout != Layout::PlaceRelative {
            put(&mut mem.bytes, "kallsyms_relative_base", &base.to_le_bytes(), &mut at, 8);
        }
    }
    let _ = offsets_at;
    Image { mem, at: out }
}

fn check(table: &SymbolTable, syms: &[(u64, char, String)]) {
    assert_eq!(table.len(), syms.len());
    for (addr, kind, name) in syms {
        assert_eq!(table.address_of(name), Some(*addr), "{name}");
        if *kind != 'D' && name != "_etext" {
            let (s, off, _) = table.lookup_text(*addr + 4).unwrap();
            assert_eq!((s.name.as_str(), s.kind, off), (name.as_str(), *kind, 4));
        }
    }
}

#[test]
fn decodes_each_layout_that_vmcoreinfo_points_at() {
    for layout in [Layout::AbsolutePercpu, Layout::Unsigned, Layout::PlaceRelative] {
        let syms = symbols(300);
        let img = image(&syms, layout, false);
        let info = img.vmcoreinfo();
        if layout == Layout::PlaceRelative {
            assert!(info.get("SYMBOL(kallsyms_relative_base)").is_none());
        }
        let mut km = KernelMemory::new(img.mem, layout_4());
        let (table, source) = SymbolTable::from_dump(&mut km, &info).unwrap();
        assert_eq!(source, SymbolSource::VmcoreinfoKallsyms, "{layout:?}");
        check(&table, &syms);
    }
}

fn layout_4() -> crate::memory::X86_64Layout {
    layout(false)
}

#[test]
fn a_wrong_addressing_is_refused_not_believed() {
    // Per-CPU-absolute offsets read as 7.x place-relative ones (relative_base key dropped).
    let syms = symbols(40);
    let img = image(&syms, Layout::AbsolutePercpu, false);
    let text: String = img
        .at
        .iter()
        .filter(|(n, _)| *n != "kallsyms_relative_base")
        .map(|(n, a)| format!("SYMBOL({n})={a:x}\n"))
        .collect();
    let info = Vmcoreinfo::parse(format!("{text}SYMBOL(_stext)={:x}\n", K + STEXT).as_bytes());
    let mut km = KernelMemory::new(img.mem, layout_4());
    let err = SymbolTable::from_kallsyms(&mut km, &info).unwrap_err().to_string();
    assert!(err.contains("_stext"), "{err}");
}

#[test]
fn finds_the_tables_in_the_image_without_vmcoreinfo_keys() {
    for (layout, pre_6, count) in [
        (Layout::AbsolutePercpu, true, 700),
        (Layout::AbsolutePercpu, true, 256),
        (Layout::AbsolutePercpu, true, 3),
        (Layout::Unsigned, true, 300),
        (Layout::Absolute, true, 520),
        (Layout::AbsolutePercpu, false, 400),
        (Layout::PlaceRelative, false, 400),
    ] {
        let syms = symbols(count);
        let img = image(&syms, layout, pre_6);
        let expected = img.get("kallsyms_names");
        let info = Vmcoreinfo::parse(format!("SYMBOL(_stext)={:x}\n", K + STEXT).as_bytes());
        let mut km = KernelMemory::new(img.mem, layout_4());
        let tables = scan_image(&mut km, K + STEXT, 3 << 20, K + STEXT).unwrap();
        assert_eq!(tables.names, expected, "{layout:?} {pre_6} {count}");
        let (table, source) = SymbolTable::from_dump(&mut km, &info).unwrap();
        assert_eq!(source, SymbolSource::ImageScan);
        check(&table, &syms);
    }
}

/// Memory with pages missing, as in a filtered dump.
struct Holes {
    mem: FlatMemory,
    missing: std::ops::Range<u64>,
}

impl PhysRead for Holes {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<()> {
        let end = paddr + buf.len() as u64;
        if paddr < self.missing.end && end > self.missing.start {
            return Err(Error::NotInDump(paddr.max(self.missing.start)));
        }
        self.mem.read_phys(paddr, buf)
    }
}

#[test]
fn pages_missing_before_the_tables_are_skipped() {
    // The kernel frees the text/rodata gap, so -d 16 dumps lack it.
    let syms = symbols(300);
    let img = image(&syms, Layout::AbsolutePercpu, true);
    let missing = STEXT + 0x2_3000..STEXT + 0x1a_0000;
    let mut km = KernelMemory::new(Holes { mem: img.mem, missing }, layout_4());
    let info = Vmcoreinfo::parse(format!("SYMBOL(_stext)={:x}\n", K + STEXT).as_bytes());
    let (table, source) = SymbolTable::from_dump(&mut km, &info).unwrap();
    assert_eq!(source, SymbolSource::ImageScan);
    check(&table, &syms);
}

/// A tiny deterministic generator: tests must not depend on a seed source.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn garbage_and_damaged_images_give_errors_not_panics() {
    // Random memory with the digit tokens planted all over it.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut mem = FlatMemory { bytes: vec![0; 4 << 20], base: 0 };
    for b in mem.bytes.iter_mut() {
        *b = xorshift(&mut state) as u8;
    }
    for i in 0..200 {
        let at = 0x10_0000 + i * 0x3001;
        mem.bytes[at..at + 20].copy_from_slice(b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00");
    }
    let mut km = KernelMemory::new(mem, layout_4());
    assert!(scan_image(&mut km, K + STEXT, 3 << 20, K + STEXT).is_err());

    // A real layout with bytes flipped here and there: decode, or refuse.
    let syms = symbols(600);
    let clean = image(&syms, Layout::AbsolutePercpu, true);
    let (lo, hi) = (
        clean.get("kallsyms_offsets") as usize - K as usize,
        clean.get("kallsyms_token_index") as usize + 512 - K as usize,
    );
    for round in 0..24 {
        let mut mem = clean.mem.clone();
        for _ in 0..1 + round % 4 {
            let at = lo + (xorshift(&mut state) as usize) % (hi - lo);
            mem.bytes[at] = xorshift(&mut state) as u8;
        }
        let info = Vmcoreinfo::parse(format!("SYMBOL(_stext)={:x}\n", K + STEXT).as_bytes());
        let mut km = KernelMemory::new(mem, layout_4());
        if let Ok((table, _)) = SymbolTable::from_dump(&mut km, &info) {
            assert_eq!(table.address_of("_stext"), Some(K + STEXT));
        }
    }
    // Cut short: the image ends inside the tables.
    for cut in [hi - 100, (lo + hi) / 2, lo + 10] {
        let mut mem = clean.mem.clone();
        mem.bytes.truncate(cut);
        let mut km = KernelMemory::new(mem, layout_4());
        assert!(scan_image(&mut km, K + STEXT, 3 << 20, K + STEXT).is_err());
    }
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

#[test]
fn symbols_saved_by_setup_are_used_only_for_the_same_kernel_and_boot() {
    let proc = "ffffffff9a000000 T _stext\nffffffff9a000100 t panic\nffffffff9b000000 D jiffies\n\
ffffffff9b000040 d panic_cpu\nffffffffc0100000 t virtblk_probe\t[virtio_blk]\nffffffffc0100200 t virtblk_remove\t[virtio_blk]\nffffffff9a100000 T _etext\n";
    let saved = saved_symbols(proc, "6.1.0-57-cloud-amd64").unwrap();
    assert!(!saved.contains("jiffies"), "data symbols a report does not read are left out");
    let info = |release: &str, stext: u64| {
        Vmcoreinfo::parse(format!("OSRELEASE={release}\nSYMBOL(_stext)={stext:x}\n").as_bytes())
    };
    let table = SymbolTable::from_saved(&saved, &info("6.1.0-57-cloud-amd64", 0xffff_ffff_9a00_0000)).unwrap();
    assert_eq!(table.address_of("panic_cpu"), Some(0xffff_ffff_9b00_0040));
    let (s, off, _) = table.lookup_text(0xffff_ffff_c010_0010).unwrap();
    assert_eq!((s.name.as_str(), off), ("virtblk_probe [virtio_blk]", 0x10));
    // Another boot (KASLR moved _stext) or another kernel: refused.
    let other_boot = SymbolTable::from_saved(&saved, &info("6.1.0-57-cloud-amd64", 0xffff_ffff_8a00_0000));
    assert!(other_boot.unwrap_err().to_string().contains("another boot"));
    assert!(SymbolTable::from_saved(&saved, &info("6.12.0", 0xffff_ffff_9a00_0000)).is_err());
    assert!(SymbolTable::from_saved("garbage", &info("6.1", 0)).is_err());
    // kptr_restrict: addresses shown as zeros tie nothing.
    let hidden = "0000000000000000 T _stext\n0000000000000000 t panic\n";
    assert!(saved_symbols(hidden, "6.1").unwrap_err().to_string().contains("kptr_restrict"));
}
