//! A kernel's debug vmlinux, read for what VMCOREINFO says: symbol addresses (ELF `.symtab`),
//! structure sizes, member offsets, array lengths and enumerators (DWARF), the release (from
//! `init_uts_ns` in `.data`) and the build ID (`.notes`). This is makedumpfile's `-g VMCOREINFO
//! -x VMLINUX`: a VMCOREINFO for a dump whose kernel wrote none.
//!
//! Only what the file can tell is written. The kernel's own note also has values known only at
//! run time (`KERNELOFFSET`, `NUMBER(phys_base)`, `NUMBER(pgtable_l5_enabled)`, `NUMBER(sme_mask)`,
//! and `SYMBOL(mem_section)`, the *value* of that pointer) and preprocessor constants DWARF does
//! not keep (`NUMBER(SECTION_SIZE_BITS)`, `NUMBER(MAX_PHYSMEM_BITS)`, `LENGTH(mem_section)` on
//! SPARSEMEM_EXTREME, `NUMBER(KERNEL_IMAGE_SIZE)`, the `PAGE_*_MAPCOUNT_VALUE`s before 6.12's
//! `enum pagetype`; `NUMBER(VMALLOC_START)` and `SYMBOL(vmemmap)`, values of KASLR'd bases):
//! those keys are left out rather than guessed.
//!
//! Pure: bytes in, text out. A corrupt file is an [`Error`], never a panic.

use std::collections::HashMap;
use std::fmt::Write as _;

use gimli::{AttributeValue, EndianSlice, LittleEndian, UnitOffset};
use object::{Object, ObjectSection, ObjectSymbol};

type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// Why a vmlinux could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a 64-bit little-endian ELF file.
    #[error("not an x86_64 ELF vmlinux ({0}): give the kernel's vmlinux, not the compressed vmlinuz")]
    NotElf(String),
    /// An ELF file without DWARF: the stripped vmlinux, not the debug one.
    #[error(
        "it has no DWARF (.debug_info): give the kernel's debug vmlinux (Debian: the \
         linux-image-<release>-dbg package's /usr/lib/debug/boot/vmlinux-<release>)"
    )]
    NoDebugInfo,
    /// DWARF that does not parse.
    #[error("its DWARF is corrupt: {0}")]
    Dwarf(#[from] gimli::Error),
    /// Something every kernel has is missing.
    #[error("{0}")]
    Missing(String),
}

