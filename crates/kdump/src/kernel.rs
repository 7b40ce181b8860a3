//! Facts about the crashed kernel that several subcommands report.

use kdump_kernel::kallsyms::SymbolTable;
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

/// `new_utsname` is six 65-byte strings.
const UTS_LEN: u64 = 65;

fn uts_field<P: PhysRead>(mem: &mut KernelMemory<P>, base: u64, index: u64) -> Option<String> {
    let mut b = [0u8; UTS_LEN as usize];
    mem.read(base + index * UTS_LEN, &mut b).ok()?;
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    Some(String::from_utf8_lossy(&b[..end]).into_owned())
}

/// Reads `init_uts_ns`; falls back to VMCOREINFO's OSRELEASE for the release.
pub fn identity<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> KernelId {
    let osrelease = info.osrelease().map(str::to_string);
    let Ok(uts) = info.symbol("init_uts_ns") else {
        return KernelId { release: osrelease, ..KernelId::default() };
    };
    let base = uts + info.offset("uts_namespace.name").unwrap_or(0);
    KernelId {
        release: uts_field(mem, base, 2).or(osrelease),
        version: uts_field(mem, base, 3),
        machine: uts_field(mem, base, 4),
        nodename: uts_field(mem, base, 1),
    }
}

/// An `atomic_t` CPU number such as `panic_cpu` (-1 when unset).
pub fn read_cpu<P: PhysRead>(mem: &mut KernelMemory<P>, addr: u64) -> Option<u32> {
    mem.read_u32(addr).ok().filter(|&c| c != u32::MAX)
}

/// The CPU that panicked, from the kernel's `panic_cpu` found through kallsyms.
pub fn panic_cpu<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Option<u32> {
    let symbols = SymbolTable::from_kallsyms(mem, info).ok()?;
    read_cpu(mem, symbols.address_of("panic_cpu")?)
}
