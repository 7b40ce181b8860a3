//! Facts about the crashed kernel that several subcommands report.

use kdump_kernel::crashing::{CrashingCpu, crashing_cpu};
use kdump_kernel::kallsyms::SymbolTable;
use kdump_kernel::prstatus::CpuState;
use kdump_kernel::{KernelMemory, PhysRead, Vmcoreinfo};
use serde::Serialize;

/// `uname` of the crashed kernel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelId {
    pub release: Option<String>,
    pub version: Option<String>,
    pub machine: Option<String>,
    pub nodename: Option<String>,
}

/// `new_utsname` is six 65-byte strings: sysname, nodename, release, version, machine, domainname.
const UTS_LEN: u64 = 65;
/// How far into `struct uts_namespace` the name is searched for when VMCOREINFO
/// has no `OFFSET(uts_namespace.name)` (before 5.x it follows a `kref`).
const UTS_NAME_SEARCH: u64 = 64;

fn uts_field<P: PhysRead>(mem: &mut KernelMemory<P>, base: u64, index: u64) -> Option<String> {
    let mut b = [0u8; UTS_LEN as usize];
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

/// The CPU that crashed and how it was found, with the kernel's symbols from the dump.
pub fn crashing<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo, cpus: &[CpuState]) -> Option<CrashingCpu> {
    let symbols = SymbolTable::from_dump(mem, info).ok().map(|(t, _)| t);
    crashing_cpu(mem, symbols.as_ref(), cpus)
}
