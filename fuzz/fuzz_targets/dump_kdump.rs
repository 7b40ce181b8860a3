#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut m) = kdump_dumpfile::KdumpReader::open(std::io::Cursor::new(data)) {
        common::exercise(&mut m);
    }
});
