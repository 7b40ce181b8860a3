//! The printk, kallsyms, note and backtrace decoders never panic or run away
//! on arbitrary memory and VMCOREINFO. Input: u16 length, VMCOREINFO text,
//! then a physical memory image starting at address 0.
#![no_main]

use kdump_kernel::backtrace::backtrace;
use kdump_kernel::kallsyms::SymbolTable;
use kdump_kernel::memory::{FlatMemory, X86_64Layout};
use kdump_kernel::printk::{format_like_makedumpfile, read_log};
use kdump_kernel::prstatus::cpu_states;
use kdump_kernel::{KernelMemory, Vmcoreinfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    let info = Vmcoreinfo::parse(&data[2..2 + n]);
    let image = data[2 + n..].to_vec();
    let states = cpu_states(&image);
    let layout = X86_64Layout::from_vmcoreinfo(&info).unwrap_or(X86_64Layout {
        phys_base: 0,
        top_pgt: 0xffff_ffff_8000_0000,
        five_level: data.len() % 2 == 0,
        sme_mask: 0,
        kernel_image_size: 1 << 30,
    });
    let mut mem = KernelMemory::new(FlatMemory { bytes: image, base: 0 }, layout);
    if let Ok(records) = read_log(&mut mem, &info) {
        let _ = format_like_makedumpfile(&records);
    }
    let symbols = SymbolTable::from_kallsyms(&mut mem, &info).unwrap_or_default();
    for s in &states {
        let r = |n: &str| s.register(n).unwrap_or(0);
        let _ = backtrace(&mut mem, &symbols, r("rip"), r("rsp"), r("rbp"));
    }
});
