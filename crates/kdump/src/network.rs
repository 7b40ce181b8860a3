//! The capture kernel's network: `[network]` brought up step by step, one
//! console line each, every wait bounded; the first failure ends it with
//! the reason (the caller then runs failure_action). And `kdump check-network`,
//! the same checks from the running machine.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kdump_net::Ipv4Net;
use kdump_net::rtnetlink::Route;
use kdump_service::{Addressing, Network};
use kdump_sys::SysRoot;
use kdump_sys::net::{self as sysnet, Interface, Rtnl};

/// Seconds a probe waits to connect, and again for the answer.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Brings the network up as configured; `say` prints a console line.
pub fn bring_up(cfg: &Network, say: &mut dyn FnMut(String)) -> anyhow::Result<()> {
    let root = SysRoot::host();
    let mac = cfg.mac()?;
    let carrier_wait = Duration::from_secs(u64::from(cfg.carrier_wait_seconds));
    let iface = wait_for_interface(&root, cfg, carrier_wait)?;
    say(format!("network: {mac} is {} (index {})", iface.name, iface.index));

    let mut rtnl = Rtnl::open().context("network: cannot open a netlink socket")?;
    rtnl.set_link_up(iface.index).with_context(|| format!("network: cannot set {} up", iface.name))?;
    say(format!("network: link {} up; waiting up to {} s for a carrier", iface.name, cfg.carrier_wait_seconds));
    let start = Instant::now();
    if !sysnet::wait_for_carrier(&root, &iface.name, carrier_wait) {
        bail!(
            "network: no carrier on {} within {} s: is it cabled and its switch port up? \
             (network.carrier_wait_seconds)",
            iface.name,
            cfg.carrier_wait_seconds
        );
    }
    say(format!("network: carrier on {} after {:.1} s", iface.name, start.elapsed().as_secs_f64()));

    let (net, gateway) = match cfg.addressing()? {
        Addressing::Static { net, gateway } => {
            rtnl.add_address(iface.index, net)
                .with_context(|| format!("network: cannot add {net} to {}", iface.name))?;
            say(format!("network: address {net} on {} (static)", iface.name));
            (net, gateway)
        }
        Addressing::Dhcp => {
            say(format!("network: DHCP on {}, waiting up to {} s", iface.name, cfg.dhcp_wait_seconds));
            let start = Instant::now();
            let wait = Duration::from_secs(u64::from(cfg.dhcp_wait_seconds));
            let lease =
                sysnet::dhcp_lease(&iface, wait, &mut |m| say(format!("network: DHCP: {m}"))).with_context(|| {
                    format!(
                        "network: DHCP on {} failed (is a DHCP server on its link? network.dhcp_wait_seconds)",
                        iface.name
                    )
                })?;
            let net = Ipv4Net { address: lease.address, prefix_len: lease.prefix_len };
            rtnl.add_address(iface.index, net)
                .with_context(|| format!("network: cannot add {net} to {}", iface.name))?;
            say(format!(
                "network: address {net} on {} (DHCP from {} after {:.1} s{})",
                iface.name,
                lease.server,
                start.elapsed().as_secs_f64(),
                lease.lease_seconds.map(|s| format!(", lease {s} s")).unwrap_or_default()
            ));
            (net, lease.router)
        }
    };

    match gateway {
        Some(gw) => {
            if !net.contains(gw) {
                // A gateway off the subnet (a /32 lease): reach it on the link first.
                let host = Route { destination: gw, prefix_len: 32, gateway: None, index: iface.index };
                rtnl.add_route(&host).with_context(|| format!("network: cannot add a route to {gw}"))?;
            }
            let default =
                Route { destination: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: Some(gw), index: iface.index };
            rtnl.add_route(&default).with_context(|| format!("network: cannot add the default route via {gw}"))?;
            say(format!("network: route default via {gw} dev {}", iface.name));
        }
        None => say(format!("network: no gateway given: only {} is reachable", net.subnet())),
    }

    if let Some(probe) = cfg.probe()? {
        let hello = format!("kdump capture kernel {} probing\n", net.address);
        let answer = sysnet::probe_tcp(SocketAddr::V4(probe), &hello, PROBE_WAIT)
            .with_context(|| format!("network: probe {probe} failed"))?;
        say(format!("network: probe {probe} reachable, answered {answer:?}"));
    }
    Ok(())
}

