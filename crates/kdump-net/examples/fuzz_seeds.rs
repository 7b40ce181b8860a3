//! Writes seeds for the `net_replies` fuzz target (scripts/fuzz.sh runs this):
//! an OFFER and an ACK as QEMU's user networking sends them, and two
//! netlink answers (an ack and an error), so the fuzzer starts past the
//! magic cookie and inside the options.
//!
//!   cargo run -p kdump-net --example fuzz_seeds -- DIR

use std::path::PathBuf;

fn reply(kind: u8) -> Vec<u8> {
    let mut m = vec![0u8; 240];
    m[0..3].copy_from_slice(&[2, 1, 6]);
    m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    m[16..20].copy_from_slice(&[10, 0, 2, 15]);
    m[28..34].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    m.extend([53, 1, kind, 54, 4, 10, 0, 2, 2, 51, 4, 0, 1, 0x51, 0x80, 1, 4, 255, 255, 255, 0]);
    m.extend([3, 4, 10, 0, 2, 2, 6, 4, 10, 0, 2, 3, 0, 0, 255]);
    m
}

fn netlink_error(errno: i32) -> Vec<u8> {
    let mut m = vec![36, 0, 0, 0, 2, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    m.extend((-errno).to_ne_bytes());
    m.extend(&kdump_net::rtnetlink::set_link_up(1, 2)[..16]);
    m
}

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into())).join("net_replies");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("offer"), reply(2))?;
    std::fs::write(dir.join("ack"), reply(5))?;
    std::fs::write(dir.join("netlink_ack"), netlink_error(0))?;
    std::fs::write(dir.join("netlink_enodev"), netlink_error(19))?;
    Ok(())
}
