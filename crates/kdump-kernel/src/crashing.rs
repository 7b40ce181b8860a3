//! Which CPU crashed, found from what the dump holds rather than guessed.

use serde::Serialize;

use std::ops::Range;

use crate::Result;
use crate::kallsyms::{self, KallsymsTables, SymbolTable};
use crate::memory::{KernelMemory, PhysRead};
use crate::prstatus::CpuState;
use crate::vmcoreinfo::Vmcoreinfo;

/// How the crashing CPU was found, most direct first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashingCpuMethod {
    /// The kernel's `panic_cpu`, which panic() and crash_kexec() set.
    PanicCpu,
    /// x86's `crashing_cpu`, which the crash shutdown sets.
    CrashingCpuVariable,
    /// The one CPU whose saved instruction pointer is in `__crash_kexec` or
    /// `crash_kexec`: the crashing CPU saves its own registers there, the
    /// others are stopped by an NMI wherever they were.
    RegistersInCrashKexec,
    /// None of the above: the first CPU that was running a task. Can be wrong.
    Guess,
}

impl CrashingCpuMethod {
    /// Words for a report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::PanicCpu => "the kernel's panic_cpu",
            Self::CrashingCpuVariable => "the kernel's crashing_cpu",
            Self::RegistersInCrashKexec => "the only CPU whose saved RIP is in __crash_kexec",
            Self::Guess => "a guess: the first CPU running a task (no panic_cpu, crashing_cpu or RIP in __crash_kexec)",
        }
    }
}

/// The crashing CPU: its position among the NT_PRSTATUS notes, and how it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CrashingCpu {
    /// Index into the CPU states (the kernel writes the notes in CPU order).
    pub index: usize,
    /// How it was found.
    pub method: CrashingCpuMethod,
}

/// The kernel symbols that locate the crashing CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashSymbols {
    /// Address of `panic_cpu`.
    pub panic_cpu: Option<u64>,
    /// Address of x86's `crashing_cpu`.
    pub crashing_cpu: Option<u64>,
    /// Where the code of `__crash_kexec` and `crash_kexec` lies (with any
    /// compiler-made `.cold`/`.isra` parts).
    pub crash_kexec: Vec<Range<u64>>,
}

impl CrashSymbols {
    fn is_crash_kexec(name: &str) -> bool {
        matches!(name.split('.').next(), Some("__crash_kexec" | "crash_kexec"))
    }

    fn wanted(name: &str) -> bool {
        name == "panic_cpu" || name == "crashing_cpu" || Self::is_crash_kexec(name)
    }

    /// Picked from a whole symbol table.
    pub fn from_table(table: &SymbolTable) -> Self {
        let crash_kexec = table
            .iter()
            .filter(|s| Self::is_crash_kexec(&s.name))
            .filter_map(|s| table.lookup_text(s.address).map(|(_, _, size)| s.address..s.address + size))
            .collect();
        Self { panic_cpu: table.address_of("panic_cpu"), crashing_cpu: table.address_of("crashing_cpu"), crash_kexec }
    }

    /// Read from the dump's kallsyms tables without decoding the whole table
    /// (what `kdump dump` needs for its header, in a capture kernel's memory).
    pub fn from_dump<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Result<Self> {
        let (found, _) =
            KallsymsTables::in_dump(mem, info, |mem, tables, stext| kallsyms::find(mem, tables, stext, Self::wanted))?;
        let mut symbols = Self::default();
        for (symbol, size) in found {
            match symbol.name.as_str() {
                "panic_cpu" => symbols.panic_cpu = Some(symbol.address),
                "crashing_cpu" => symbols.crashing_cpu = Some(symbol.address),
                _ if matches!(symbol.kind, 'T' | 't' | 'W' | 'w') => {
                    if let Some(size) = size {
                        symbols.crash_kexec.push(symbol.address..symbol.address + size);
                    }
                }
                _ => {}
            }
        }
        Ok(symbols)
    }
}

/// Finds the crashing CPU among `cpus`. With symbols: `panic_cpu`, then
/// `crashing_cpu` (each an `int`, -1 when unset), then the registers; without
/// them only a guess is possible.
pub fn crashing_cpu<P: PhysRead>(
    mem: &mut KernelMemory<P>,
    symbols: Option<&CrashSymbols>,
    cpus: &[CpuState],
) -> Option<CrashingCpu> {
    if let Some(symbols) = symbols {
        for (at, method) in [
            (symbols.panic_cpu, CrashingCpuMethod::PanicCpu),
            (symbols.crashing_cpu, CrashingCpuMethod::CrashingCpuVariable),
        ] {
            let value = at.and_then(|a| mem.read_u32(a).ok()).map(|v| v as i32);
            if let Some(cpu) = value
                && cpu >= 0
                && (cpu as usize) < cpus.len()
            {
                return Some(CrashingCpu { index: cpu as usize, method });
            }
        }
        if let Some(index) = registers_in_crash_kexec(symbols, cpus) {
            return Some(CrashingCpu { index, method: CrashingCpuMethod::RegistersInCrashKexec });
        }
    }
    cpus.iter()
        .find(|s| s.pid != 0)
        .or(cpus.first())
        .map(|s| CrashingCpu { index: s.index, method: CrashingCpuMethod::Guess })
}

