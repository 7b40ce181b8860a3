//! Lab tests of the capture kernel's network ([network] in /etc/kdump.toml).
//!
//! The guest has a virtio NIC on QEMU's user network with `restrict=on`: it reaches
//! QEMU's DHCP server and one `guestfwd` address, 10.0.2.100:2222, which QEMU connects
//! to a listener this test runs on 127.0.0.1. Nothing else is reachable, ever.
//! The NIC's driver modules come from the kernel package (tests/nic).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Instant;

use kdump_lab::{LabKernel, MonitorStep, Nic, Outcome, Scenario, Vm};

mod nic;
use nic::{MAC, nic_modules};

mod common;
use common::assert_said;

/// A host-side service on 127.0.0.1: each line it gets is answered `lab-host got: LINE`
/// and passed on to the test. QEMU's guestfwd connects once, when it starts.
fn answering_listener() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else { return };
        let mut out = stream.try_clone().unwrap();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let _ = out.write_all(format!("lab-host got: {line}\n").as_bytes());
            let _ = tx.send(line);
        }
    });
    (port, rx)
}

/// Printed by the first kernel when the test should pull the NIC's cable (QEMU `set_link`).
const PULL_CABLE: &str = "LAB-PULL-THE-CABLE";

/// Loads the NIC's modules, writes the config, sets up, crashes. With `pull_cable`, QEMU
/// takes the NIC's link down after setup, before the crash.
fn run_crash(name: &str, network: &str, nic: Nic, failure_action: &str, pull_cable: bool) -> Outcome {
    run_crash_after(LabKernel::Bookworm, name, network, nic, failure_action, pull_cable, "")
}

/// [`run_crash`], running `before_crash` (shell) after setup.
fn run_crash_after(
    kernel: LabKernel,
    name: &str,
    network: &str,
    nic: Nic,
    failure_action: &str,
    pull_cable: bool,
    before_crash: &str,
) -> Outcome {
    let modules = nic_modules(kernel);
    let append = kdump_lab::LAB_CMDLINE;
    let insmod: String = modules.insmod.iter().map(|m| format!("insmod {m}\n")).collect();
    let unplug = if pull_cable {
        format!("exec 3</dev/ttyS1\necho {PULL_CABLE}\nread -r reply <&3\n[ \"$reply\" = done ]\n")
    } else {
        String::new()
    };
    let script = format!(
        r#"{insmod}ip link show > /results/links.txt
uuid=$(dd if=/dev/nvme0n1 bs=1 skip=1128 count=16 2>/dev/null | od -An -tx1 | tr -d ' \n')
mkdir -p /etc
cat > /etc/kdump.toml <<CONFIG
final_action = "poweroff"
failure_action = "{failure_action}"
[target]
device = "UUID=$uuid"
path = "/crash"
[capture]
kernel = "/lab/vmlinuz"
append = "{append}"
modules_dir = "/lab/modules"
[network]
interface = "{MAC}"
{network}
CONFIG
kdump setup | tee /results/setup.txt
cp /var/lib/kdump/initramfs.img /results/initramfs.img
sync
{before_crash}{unplug}kdump test --yes-crash-this-machine
"#
    );
    let mut scenario = Scenario::new(name, &script).capture_is_ours();
    if pull_cable {
        scenario = scenario.monitor(MonitorStep::new(PULL_CABLE, &["set_link n0 off"]));
    }
    for (path, data) in modules.files {
        scenario = scenario.file(&path, data, 0o644);
    }
    let vm = Vm {
        memory_mib: 512,
        crashkernel: Some("192M".into()),
        results_disk_mib: 256,
        nic: Some(nic),
        ..Vm::on(kernel)
    };
    let start = Instant::now();
    let outcome = scenario.vm(vm).run().expect("scenario");
    eprintln!("{name}: {:.1} s of VM time", start.elapsed().as_secs_f64());
    outcome
}

