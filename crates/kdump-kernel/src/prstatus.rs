//! CPU registers from the ELF notes (`NT_PRSTATUS`, one per CPU).

use serde::Serialize;

/// `NT_PRSTATUS`: registers of one CPU (note name `"CORE"`).
pub use kdump_elf::NT_PRSTATUS;
/// Offset of `pr_pid` in x86_64 `struct elf_prstatus`.
const PR_PID: usize = 32;
/// Offset of `pr_reg` (27 × u64, `struct user_regs_struct`).
const PR_REG: usize = 112;

/// Names of the registers in `pr_reg`, in order.
pub const REGISTER_NAMES: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_ax",
    "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
];

/// One ELF note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'a> {
    /// Owner name without the NUL (`CORE`, `VMCOREINFO`, …).
    pub name: &'a [u8],
    /// Note type.
    pub kind: u32,
    /// Descriptor bytes.
    pub desc: &'a [u8],
}

/// Iterates over the notes of a PT_NOTE segment (4-byte aligned, as the
/// kernel writes them); stops at a zero header or anything truncated.
pub fn notes(mut data: &[u8]) -> Vec<Note<'_>> {
    let mut out = Vec::new();
    let pad = |n: usize| n.checked_add(3).map(|v| v & !3);
    while data.len() >= 12 {
        let word = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let (namesz, descsz, kind) = (crate::to_usize(word(0).into()), crate::to_usize(word(4).into()), word(8));
        if namesz == 0 && descsz == 0 && kind == 0 {
            break;
        }
        let Some(desc_at) = pad(namesz).and_then(|n| n.checked_add(12)) else { break };
        let Some(end) = pad(descsz).and_then(|d| d.checked_add(desc_at)) else { break };
        let (Some(name), Some(desc)) = (data.get(12..12 + namesz), data.get(desc_at..desc_at + descsz)) else { break };
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        out.push(Note { name, kind, desc });
        data = data.get(end..).unwrap_or_default();
    }
    out
}

/// One CPU's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuState {
    /// Position among the NT_PRSTATUS notes (the kernel writes them in CPU order).
    pub index: usize,
    /// PID of the task that was running.
    pub pid: i32,
    /// The 27 registers of `pr_reg`, named by [`REGISTER_NAMES`].
    pub registers: Vec<u64>,
}

impl CpuState {
    /// A register by name.
    pub fn register(&self, name: &str) -> Option<u64> {
        REGISTER_NAMES.iter().position(|&n| n == name).and_then(|i| self.registers.get(i).copied())
    }
}

/// Every x86_64 NT_PRSTATUS in `notes_data`, in order. Short notes are skipped.
pub fn cpu_states(notes_data: &[u8]) -> Vec<CpuState> {
    notes(notes_data)
        .into_iter()
        .filter(|n| n.name == b"CORE" && n.kind == NT_PRSTATUS && n.desc.len() >= PR_REG + 27 * 8)
        .enumerate()
        .map(|(index, n)| CpuState {
            index,
            pid: i32::from_le_bytes(n.desc[PR_PID..PR_PID + 4].try_into().unwrap_or_default()),
            registers: (0..27)
                .map(|r| u64::from_le_bytes(n.desc[PR_REG + r * 8..PR_REG + r * 8 + 8].try_into().unwrap_or_default()))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
pub(crate) mod tests {
    use super::*;

    pub(crate) fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(name);
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    pub(crate) fn prstatus(pid: i32, rip: u64, rsp: u64) -> Vec<u8> {
        let mut d = vec![0u8; 336];
        d[PR_PID..PR_PID + 4].copy_from_slice(&pid.to_le_bytes());
        d[PR_REG + 16 * 8..PR_REG + 17 * 8].copy_from_slice(&rip.to_le_bytes());
        d[PR_REG + 19 * 8..PR_REG + 20 * 8].copy_from_slice(&rsp.to_le_bytes());
        d
    }

    #[test]
    fn reads_registers_of_each_cpu() {
        let mut data = note(b"CORE", NT_PRSTATUS, &prstatus(42, 0xffff_ffff_8100_0000, 0xffff_c900_0001_3e80));
        data.extend(note(b"CORE", NT_PRSTATUS, &prstatus(0, 1, 2)));
        data.extend(note(b"VMCOREINFO", 0, b"OSRELEASE=6.1\n"));
        let cpus = cpu_states(&data);
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].pid, 42);
        assert_eq!(cpus[0].register("rip"), Some(0xffff_ffff_8100_0000));
        assert_eq!(cpus[0].register("rsp"), Some(0xffff_c900_0001_3e80));
        assert_eq!(cpus[1].index, 1);
        assert_eq!(notes(&data)[2].name, b"VMCOREINFO");
    }

    #[test]
    fn truncated_or_garbage_notes_do_not_panic() {
        let data = note(b"CORE", NT_PRSTATUS, &prstatus(1, 2, 3));
        for len in 0..data.len() {
            let _ = cpu_states(&data[..len]);
        }
        let mut huge = data.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(cpu_states(&huge).is_empty());
    }
}