/// The VMCOREINFO keys a vmlinux can answer, in the order the kernel writes them, for every
/// kernel from 5.10 on (each is written only where the kernel has it). `LENGTH(x)` is the
/// length of the array variable `x`, or of member `x` written `struct.member`.
const KEYS: &[&str] = &[
    "SYMBOL(init_uts_ns)",
    "OFFSET(uts_namespace.name)",
    "SYMBOL(node_online_map)",
    "SYMBOL(swapper_pg_dir)",
    "SYMBOL(_stext)",
    "SYMBOL(vmap_area_list)",
    "SIZE(mem_section)",
    "OFFSET(mem_section.section_mem_map)",
    "SIZE(page)",
    "SIZE(pglist_data)",
    "SIZE(zone)",
    "SIZE(free_area)",
    "SIZE(list_head)",
    "SIZE(nodemask_t)",
    "OFFSET(page.flags)",
    "OFFSET(page._refcount)",
    "OFFSET(page.mapping)",
    "OFFSET(page.lru)",
    "OFFSET(page._mapcount)",
    "OFFSET(page.private)",
    "OFFSET(page.compound_dtor)",
    "OFFSET(page.compound_order)",
    "OFFSET(page.compound_head)",
    "OFFSET(page.compound_info)",
    "OFFSET(folio._folio_dtor)",
    "OFFSET(folio._folio_order)",
    "OFFSET(pglist_data.node_zones)",
    "OFFSET(pglist_data.nr_zones)",
    "OFFSET(pglist_data.node_mem_map)",
    "OFFSET(pglist_data.node_start_pfn)",
    "OFFSET(pglist_data.node_spanned_pages)",
    "OFFSET(pglist_data.node_id)",
    "OFFSET(zone.free_area)",
    "OFFSET(zone.vm_stat)",
    "OFFSET(zone.spanned_pages)",
    "OFFSET(free_area.free_list)",
    "OFFSET(list_head.next)",
    "OFFSET(list_head.prev)",
    "OFFSET(vmap_area.va_start)",
    "OFFSET(vmap_area.list)",
    "LENGTH(zone.free_area)",
    // printk: the lockless ring buffer (5.10+).
    "SYMBOL(prb)",
    "SYMBOL(printk_rb_static)",
    "SYMBOL(clear_seq)",
    "SIZE(printk_ringbuffer)",
    "OFFSET(printk_ringbuffer.desc_ring)",
    "OFFSET(printk_ringbuffer.text_data_ring)",
    "OFFSET(printk_ringbuffer.fail)",
    "SIZE(prb_desc_ring)",
    "OFFSET(prb_desc_ring.count_bits)",
    "OFFSET(prb_desc_ring.descs)",
    "OFFSET(prb_desc_ring.infos)",
    "OFFSET(prb_desc_ring.head_id)",
    "OFFSET(prb_desc_ring.tail_id)",
    "SIZE(prb_desc)",
    "OFFSET(prb_desc.state_var)",
    "OFFSET(prb_desc.text_blk_lpos)",
    "SIZE(prb_data_blk_lpos)",
    "OFFSET(prb_data_blk_lpos.begin)",
    "OFFSET(prb_data_blk_lpos.next)",
    "SIZE(printk_info)",
    "OFFSET(printk_info.seq)",
    "OFFSET(printk_info.ts_nsec)",
    "OFFSET(printk_info.text_len)",
    "OFFSET(printk_info.caller_id)",
    "OFFSET(printk_info.dev_info)",
    "SIZE(dev_printk_info)",
    "OFFSET(dev_printk_info.subsystem)",
    "LENGTH(printk_info_subsystem)",
    "OFFSET(dev_printk_info.device)",
    "LENGTH(printk_info_device)",
    "SIZE(prb_data_ring)",
    "OFFSET(prb_data_ring.size_bits)",
    "OFFSET(prb_data_ring.data)",
    "OFFSET(prb_data_ring.head_lpos)",
    "OFFSET(prb_data_ring.tail_lpos)",
    "SIZE(atomic_long_t)",
    "OFFSET(atomic_long_t.counter)",
    "SIZE(latched_seq)",
    "OFFSET(latched_seq.val)",
    "LENGTH(free_area.free_list)",
    "NUMBER(NR_FREE_PAGES)",
    "NUMBER(PG_lru)",
    "NUMBER(PG_private)",
    "NUMBER(PG_swapcache)",
    "NUMBER(PG_swapbacked)",
    "NUMBER(PG_slab)",
    "NUMBER(PG_hwpoison)",
    "NUMBER(PG_head_mask)",
    "NUMBER(HUGETLB_PAGE_DTOR)",
    // Page types (6.12+: `enum pagetype`; before, preprocessor constants, left out).
    "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)",
    "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)",
    "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)",
    "NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)",
    "NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)",
    // kallsyms (6.0+ write these; 5.10 does not).
    "SYMBOL(kallsyms_names)",
    "SYMBOL(kallsyms_num_syms)",
    "SYMBOL(kallsyms_token_table)",
    "SYMBOL(kallsyms_token_index)",
    "SYMBOL(kallsyms_offsets)",
    "SYMBOL(kallsyms_relative_base)",
    // x86_64.
    "SYMBOL(init_top_pgt)",
    "SYMBOL(node_data)",
    "LENGTH(node_data)",
    // Keys makedumpfile's -g adds for its own reader.
    "SYMBOL(node_states)",
    "NUMBER(N_ONLINE)",
    "SYMBOL(level4_kernel_pgt)",
    "SYMBOL(vmlist)",
    "OFFSET(vm_struct.addr)",
    "SYMBOL(log_buf)",
    "SYMBOL(log_buf_len)",
    "SYMBOL(max_pfn)",
    "SYMBOL(high_memory)",
    "SYMBOL(free_huge_page)",
];

