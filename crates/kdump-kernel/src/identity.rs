//! Who the crashed kernel was: its `uname` (`init_uts_ns`), read from its memory.

use serde::Serialize;

use crate::memory::{KernelMemory, PhysRead};
use crate::vmcoreinfo::Vmcoreinfo;

/// `uname` of the crashed kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KernelId {
    /// `uname -r`.
    pub release: Option<String>,
    /// `uname -v`.
    pub version: Option<String>,
    /// `uname -m`.
    pub machine: Option<String>,
    /// `uname -n`: the host name.
    pub nodename: Option<String>,
}

/// `new_utsname` is six 65-byte strings: sysname, nodename, release, version, machine, domainname.
const UTS_LEN: u64 = 65;
/// The same, as an array length.
const UTS_BYTES: usize = 65;
/// How far into `struct uts_namespace` the name is searched for when VMCOREINFO
/// has no `OFFSET(uts_namespace.name)` (before 5.x it follows a `kref`).
const UTS_NAME_SEARCH: u64 = 64;

fn uts_field<P: PhysRead>(mem: &mut KernelMemory<P>, base: u64, index: u64) -> Option<String> {
    let mut b = [0u8; UTS_BYTES];
    mem.read(base + index * UTS_LEN, &mut b).ok()?;
    let end = b.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&b[..end]).into_owned())
}

/// Where `init_uts_ns.name` is: VMCOREINFO's offset, else the offset at which
/// sysname is "Linux" and the release is VMCOREINFO's OSRELEASE.
fn uts_name<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo, uts: u64) -> Option<u64> {
    if let Ok(offset) = info.offset("uts_namespace.name") {
        return Some(uts + offset);
    }
    (0..=UTS_NAME_SEARCH).map(|o| uts + o).find(|&base| {
        uts_field(mem, base, 0).as_deref() == Some("Linux")
            && info.osrelease().is_none_or(|r| uts_field(mem, base, 2).as_deref() == Some(r))
    })
}

/// Reads `init_uts_ns`; falls back to VMCOREINFO's OSRELEASE for the release.
pub fn identity<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> KernelId {
    let osrelease = info.osrelease().map(str::to_string);
    let Some(base) = info.symbol("init_uts_ns").ok().and_then(|uts| uts_name(mem, info, uts)) else {
        return KernelId { release: osrelease, ..KernelId::default() };
    };
    KernelId {
        release: uts_field(mem, base, 2).or(osrelease),
        version: uts_field(mem, base, 3),
        machine: uts_field(mem, base, 4),
        nodename: uts_field(mem, base, 1),
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use crate::memory::{FlatMemory, START_KERNEL_MAP, X86_64Layout};

    use super::*;

    fn memory_with_uts(name_at: usize) -> KernelMemory<FlatMemory> {
        let mut mem = FlatMemory { bytes: vec![0; 0x4000], base: 0 };
        let fields = ["Linux", "crashbox", "5.10.0-32-cloud-amd64", "#1 SMP Debian 5.10.223-1", "x86_64", "(none)"];
        for (i, f) in fields.iter().enumerate() {
            let at = 0x2000 + name_at + i * UTS_LEN as usize;
            mem.bytes[at..at + f.len()].copy_from_slice(f.as_bytes());
        }
        let layout = X86_64Layout {
            phys_base: 0,
            top_pgt: START_KERNEL_MAP + 0x1000,
            five_level: false,
            sme_mask: 0,
            kernel_image_size: 1 << 30,
        };
        KernelMemory::new(mem, layout)
    }

    #[test]
    fn finds_the_uts_name_without_its_offset_in_vmcoreinfo() {
        // 5.10: uts_namespace starts with a 4-byte kref and VMCOREINFO has no OFFSET(uts_namespace.name).
        let mut mem = memory_with_uts(4);
        let uts = START_KERNEL_MAP + 0x2000;
        let info =
            Vmcoreinfo::parse(format!("OSRELEASE=5.10.0-32-cloud-amd64\nSYMBOL(init_uts_ns)={uts:x}\n").as_bytes());
        let id = identity(&mut mem, &info);
        assert_eq!(id.nodename.as_deref(), Some("crashbox"));
        assert_eq!(id.version.as_deref(), Some("#1 SMP Debian 5.10.223-1"));
        assert_eq!(id.machine.as_deref(), Some("x86_64"));
        // The exported offset wins; a wrong release finds nothing and keeps OSRELEASE.
        let info = Vmcoreinfo::parse(
            format!("OSRELEASE=5.10.0-32-cloud-amd64\nSYMBOL(init_uts_ns)={uts:x}\nOFFSET(uts_namespace.name)=4\n")
                .as_bytes(),
        );
        assert_eq!(identity(&mut mem, &info).nodename.as_deref(), Some("crashbox"));
        let info = Vmcoreinfo::parse(format!("OSRELEASE=6.1.0\nSYMBOL(init_uts_ns)={uts:x}\n").as_bytes());
        let id = identity(&mut mem, &info);
        assert_eq!((id.release.as_deref(), id.nodename), (Some("6.1.0"), None));
    }
}
