#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;

/// Discards writes (a fuzzed offset may point terabytes away).
struct Null;
impl std::io::Write for Null {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl std::io::Seek for Null {
    fn seek(&mut self, _: std::io::SeekFrom) -> std::io::Result<u64> {
        Ok(0)
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = kdump_dumpfile::rebuild_flattened(data, Null);
    if let Ok(r) = kdump_dumpfile::FlatReader::open_lenient(std::io::Cursor::new(data)) {
        if let Ok(mut m) = kdump_dumpfile::KdumpReader::open(r) {
            common::exercise(&mut m);
        }
    }
});
