//! The printk, kallsyms, note and backtrace decoders, the page-table walk, the live-dump
//! task finder and the struct-page
//! classifier never panic or run away on arbitrary memory and VMCOREINFO.
//! Input: u16 length, VMCOREINFO text, then a physical memory image starting
//! at address 0 (its first byte also picks the dump level and cycle size).
#![no_main]

use kdump_kernel::backtrace::backtrace;
use kdump_kernel::kallsyms::SymbolTable;
use kdump_kernel::memory::{FlatMemory, X86_64Layout};
use kdump_kernel::pages::{PageClass, PageClassifier};
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
    let mut mem = KernelMemory::new(FlatMemory { bytes: image.clone(), base: 0 }, layout);
    if let Ok(records) = read_log(&mut mem, &info) {
        let _ = format_like_makedumpfile(&records);
    }
    let symbols = SymbolTable::from_kallsyms(&mut mem, &info).unwrap_or_default();
    // The page-table walk of `kdump dump -E` and the live-dump task finder.
    let _ = mem.kernel_mappings(&[(0xffff_8880_0000_0000, 0xffff_c880_0000_0000)], 4096);
    let _ = kdump_kernel::live::task_address(&image);
    for s in &states {
        let r = |n: &str| s.register(n).unwrap_or(0);
        let _ = backtrace(&mut mem, &symbols, r("rip"), r("rsp"), r("rbp"));
    }

    // Struct-page classification: RAM as the image's pages plus a hole, cycles of
    // varying size (blocks carried across them), any level.
    let sel = image.first().copied().unwrap_or(0);
    let pages = (image.len() as u64).div_ceil(4096).max(1);
    let ram = vec![0..pages, pages + 7..pages * 2 + 64];
    let km = KernelMemory::new(FlatMemory { bytes: image, base: 0 }, layout);
    if let Ok(mut c) = PageClassifier::new(km, &info, u32::from(sel & 31), ram) {
        let chunk = 1 + usize::from(sel >> 5) * 37;
        let mut start = 0u64;
        while start < pages * 2 + 80 {
            let mut out = vec![PageClass::Kernel; chunk];
            c.classify(start, &mut out);
            start += chunk as u64;
        }
        let _ = (c.limits(), c.anomalies());
    }
});
