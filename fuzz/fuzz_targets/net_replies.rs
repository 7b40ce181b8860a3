//! What the capture kernel receives from the network and the kernel never panics it:
//! DHCP replies (parsed, and fed to a client in each state) and netlink answers.
#![no_main]

use kdump_net::MacAddr;
use kdump_net::dhcp::{DhcpClient, Step, parse_reply};
use kdump_net::rtnetlink::find_ack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_reply(data);
    // The seeds' xid and MAC, so the fuzzer reaches the client's decisions.
    let mut client = DhcpClient::new(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]), 0x1234_5678);
    if let Step::Offered(_) = client.handle(data) {
        let _ = client.message();
        let _ = client.handle(data);
    }
    let _ = find_ack(data, 1);
});