/// The crashing CPU of a dump, with the few symbols that tell read from it (not the whole
/// table: see [`CrashSymbols::from_dump`]).
pub fn find<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo, cpus: &[CpuState]) -> Option<CrashingCpu> {
    let symbols = CrashSymbols::from_dump(mem, info).ok();
    crashing_cpu(mem, symbols.as_ref(), cpus)
}

/// The one CPU whose saved RIP is in `__crash_kexec` or `crash_kexec` (or a
/// compiler-made `.cold`/`.isra` part of them), if exactly one is.
pub fn registers_in_crash_kexec(symbols: &CrashSymbols, cpus: &[CpuState]) -> Option<usize> {
    let in_crash_kexec: Vec<usize> = cpus
        .iter()
        .filter(|c| c.register("rip").is_some_and(|rip| symbols.crash_kexec.iter().any(|r| r.contains(&rip))))
        .map(|c| c.index)
        .collect();
    match in_crash_kexec[..] {
        [index] => Some(index),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use super::*;
    use crate::kallsyms::Symbol;
    use crate::memory::tests::layout;
    use crate::memory::{FlatMemory, START_KERNEL_MAP};

    const K: u64 = START_KERNEL_MAP;

    fn cpu(index: usize, pid: i32, rip: u64) -> CpuState {
        let mut registers = vec![0u64; 27];
        registers[16] = rip;
        CpuState { index, pid, registers }
    }

    fn table(with: &[(&str, u64)]) -> CrashSymbols {
        let mut v: Vec<Symbol> = [
            ("_stext", 0x1000),
            ("default_idle", 0x1100),
            ("__crash_kexec", 0x1200),
            ("panic", 0x1300),
            ("_etext", 0x2000),
        ]
        .iter()
        .map(|(n, a)| Symbol { address: K + a, kind: 'T', name: n.to_string() })
        .collect();
        v.extend(with.iter().map(|(n, a)| Symbol { address: K + a, kind: 'D', name: n.to_string() }));
        CrashSymbols::from_table(&SymbolTable::new(v))
    }

    fn mem(words: &[(u64, i32)]) -> KernelMemory<FlatMemory> {
        let mut m = FlatMemory { bytes: vec![0; 0x10000], base: 0 };
        for (at, v) in words {
            m.bytes[*at as usize..*at as usize + 4].copy_from_slice(&v.to_le_bytes());
        }
        KernelMemory::new(m, layout(false))
    }

    #[test]
    fn each_method_in_order() {
        // CPU 0 runs a task in default_idle's range (stopped by NMI); CPU 2 saved its registers in __crash_kexec.
        let cpus = [cpu(0, 7, K + 0x1110), cpu(1, 0, K + 0x1108), cpu(2, 9, K + 0x1234)];
        let found = |m: &mut KernelMemory<FlatMemory>, t: Option<&CrashSymbols>| crashing_cpu(m, t, &cpus).unwrap();

        let t = table(&[("panic_cpu", 0x3000), ("crashing_cpu", 0x3004)]);
        let mut m = mem(&[(0x3000, 1), (0x3004, 2)]);
        assert_eq!(found(&mut m, Some(&t)), CrashingCpu { index: 1, method: CrashingCpuMethod::PanicCpu });
        let mut m = mem(&[(0x3000, -1), (0x3004, 0)]);
        assert_eq!(found(&mut m, Some(&t)), CrashingCpu { index: 0, method: CrashingCpuMethod::CrashingCpuVariable });
        // Both unset (-1), or out of range: the registers decide.
        let mut m = mem(&[(0x3000, -1), (0x3004, 9)]);
        assert_eq!(found(&mut m, Some(&t)), CrashingCpu { index: 2, method: CrashingCpuMethod::RegistersInCrashKexec });
        let t = table(&[]);
        assert_eq!(found(&mut m, Some(&t)), CrashingCpu { index: 2, method: CrashingCpuMethod::RegistersInCrashKexec });
        // No symbols: only a guess, and it says so.
        assert_eq!(found(&mut m, None), CrashingCpu { index: 0, method: CrashingCpuMethod::Guess });
        // Two CPUs in __crash_kexec is no answer from the registers.
        let two = [cpu(0, 7, K + 0x1210), cpu(1, 0, K + 0x1220)];
        assert_eq!(crashing_cpu(&mut m, Some(&t), &two).unwrap().method, CrashingCpuMethod::Guess);
        assert_eq!(crashing_cpu(&mut m, Some(&t), &[]), None);
        assert_eq!(registers_in_crash_kexec(&t, &cpus), Some(2));
        assert_eq!(registers_in_crash_kexec(&t, &two), None);
    }
}