/// `LENGTH` keys the kernel names after something other than the array.
const LENGTH_ALIASES: &[(&str, &str)] =
    &[("printk_info_subsystem", "dev_printk_info.subsystem"), ("printk_info_device", "dev_printk_info.device")];

/// The VMCOREINFO text (`KEY=value` lines) of the kernel `vmlinux` holds, as makedumpfile's
/// `-g` writes it: `OSRELEASE`, `BUILD-ID`, `PAGESIZE`, then every key of [`KEYS`] the kernel
/// has.
pub fn vmcoreinfo(vmlinux: &[u8]) -> Result<String, Error> {
    let info = DebugInfo::parse(vmlinux)?;
    let mut out = String::new();
    let release = info.release()?;
    let _ = writeln!(out, "OSRELEASE={release}");
    if let Some(id) = info.build_id() {
        let _ = writeln!(out, "BUILD-ID={id}");
    }
    out.push_str("PAGESIZE=4096\n");
    for key in KEYS {
        if let Some(value) = info.value(key)? {
            let _ = writeln!(out, "{key}={value}");
        }
    }
    Ok(out)
}

/// The release and build ID of `vmlinux`: enough to tell whether it is the kernel a dump is of.
pub fn identity(vmlinux: &[u8]) -> Result<(String, Option<String>), Error> {
    let info = DebugInfo::parse(vmlinux)?;
    Ok((info.release()?, info.build_id()))
}

/// The GNU build ID of `vmlinux` in hex, read from its notes alone (no DWARF), or None.
pub fn build_id(vmlinux: &[u8]) -> Option<String> {
    let elf = object::read::elf::ElfFile64::<object::LittleEndian>::parse(vmlinux).ok()?;
    let id = elf.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where a DIE is: its unit and offset in it.
#[derive(Debug, Clone, Copy)]
struct Die {
    unit: usize,
    offset: UnitOffset,
}

/// The parsed file and the index of the named DWARF entries VMCOREINFO asks about.
struct DebugInfo<'a> {
    elf: object::read::elf::ElfFile64<'a, object::LittleEndian>,
    dwarf: gimli::Dwarf<Reader<'a>>,
    units: Vec<gimli::Unit<Reader<'a>>>,
    /// Complete structure and union definitions, and typedefs, by name (the first seen).
    types: HashMap<String, Die>,
    /// Array variables with a known length, by name.
    arrays: HashMap<String, Die>,
    /// Enumerators, by name.
    enumerators: HashMap<String, i64>,
    symbols: HashMap<&'a str, u64>,
}

