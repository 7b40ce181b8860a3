//! `/proc/iomem`: the physical address map, as a flat list of nested resources.

use serde::{Deserialize, Serialize};

use crate::ParseError;
use crate::machine::PhysRange;

/// What a top-level `/proc/iomem` range is, as an e820 type would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// `System RAM` (and its `(kmem)` / `(virtio_mem)` variants): e820 type 1.
    Ram,
    /// `reserved` / `Reserved`: e820 type 2.
    Reserved,
    /// `ACPI Tables`: e820 type 3.
    Acpi,
    /// `ACPI Non-volatile Storage`: e820 type 4.
    Nvs,
    /// `Persistent Memory (legacy)`: e820 type 12 (PRAM).
    PersistentLegacy,
    /// `Persistent Memory`: e820 type 7 (PMEM).
    Persistent,
}

impl MemoryKind {
    /// The kind of a resource name, if it is one the capture kernel must know about.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            n if n.starts_with("System RAM") => Some(Self::Ram),
            "reserved" | "Reserved" => Some(Self::Reserved),
            "ACPI Tables" => Some(Self::Acpi),
            "ACPI Non-volatile Storage" => Some(Self::Nvs),
            "Persistent Memory (legacy)" => Some(Self::PersistentLegacy),
            "Persistent Memory" => Some(Self::Persistent),
            _ => None,
        }
    }

    /// The e820 type number (arch/x86/include/asm/e820/types.h).
    pub fn e820_type(self) -> u32 {
        match self {
            Self::Ram => 1,
            Self::Reserved => 2,
            Self::Acpi => 3,
            Self::Nvs => 4,
            Self::Persistent => 7,
            Self::PersistentLegacy => 12,
        }
    }
}

/// A top-level range of the physical memory map with its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemoryRange {
    /// The range (inclusive end).
    pub range: PhysRange,
    /// What it is.
    pub kind: MemoryKind,
}

/// One line of `/proc/iomem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The physical range (inclusive end, as the kernel prints it).
    pub range: PhysRange,
    /// The resource name, e.g. `System RAM` or `Crash kernel`.
    pub name: String,
    /// Nesting depth: 0 for top-level resources, +1 per two spaces of indent.
    pub depth: usize,
}

/// The whole `/proc/iomem` map, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Iomem {
    /// Every resource, parents before their children.
    pub resources: Vec<Resource>,
}

impl Iomem {
    /// Parses the text of `/proc/iomem`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut resources = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let line = index + 1;
            let bad = || ParseError::IomemLine { line, text: raw.to_string() };
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            let (span, name) = raw.trim_start().split_once(" : ").ok_or_else(bad)?;
            let (start, end) = span.split_once('-').ok_or_else(bad)?;
            let start = u64::from_str_radix(start, 16).map_err(|_| bad())?;
            let end = u64::from_str_radix(end, 16).map_err(|_| bad())?;
            if end < start {
                return Err(ParseError::IomemRange { line, start, end });
            }
            resources.push(Resource { range: PhysRange { start, end }, name: name.to_string(), depth: indent / 2 });
        }
        Ok(Self { resources })
    }

    /// True when every address is zero: what a reader without CAP_SYS_ADMIN
    /// sees. Such a map has the right names but no usable addresses.
    pub fn is_redacted(&self) -> bool {
        !self.resources.is_empty() && self.resources.iter().all(|r| r.range.start == 0 && r.range.end == 0)
    }

    /// Top-level RAM the kernel manages: `System RAM`, including the
    /// `System RAM (kmem)` and `(virtio_mem)` variants.
    pub fn system_ram(&self) -> Vec<PhysRange> {
        self.top_level(|name| name.starts_with("System RAM"))
    }

    /// Memory reserved with `crashkernel=`, at any depth (it nests inside
    /// System RAM). Two ranges when `crashkernel=X,high` and `,low` are used.
    pub fn crash_regions(&self) -> Vec<PhysRange> {
        self.resources.iter().filter(|r| r.name == "Crash kernel").map(|r| r.range).collect()
    }

    /// The running kernel's text (`Kernel code`), nested in System RAM.
    pub fn kernel_code(&self) -> Option<PhysRange> {
        self.resources.iter().find(|r| r.name == "Kernel code").map(|r| r.range)
    }

    /// Top-level RAM, ACPI, NVS, reserved and persistent-memory ranges, in address order:
    /// the memory map a capture kernel is given (minus what it may not use).
    pub fn memory_map(&self) -> Vec<MemoryRange> {
        let mut map: Vec<MemoryRange> = self
            .resources
            .iter()
            .filter(|r| r.depth == 0)
            .filter_map(|r| MemoryKind::from_name(&r.name).map(|kind| MemoryRange { range: r.range, kind }))
            .collect();
        map.sort();
        map
    }

    /// Top-level ranges whose name satisfies `keep`.
    pub fn top_level(&self, keep: impl Fn(&str) -> bool) -> Vec<PhysRange> {
        self.resources.iter().filter(|r| r.depth == 0 && keep(&r.name)).map(|r| r.range).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_1G: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-3ffdffff : System RAM
  0c000000-1bffffff : Crash kernel
  2b000000-2be02577 : Kernel code
3ffe0000-3fffffff : Reserved
fd000000-fdffffff : PCI Bus 0000:00
100000000-13fffffff : System RAM (kmem)
";

    #[test]
    fn finds_ram_crash_and_kernel() {
        let map = Iomem::parse(QEMU_1G).unwrap();
        assert_eq!(
            map.system_ram(),
            vec![
                PhysRange { start: 0x1000, end: 0x9fbff },
                PhysRange { start: 0x100000, end: 0x3ffdffff },
                PhysRange { start: 0x1_0000_0000, end: 0x1_3fff_ffff },
            ]
        );
        assert_eq!(map.crash_regions(), vec![PhysRange { start: 0x0c00_0000, end: 0x1bff_ffff }]);
        assert_eq!(map.crash_regions()[0].len(), 256 << 20);
        assert_eq!(map.kernel_code().unwrap().start, 0x2b00_0000);
        assert!(!map.is_redacted());
    }

    #[test]
    fn memory_map_has_types() {
        let text =
            format!("{QEMU_1G}1a0000000-1a0000fff : ACPI Tables\n1a0001000-1a0001fff : ACPI Non-volatile Storage\n");
        let map = Iomem::parse(&text).unwrap().memory_map();
        let kinds: Vec<(u64, MemoryKind)> = map.iter().map(|m| (m.range.start, m.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, MemoryKind::Reserved),
                (0x1000, MemoryKind::Ram),
                (0x9fc00, MemoryKind::Reserved),
                (0xf0000, MemoryKind::Reserved),
                (0x100000, MemoryKind::Ram),
                (0x3ffe0000, MemoryKind::Reserved),
                (0x1_0000_0000, MemoryKind::Ram),
                (0x1_a000_0000, MemoryKind::Acpi),
                (0x1_a000_1000, MemoryKind::Nvs),
            ]
        );
        assert_eq!(MemoryKind::Nvs.e820_type(), 4);
    }

    #[test]
    fn detects_redacted_map() {
        let map = Iomem::parse("00000000-00000000 : System RAM\n  00000000-00000000 : Crash kernel\n").unwrap();
        assert!(map.is_redacted());
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(matches!(Iomem::parse("zz-10 : x"), Err(ParseError::IomemLine { line: 1, .. })));
        assert!(matches!(Iomem::parse("1000 : x"), Err(ParseError::IomemLine { .. })));
        assert!(matches!(Iomem::parse("\n2000-1000 : x"), Err(ParseError::IomemRange { line: 2, .. })));
    }
}
