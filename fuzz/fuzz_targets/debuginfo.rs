//! A vmlinux given with -x is untrusted: its ELF headers, symbols and DWARF (types nested
//! through anonymous unions, typedefs, arrays, enumerators) never panic, loop or recurse
//! without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kdump_debuginfo::vmcoreinfo(data);
    let _ = kdump_debuginfo::build_id(data);
});
