//! The ssh client never panics on what a server (or anyone on the path) sends before the host
//! key is verified: version lines, packet framing, KEXINIT, the key exchange reply.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kdump_ssh::fuzzing::handshake(data);
});
