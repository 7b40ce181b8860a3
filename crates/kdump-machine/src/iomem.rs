//! `/proc/iomem`: the physical address map, as a flat list of nested resources.

use serde::{Deserialize, Serialize};

use crate::ParseError;
use crate::machine::PhysRange;

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
