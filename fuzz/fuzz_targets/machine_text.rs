//! /proc and /sys text parsers and the command-line builder never panic.
#![no_main]

use kdump_loader::cmdline::{CmdlineRequest, build, split_words};
use kdump_machine::Iomem;
use kdump_machine::cpulist::parse_cpu_list;
use kdump_machine::route::{on_link_prefix, parse_routes, route_to};
use kdump_machine::sysfs::{parse_effective_capabilities, parse_lockdown, parse_vmcoreinfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(map) = Iomem::parse(&text) {
        let _ = (map.system_ram(), map.crash_regions(), map.kernel_code(), map.is_redacted());
    }
    let _ = parse_cpu_list(&text);
    let routes = parse_routes(&text);
    if let Some(r) = route_to(&routes, std::net::Ipv4Addr::new(10, 0, 2, 100)) {
        let _ = on_link_prefix(&routes, &r.interface, std::net::Ipv4Addr::new(10, 0, 2, 15));
    }
    let _ = parse_vmcoreinfo(&text);
    let _ = parse_lockdown(&text);
    let _ = parse_effective_capabilities(&text);
    let _ = split_words(&text);
    let req = CmdlineRequest { reuse: Some(text.to_string()), append: vec![text.to_string()], panic: true, capture_defaults: true };
    let _ = build(&req, 2047);
});
