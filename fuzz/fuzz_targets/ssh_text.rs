//! The ssh target's text parsers never panic: known_hosts (plain, hashed, markers, patterns),
//! OpenSSH private key files and target URLs.
#![no_main]

use kdump_ssh::{KnownHosts, PrivateKey, SshUrl, host_name};
use libfuzzer_sys::fuzz_target;

// An ssh-ed25519 key blob that seeds pin for some hosts.
const BLOB: [u8; 51] = [
    0, 0, 0, 11, b's', b's', b'h', b'-', b'e', b'd', b'2', b'5', b'5', b'1', b'9', 0, 0, 0, 32, 0x70, 0xf7, 0x65, 0x14, 0x0b,
    0xb1, 0x0f, 0xca, 0xa6, 0xae, 0x5e, 0x94, 0xb7, 0xd2, 0xe8, 0x2f, 0x72, 0xff, 0x2a, 0xff, 0xc2, 0xb2, 0x84, 0xa0, 0xd6,
    0x96, 0x88, 0x7c, 0x77, 0xa2, 0x59, 0x14,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let kh = KnownHosts::parse(&text);
    for name in [host_name("127.0.0.1", 2222), host_name("backup.example", 22), "x".into()] {
        let _ = kh.verify(&name, &BLOB);
        let _ = kh.verify(&name, data);
        let _ = kh.pinned(&name);
    }
    if let Ok(key) = PrivateKey::from_openssh(&text) {
        let _ = key.authorized_keys_line();
    }
    if let Some(line) = text.lines().next() {
        let _ = SshUrl::parse(line);
    }
});
