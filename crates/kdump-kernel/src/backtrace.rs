//! A backtrace of the crashing CPU without debug info: follow frame pointers
//! where the kernel keeps them, else scan the stack for text addresses and
//! mark them uncertain (`?`), as the kernel's own oops printer does.

use serde::Serialize;

use crate::kallsyms::SymbolTable;
use crate::memory::{KernelMemory, PhysRead};

/// x86_64 kernel stacks are 16 KiB and 16 KiB aligned (THREAD_SIZE, no KASAN).
pub const THREAD_SIZE: u64 = 16 << 10;
const MAX_FRAMES: usize = 64;

/// One line of a backtrace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// Return (or instruction) address.
    pub address: u64,
    /// `name+0xoff/0xsize`, when the address is in a known text symbol.
    pub symbol: Option<String>,
    /// False for addresses found by scanning, which may be stale.
    pub reliable: bool,
}

impl Frame {
    fn new(symbols: &SymbolTable, address: u64, reliable: bool) -> Self {
        let symbol = symbols.lookup_text(address).map(|(s, off, size)| format!("{}+{off:#x}/{size:#x}", s.name));
        Self { address, symbol, reliable }
    }

    /// The kernel's format: `name+0x1c/0x30`, with `? ` in front when uncertain.
    pub fn display(&self) -> String {
        let name = self.symbol.clone().unwrap_or_else(|| format!("{:#x}", self.address));
        if self.reliable { name } else { format!("? {name}") }
    }
}

/// The crashing CPU's backtrace from its saved `rip`, `rsp` and `rbp`.
pub fn backtrace<P: PhysRead>(
    mem: &mut KernelMemory<P>,
    symbols: &SymbolTable,
    rip: u64,
    rsp: u64,
    rbp: u64,
) -> Vec<Frame> {
    let mut frames = vec![Frame::new(symbols, rip, true)];
    let top = (rsp | (THREAD_SIZE - 1)).wrapping_add(1);
    let on_stack = |a: u64| a >= rsp && a.checked_add(16).is_some_and(|end| end <= top);

    // Frame pointers: [rbp] = caller's rbp, [rbp + 8] = return address.
    let mut chained = Vec::new();
    let mut fp = rbp;
    while on_stack(fp) && chained.len() < MAX_FRAMES {
        let (Ok(next), Ok(ret)) = (mem.read_u64(fp), mem.read_u64(fp + 8)) else { break };
        if !symbols.is_kernel_text(ret) {
            break;
        }
        chained.push(Frame::new(symbols, ret, true));
        if next <= fp {
            break;
        }
        fp = next;
    }
    if chained.len() >= 3 {
        frames.extend(chained);
        return frames;
    }

    // No usable chain (ORC kernels use rbp freely): scan the stack.
    let mut at = rsp & !7;
    while at < top && frames.len() < MAX_FRAMES {
        let Ok(word) = mem.read_u64(at) else { break };
        if symbols.is_kernel_text(word) {
            frames.push(Frame::new(symbols, word, false));
        }
        at += 8;
    }
    frames
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use super::*;
    use crate::kallsyms::Symbol;
    use crate::memory::tests::layout;
    use crate::memory::{FlatMemory, START_KERNEL_MAP};

    fn symbols() -> SymbolTable {
        let t = |a: u64, n: &str| Symbol { address: START_KERNEL_MAP + a, kind: 'T', name: n.into() };
        SymbolTable::new(vec![
            t(0x1000, "_stext"),
            t(0x1000, "sysrq_handle_crash"),
            t(0x1100, "__handle_sysrq"),
            t(0x1200, "panic"),
            t(0x1300, "write_sysrq_trigger"),
            t(0x2000, "_etext"),
        ])
    }

    #[test]
    fn scans_the_stack_when_frame_pointers_are_absent() {
        let mut mem = FlatMemory { bytes: vec![0; 1 << 20], base: 0 };
        // Stack page at kernel address START_KERNEL_MAP + 0x8000 .. +0xc000 (16 KiB aligned).
        let rsp = START_KERNEL_MAP + 0xbf00;
        let words = [0x1234u64, START_KERNEL_MAP + 0x1210, 7, START_KERNEL_MAP + 0x1008, START_KERNEL_MAP + 0x1320];
        for (i, w) in words.iter().enumerate() {
            let at = 0xbf00 + i * 8;
            mem.bytes[at..at + 8].copy_from_slice(&w.to_le_bytes());
        }
        let mut km = KernelMemory::new(mem, layout(false));
        let frames = backtrace(&mut km, &symbols(), START_KERNEL_MAP + 0x1205, rsp, 0);
        let text: Vec<String> = frames.iter().map(Frame::display).collect();
        assert_eq!(
            text,
            vec![
                "panic+0x5/0x100",
                "? panic+0x10/0x100",
                "? sysrq_handle_crash+0x8/0x100",
                "? write_sysrq_trigger+0x20/0xd00"
            ]
        );
    }

    #[test]
    fn follows_frame_pointers_when_present() {
        let mut mem = FlatMemory { bytes: vec![0; 1 << 20], base: 0 };
        let mut put = |at: u64, v: u64| mem.bytes[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        let k = |a: u64| START_KERNEL_MAP + a;
        put(0xb000, k(0xb100));
        put(0xb008, k(0x1110));
        put(0xb100, k(0xb200));
        put(0xb108, k(0x1210));
        put(0xb200, 0);
        put(0xb208, k(0x1310));
        let mut km = KernelMemory::new(mem, layout(false));
        let frames = backtrace(&mut km, &symbols(), k(0x1004), k(0xaff0), k(0xb000));
        let text: Vec<String> = frames.iter().map(Frame::display).collect();
        assert_eq!(
            text,
            vec![
                "sysrq_handle_crash+0x4/0x100",
                "__handle_sysrq+0x10/0x100",
                "panic+0x10/0x100",
                "write_sysrq_trigger+0x10/0xd00"
            ]
        );
    }
}