fn check_setup_included_the_nic_modules(outcome: &Outcome, kernel: LabKernel) {
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains(&format!("network: {MAC} is ")), "{setup}");
    // Built-in drivers have their sysfs module link too; modules.builtin tells them apart.
    assert!(setup.contains("driver modules: virtio_net, virtio_pci)"), "{setup}");
    let names = nic_modules(kernel).names;
    let listing = std::process::Command::new("cpio")
        .args(["-it", "--quiet", "-F"])
        .arg(outcome.result_path("initramfs.img"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(names.iter().any(|n| n == "failover"), "{names:?}");
    for m in names {
        assert!(listing.lines().any(|l| l.ends_with(&format!("-{m}.ko"))), "{m} not in the initramfs:\n{listing}");
    }
}

fn crash_dirs(outcome: &Outcome) -> usize {
    std::fs::read_dir(outcome.result_path("crash")).map(|d| d.count()).unwrap_or(0)
}

/// On the kernels whose package in the lab cache has its modules (sid's has only vmlinuz),
/// each under `KDUMP_LAB_MATRIX` like `kernel_matrix!`.
mod dhcp_in_the_capture_kernel_reaches_a_host_service_then_the_dump_is_saved {
    use super::*;

    #[test]
    fn bullseye() {
        if kdump_lab::in_matrix(LabKernel::Bullseye) {
            dhcp_cycle(LabKernel::Bullseye);
        }
    }

    #[test]
    fn bookworm() {
        if kdump_lab::in_matrix(LabKernel::Bookworm) {
            dhcp_cycle(LabKernel::Bookworm);
        }
    }

    #[test]
    fn trixie() {
        if kdump_lab::in_matrix(LabKernel::Trixie) {
            dhcp_cycle(LabKernel::Trixie);
        }
    }
}

fn dhcp_cycle(kernel: LabKernel) {
    let (port, lines) = answering_listener();
    let nic = Nic {
        mac: MAC.into(),
        forwards: vec![("10.0.2.100:2222".parse().unwrap(), port)],
        commands: Vec::new(),
        connected: true,
    };
    let network = "dhcp = true\nprobe = \"10.0.2.100:2222\"";
    let outcome = run_crash_after(kernel, &format!("network-dhcp-{kernel}"), network, nic, "save-log", false, "");
    check_setup_included_the_nic_modules(&outcome, kernel);
    let console = &outcome.console;
    assert_said(
        console,
        &[
            &format!("kdump-init: network: {MAC} is "),
            "kdump-init: network: link ",
            "kdump-init: network: carrier on ",
            "kdump-init: network: DHCP: offer of 10.0.2.15/24 from 10.0.2.2",
            "kdump-init: network: address 10.0.2.15/24 on ",
            "(DHCP from 10.0.2.2 after ",
            // QEMU's DHCP server names no router on a restricted network.
            "kdump-init: network: no gateway given: only 10.0.2.0/24 is reachable",
            "kdump-init: network: probe 10.0.2.100:2222 reachable, answered \"lab-host got: kdump capture kernel 10.0.2.15 probing\"",
            "kdump-init: done; final_action = poweroff",
        ],
    );
    let got: Vec<String> = lines.try_iter().collect();
    assert_eq!(got, ["kdump capture kernel 10.0.2.15 probing"], "what the host service received");
    assert_eq!(crash_dirs(&outcome), 1, "the dump was saved after the network came up");
}

#[test]
fn a_static_address_and_gateway_in_the_capture_kernel_reach_a_host_service() {
    let (port, lines) = answering_listener();
    let nic = Nic {
        mac: MAC.into(),
        forwards: vec![("10.0.2.100:2222".parse().unwrap(), port)],
        commands: Vec::new(),
        connected: true,
    };
    let network = "address = \"10.0.2.42/24\"\ngateway = \"10.0.2.2\"\nprobe = \"10.0.2.100:2222\"";
    // The first kernel checks the same network from its side with a static address of its own.
    let check = "ip addr add 10.0.2.43/24 dev eth0\nip link set eth0 up\nsleep 1\n\
                 kdump check-network | tee /results/check-network.txt\nip link set eth0 down\nip addr flush dev eth0\n";
    let outcome = run_crash_after(LabKernel::Bookworm, "network-static", network, nic, "save-log", false, check);
    let checked = outcome.read_result("check-network.txt").unwrap();
    for line in [
        &format!("{MAC}  carrier  driver modules: virtio_net, virtio_pci"),
        &format!("network.interface {MAC}: eth0"),
        "network: 10.0.2.42/24 via 10.0.2.2 (the capture kernel waits up to 15 s for a carrier)",
        "probe 10.0.2.100:2222: reachable, answered \"lab-host got: kdump check-network probing\"",
    ] {
        assert!(checked.contains(line), "kdump check-network lacks {line:?}:\n{checked}");
    }
    let console = &outcome.console;
    assert_said(
        console,
        &[
            "kdump-init: network: address 10.0.2.42/24 on ",
            "(static)",
            "kdump-init: network: route default via 10.0.2.2 dev ",
            "answered \"lab-host got: kdump capture kernel 10.0.2.42 probing\"",
            "kdump-init: done; final_action = poweroff",
        ],
    );
    assert!(!console.contains("DHCP"), "no DHCP with a static address");
    assert_eq!(
        lines.try_iter().collect::<Vec<_>>(),
        ["kdump check-network probing", "kdump capture kernel 10.0.2.42 probing"]
    );
}

#[test]
fn dhcp_without_an_answer_gives_up_in_time_and_runs_failure_action() {
    // A NIC with no backend: carrier, but no DHCP server (nor anything else) answers.
    let nic = Nic { mac: MAC.into(), forwards: Vec::new(), commands: Vec::new(), connected: false };
    let outcome = run_crash("network-no-answer", "dhcp = true\ndhcp_wait_seconds = 6", nic, "poweroff", false);
    check_setup_included_the_nic_modules(&outcome, LabKernel::Bookworm);
    let console = &outcome.console;
    assert_said(
        console,
        &[
            "kdump-init: network: carrier on ",
            "kdump-init: network: DHCP on ",
            "kdump-init: FAILED: network: DHCP on ",
            "no DHCP lease within 6 s",
            "kdump-init: failure_action = poweroff: poweroff now",
        ],
    );
    // Bounded: the failure comes about 6 s after the DHCP wait began.
    let time_of = |needle: &str| -> f64 {
        let line = console.lines().find(|l| l.contains(needle)).unwrap();
        let at = line.find("] kdump-init").unwrap();
        let open = line[..at].rfind('[').unwrap();
        line[open + 1..at].trim().parse().unwrap()
    };
    let waited = time_of("kdump-init: FAILED: network") - time_of("kdump-init: network: DHCP on ");
    assert!((5.5..9.0).contains(&waited), "waited {waited} s");
    assert_eq!(crash_dirs(&outcome), 0, "nothing saved");
}

#[test]
fn a_pulled_cable_gives_up_after_the_carrier_wait_and_runs_failure_action() {
    let (port, lines) = answering_listener();
    let nic = Nic {
        mac: MAC.into(),
        forwards: vec![("10.0.2.100:2222".parse().unwrap(), port)],
        commands: Vec::new(),
        connected: true,
    };
    let network = "dhcp = true\ncarrier_wait_seconds = 4\nprobe = \"10.0.2.100:2222\"";
    let outcome = run_crash("network-no-carrier", network, nic, "poweroff", true);
    let console = &outcome.console;
    assert_said(
        console,
        &[
            "kdump-init: network: link ",
            "waiting up to 4 s for a carrier",
            "kdump-init: FAILED: network: no carrier on ",
            "within 4 s",
            "kdump-init: failure_action = poweroff: poweroff now",
        ],
    );
    assert!(!console.contains("network: DHCP"), "no DHCP without a carrier");
    assert_eq!(lines.try_iter().count(), 0, "nothing reached the host");
    assert_eq!(crash_dirs(&outcome), 0, "nothing saved");
}