impl<'a> DebugInfo<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, Error> {
        let elf = object::read::elf::ElfFile64::<object::LittleEndian>::parse(data)
            .map_err(|e| Error::NotElf(e.to_string()))?;
        if elf.section_by_name(".debug_info").is_none() {
            return Err(Error::NoDebugInfo);
        }
        let section = |id: gimli::SectionId| -> Result<Reader<'a>, gimli::Error> {
            let bytes = elf.section_by_name(id.name()).and_then(|s| s.data().ok()).unwrap_or(&[]);
            Ok(EndianSlice::new(bytes, LittleEndian))
        };
        let dwarf = gimli::Dwarf::load(section)?;
        let wanted: Vec<&str> = KEYS.iter().filter_map(|k| k.strip_prefix("SYMBOL(")?.strip_suffix(')')).collect();
        let symbols = elf
            .symbols()
            .filter_map(|s| Some((s.name().ok()?, s.address())))
            .filter(|(name, _)| wanted.contains(name))
            .collect();
        let mut info = DebugInfo {
            elf,
            dwarf,
            units: Vec::new(),
            types: HashMap::new(),
            arrays: HashMap::new(),
            enumerators: HashMap::new(),
            symbols,
        };
        info.index()?;
        Ok(info)
    }

    /// One pass over every unit's top level: the named types, array variables and enumerators.
    fn index(&mut self) -> Result<(), Error> {
        let mut headers = self.dwarf.units();
        while let Some(header) = headers.next()? {
            let unit = self.dwarf.unit(header)?;
            let index = self.units.len();
            let mut cursor = unit.entries();
            let mut depth = 0isize;
            let mut in_enum = false;
            while let Some((delta, entry)) = cursor.next_dfs()? {
                depth += delta;
                let tag = entry.tag();
                if depth == 2 && in_enum && tag == gimli::DW_TAG_enumerator {
                    if let Some(name) = self.name(&unit, entry)? {
                        let value = entry.attr_value(gimli::DW_AT_const_value)?;
                        if let Some(v) =
                            value.and_then(|v| v.sdata_value().or_else(|| v.udata_value().map(|u| u as i64)))
                        {
                            self.enumerators.entry(name).or_insert(v);
                        }
                    }
                    continue;
                }
                if depth != 1 {
                    continue;
                }
                in_enum = tag == gimli::DW_TAG_enumeration_type;
                let at = Die { unit: index, offset: entry.offset() };
                match tag {
                    gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
                        let complete = entry.attr_value(gimli::DW_AT_byte_size)?.is_some()
                            && entry.attr_value(gimli::DW_AT_declaration)?.is_none();
                        if complete && let Some(name) = self.name(&unit, entry)? {
                            self.types.entry(name).or_insert(at);
                        }
                    }
                    gimli::DW_TAG_typedef => {
                        if let Some(name) = self.name(&unit, entry)? {
                            self.types.entry(name).or_insert(at);
                        }
                    }
                    gimli::DW_TAG_variable => {
                        // A definition after an `extern` declaration names the declaration
                        // (DW_AT_specification) and has its own, complete, type.
                        let name = match entry.attr_value(gimli::DW_AT_specification)? {
                            Some(AttributeValue::UnitRef(decl)) => self.name(&unit, &unit.entry(decl)?)?,
                            _ => self.name(&unit, entry)?,
                        };
                        if let Some(name) = name
                            && !self.arrays.contains_key(&name)
                            && let Some(AttributeValue::UnitRef(ty)) = entry.attr_value(gimli::DW_AT_type)?
                            && array_length(&unit, ty)?.is_some()
                        {
                            self.arrays.insert(name, at);
                        }
                    }
                    _ => {}
                }
            }
            self.units.push(unit);
        }
        Ok(())
    }

    fn name(
        &self,
        unit: &gimli::Unit<Reader<'a>>,
        entry: &gimli::DebuggingInformationEntry<Reader<'a>>,
    ) -> Result<Option<String>, Error> {
        match entry.attr_value(gimli::DW_AT_name)? {
            None => Ok(None),
            Some(v) => Ok(Some(self.dwarf.attr_string(unit, v)?.to_string_lossy().into_owned())),
        }
    }

    /// The value of one VMCOREINFO key, or None where this kernel has no such thing.
    fn value(&self, key: &str) -> Result<Option<String>, Error> {
        let (kind, arg) = key.split_once('(').ok_or_else(|| Error::Missing(format!("bad key {key}")))?;
        let arg = arg.trim_end_matches(')');
        Ok(match kind {
            "SYMBOL" => self.symbol(arg)?.map(|a| format!("{a:x}")),
            "SIZE" => self.size_of(arg)?.map(|s| s.to_string()),
            "OFFSET" => match arg.split_once('.') {
                Some((ty, member)) => self.member(ty, member)?.map(|(off, _)| off.to_string()),
                None => None,
            },
            "LENGTH" => {
                let arg = LENGTH_ALIASES.iter().find(|(k, _)| *k == arg).map_or(arg, |(_, v)| v);
                match arg.split_once('.') {
                    Some((ty, member)) => match self.member(ty, member)? {
                        Some((_, ty)) => array_length(&self.units[ty.unit], ty.offset)?,
                        None => None,
                    },
                    None => match self.arrays.get(arg) {
                        Some(die) => {
                            let unit = &self.units[die.unit];
                            let entry = unit.entry(die.offset)?;
                            match entry.attr_value(gimli::DW_AT_type)? {
                                Some(AttributeValue::UnitRef(ty)) => array_length(unit, ty)?,
                                _ => None,
                            }
                        }
                        None => None,
                    },
                }
                .map(|n| n.to_string())
            }
            "NUMBER" => match arg {
                // The kernel writes 1 << PG_head.
                "PG_head_mask" => self.enumerators.get("PG_head").map(|b| (1u64 << (*b as u64 & 63)).to_string()),
                _ => match page_type(arg) {
                    // `PGTY_x << 24` in an int, as the kernel computes and prints it.
                    Some(pgty) => self.enumerators.get(pgty).map(|t| ((*t as u32) << 24).cast_signed().to_string()),
                    None => self.enumerators.get(arg).map(|v| v.to_string()),
                },
            },
            _ => None,
        })
    }

    /// The address the kernel writes for `SYMBOL(name)`. Two of them are macros on x86_64:
    /// `swapper_pg_dir` is `init_top_pgt`, and `node_online_map` is `node_states[N_ONLINE]`.
    fn symbol(&self, name: &str) -> Result<Option<u64>, Error> {
        if let Some(&a) = self.symbols.get(name) {
            return Ok(Some(a));
        }
        Ok(match name {
            "swapper_pg_dir" => self.symbols.get("init_top_pgt").copied(),
            "node_online_map" => match (self.symbols.get("node_states"), self.enumerators.get("N_ONLINE")) {
                (Some(&base), Some(&n)) => {
                    self.size_of("nodemask_t")?.map(|size| base.wrapping_add((n as u64).wrapping_mul(size)))
                }
                _ => None,
            },
            _ => None,
        })
    }

    /// The size of the structure, union or typedef `name`.
    fn size_of(&self, name: &str) -> Result<Option<u64>, Error> {
        let Some(die) = self.types.get(name) else { return Ok(None) };
        let unit = &self.units[die.unit];
        let ty = strip(unit, die.offset)?;
        Ok(unit.entry(ty)?.attr_value(gimli::DW_AT_byte_size)?.and_then(|v| v.udata_value()))
    }

    /// The offset of `member` in the structure `ty` (looking into anonymous structures and
    /// unions, as C does), and the member's type.
    fn member(&self, ty: &str, member: &str) -> Result<Option<(u64, Die)>, Error> {
        let Some(die) = self.types.get(ty) else { return Ok(None) };
        let unit = &self.units[die.unit];
        let found = find_member(&self.dwarf, unit, strip(unit, die.offset)?, member, 0, 0)?;
        Ok(found.map(|(off, t)| (off, Die { unit: die.unit, offset: t })))
    }

    /// `init_uts_ns.name.release`, read from the section that holds it.
    fn release(&self) -> Result<String, Error> {
        let missing = || Error::Missing("it has no init_uts_ns (not a Linux vmlinux?)".to_string());
        let base = *self.symbols.get("init_uts_ns").ok_or_else(missing)?;
        let name = self.member("uts_namespace", "name")?.map_or(0, |(o, _)| o);
        let release = self.member("new_utsname", "release")?.map_or(130, |(o, _)| o);
        let address = base.wrapping_add(name).wrapping_add(release);
        for section in self.elf.sections() {
            if (section.address()..section.address().saturating_add(section.size())).contains(&address)
                && let Ok(data) = section.data()
                && let Some(bytes) = data.get((address - section.address()) as usize..)
            {
                let text = &bytes[..bytes.len().min(65)];
                let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
                let s = String::from_utf8_lossy(&text[..end]).into_owned();
                if !s.is_empty() {
                    return Ok(s);
                }
            }
        }
        Err(Error::Missing("init_uts_ns's release is not in the file".to_string()))
    }

    /// The GNU build ID, in hex, as the kernel writes it.
    fn build_id(&self) -> Option<String> {
        let id = self.elf.build_id().ok()??;
        Some(id.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The `enum pagetype` enumerator behind a `PAGE_*_MAPCOUNT_VALUE` key (6.12+).
fn page_type(key: &str) -> Option<&'static str> {
    Some(match key {
        "PAGE_BUDDY_MAPCOUNT_VALUE" => "PGTY_buddy",
        "PAGE_OFFLINE_MAPCOUNT_VALUE" => "PGTY_offline",
        "PAGE_HUGETLB_MAPCOUNT_VALUE" => "PGTY_hugetlb",
        "PAGE_SLAB_MAPCOUNT_VALUE" => "PGTY_slab",
        "PAGE_UNACCEPTED_MAPCOUNT_VALUE" => "PGTY_unaccepted",
        _ => return None,
    })
}

/// Through typedefs and qualifiers to the type itself.
fn strip(unit: &gimli::Unit<Reader<'_>>, mut at: UnitOffset) -> Result<UnitOffset, Error> {
    for _ in 0..16 {
        let entry = unit.entry(at)?;
        match entry.tag() {
            gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => {
                match entry.attr_value(gimli::DW_AT_type)? {
                    Some(AttributeValue::UnitRef(next)) => at = next,
                    _ => return Ok(at),
                }
            }
            _ => return Ok(at),
        }
    }
    Ok(at)
}

/// How deep anonymous structures and unions nest (the kernel's `struct page`: 3); a corrupt
/// file's cycle stops here.
const MAX_NESTING: u32 = 16;

/// `member` of the structure or union at `at`, at `base` + its offset; its type.
fn find_member(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    at: UnitOffset,
    member: &str,
    base: u64,
    nesting: u32,
) -> Result<Option<(u64, UnitOffset)>, Error> {
    if nesting > MAX_NESTING {
        return Ok(None);
    }
    let mut tree = unit.entries_tree(Some(at))?;
    let root = tree.root()?;
    let mut children = root.children();
    let mut anonymous = Vec::new();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_member {
            continue;
        }
        let offset = entry.attr_value(gimli::DW_AT_data_member_location)?.and_then(|v| v.udata_value()).unwrap_or(0);
        let Some(AttributeValue::UnitRef(ty)) = entry.attr_value(gimli::DW_AT_type)? else { continue };
        match entry.attr_value(gimli::DW_AT_name)? {
            Some(name) => {
                if dwarf.attr_string(unit, name)?.slice() == member.as_bytes() {
                    return Ok(Some((base.wrapping_add(offset), ty)));
                }
            }
            None => anonymous.push((offset, ty)),
        }
    }
    // C looks into anonymous structures and unions; so does VMCOREINFO's OFFSET().
    for (offset, ty) in anonymous {
        let inner = strip(unit, ty)?;
        if let Some(found) = find_member(dwarf, unit, inner, member, base.wrapping_add(offset), nesting + 1)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The length of the array type at `at` (its first dimension), if it is one with a bound.
fn array_length(unit: &gimli::Unit<Reader<'_>>, at: UnitOffset) -> Result<Option<u64>, Error> {
    let at = strip(unit, at)?;
    let mut tree = unit.entries_tree(Some(at))?;
    let root = tree.root()?;
    if root.entry().tag() != gimli::DW_TAG_array_type {
        return Ok(None);
    }
    let mut children = root.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_subrange_type {
            continue;
        }
        if let Some(count) = entry.attr_value(gimli::DW_AT_count)?.and_then(|v| v.udata_value()) {
            return Ok(Some(count));
        }
        return Ok(entry
            .attr_value(gimli::DW_AT_upper_bound)?
            .and_then(|v| v.udata_value())
            .map(|u| u.wrapping_add(1)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_debug_vmlinux() {
        assert!(matches!(vmcoreinfo(b"\x1f\x8b not an ELF"), Err(Error::NotElf(_))));
        assert!(matches!(vmcoreinfo(&[]), Err(Error::NotElf(_))));
        // An ELF file of this test binary's kind, with or without DWARF: a clear error, no panic.
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(vmcoreinfo(&own).is_err());
    }

    #[test]
    fn every_key_parses() {
        for key in KEYS {
            let (kind, rest) = key.split_once('(').unwrap();
            assert!(["SYMBOL", "SIZE", "OFFSET", "LENGTH", "NUMBER"].contains(&kind), "{key}");
            assert!(rest.ends_with(')'), "{key}");
            if kind == "OFFSET" {
                assert!(rest.contains('.'), "{key}");
            }
        }
    }
}