/// `kdump check-network`: prints the interfaces, the configured one and a probe; fails
/// naming every problem found.
pub fn check(cfg: Option<&Network>, probe: Option<SocketAddrV4>) -> anyhow::Result<()> {
    let root = SysRoot::host();
    let all = sysnet::interfaces(&root).context("cannot list the network interfaces")?;
    println!("interfaces:");
    for i in &all {
        let modules = sysnet::driver_modules(&root, &i.name);
        println!(
            "  {:<12} {}{}  {}  driver modules: {}",
            i.name,
            i.permanent_mac,
            if i.mac != i.permanent_mac { format!(" (now {})", i.mac) } else { String::new() },
            if sysnet::has_carrier(&root, &i.name) { "carrier" } else { "no carrier" },
            if modules.is_empty() { "none".to_string() } else { modules.join(", ") }
        );
    }
    if all.is_empty() {
        println!("  none");
    }
    let mut problems = Vec::new();
    match cfg {
        None => println!("network: no [network] table: the capture kernel brings up no network"),
        Some(net) => {
            let mac = net.mac()?;
            match all.iter().find(|i| i.permanent_mac == mac).or_else(|| all.iter().find(|i| i.mac == mac)) {
                Some(i) if sysnet::has_carrier(&root, &i.name) => println!("network.interface {mac}: {}", i.name),
                Some(i) => problems.push(format!("network.interface {mac} is {}, which has no carrier now", i.name)),
                None => problems.push(format!("network.interface {mac}: no interface has that MAC")),
            }
            match net.addressing()? {
                Addressing::Dhcp => println!(
                    "network: DHCP (the capture kernel waits up to {} s for a carrier, {} s for a lease)",
                    net.carrier_wait_seconds, net.dhcp_wait_seconds
                ),
                Addressing::Static { net: a, gateway } => println!(
                    "network: {a}{} (the capture kernel waits up to {} s for a carrier)",
                    gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                    net.carrier_wait_seconds
                ),
            }
        }
    }
    let probe = match probe {
        Some(p) => Some(p),
        None => cfg.map(Network::probe).transpose()?.flatten(),
    };
    match probe {
        None => println!("probe: none (set network.probe or --probe HOST:PORT)"),
        Some(p) => match sysnet::probe_tcp(SocketAddr::V4(p), "kdump check-network probing\n", PROBE_WAIT) {
            Ok(answer) => println!("probe {p}: reachable, answered {answer:?}"),
            Err(e) => problems.push(format!("probe {p}: {e}")),
        },
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{}", problems.join("; "))
}

/// The interface, once its driver has made it appear.
fn wait_for_interface(root: &SysRoot, cfg: &Network, wait: Duration) -> anyhow::Result<Interface> {
    let mac = cfg.mac()?;
    let deadline = Instant::now() + wait;
    loop {
        if let Some(iface) = sysnet::interface_by_mac(root, mac).context("network: cannot list the interfaces")? {
            return Ok(iface);
        }
        if Instant::now() >= deadline {
            let present: Vec<String> = sysnet::interfaces(root)
                .unwrap_or_default()
                .iter()
                .map(|i| format!("{} {}", i.name, i.permanent_mac))
                .collect();
            bail!(
                "network: no interface with MAC {mac} within {} s (present: {}): was its driver module \
                 loaded? kdump setup includes it when the NIC is present",
                wait.as_secs(),
                if present.is_empty() { "none".into() } else { present.join(", ") }
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
