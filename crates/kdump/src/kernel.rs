//! Facts about the crashed kernel that several subcommands report.

use kdump_kernel::crashing::{CrashSymbols, CrashingCpu, crashing_cpu};
use kdump_kernel::prstatus::CpuState;
use kdump_kernel::{KernelMemory, PhysRead, Vmcoreinfo};

pub use kdump_kernel::identity::{KernelId, identity};

/// The CPU that crashed and how it was found, with the few kernel symbols that
/// tell, read from the dump (not the whole table: see [`CrashSymbols::from_dump`]).
pub fn crashing<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo, cpus: &[CpuState]) -> Option<CrashingCpu> {
    let symbols = CrashSymbols::from_dump(mem, info).ok();
    crashing_cpu(mem, symbols.as_ref(), cpus)
}
