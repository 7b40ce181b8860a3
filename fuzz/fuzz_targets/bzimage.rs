//! The bzImage header probe never panics.
#![no_main]

use kdump_loader::BzImage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = BzImage::parse(data);
});
