//! Lab tests of the capture kernel's network ([network] in /etc/kdump.toml).
//!
//! The guest has a virtio NIC on QEMU's user network with `restrict=on`: it reaches
//! QEMU's DHCP server and one `guestfwd` address, 10.0.2.100:2222, which QEMU connects
//! to a listener this test runs on 127.0.0.1. Nothing else is reachable, ever.
//!
//! virtio_net and virtio_pci are modules in Debian's cloud kernel: the first kernel loads
//! them (from the kernel package, with a modules.dep made from their `depends=`), and
//! `kdump setup` must find the NIC by its MAC and put its driver modules, with their
//! dependencies, into the capture initramfs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use kdump_lab::{LabKernel, MonitorStep, Nic, Outcome, Scenario, Vm};

const MAC: &str = "52:54:00:6b:64:01";
/// The NIC's driver and its bus's (virtio_pci is a module up to Debian's 6.1 cloud kernel,
/// built in since 6.12), with what they need.
const NIC_MODULES: &[&str] = &["virtio_net", "virtio_pci"];

fn modinfo(ko: &[u8], key: &str) -> Option<String> {
    let pat = format!("\0{key}=");
    let at = ko.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let end = ko[at..].iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&ko[at..at + end]).into_owned())
}

/// A module file under `dir`: `NAME.ko`, or compressed as Debian ships them since 6.12.
fn find_module(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find_module(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|f| {
            let f = f.to_string_lossy();
            f == format!("{name}.ko") || f == format!("{name}.ko.xz") || f == format!("{name}.ko.zst")
        }) {
            return Some(path);
        }
    }
    None
}

/// A module file's ELF bytes.
fn decompressed(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out).unwrap();
            out
        }
        Some("zst") => zstd::decode_all(raw.as_slice()).unwrap(),
        _ => raw,
    }
}

/// The kernel's modules directory, `[usr/]lib/modules/<release>` of the unpacked package
/// (`boot/vmlinuz-<release>`, or `usr/lib/modules/<release>/vmlinuz` in newer packages).
fn modules_dir(kernel: LabKernel) -> std::path::PathBuf {
    let image = kernel.image().unwrap();
    let file = image.file_name().unwrap().to_string_lossy().into_owned();
    let release = match file.strip_prefix("vmlinuz-") {
        Some(r) => r.to_string(),
        None => image.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned(),
    };
    let candidates: Vec<std::path::PathBuf> = image
        .ancestors()
        .flat_map(|a| [a.join("lib/modules").join(&release), a.join("usr/lib/modules").join(&release)])
        .collect();
    candidates
        .into_iter()
        .find(|d| d.join("kernel").is_dir())
        .unwrap_or_else(|| panic!("no modules directory for {}", image.display()))
}

/// The NIC's modules of `kernel`, resolved as depmod would from their `depends=`.
struct NicModules {
    /// Guest files: /lab/modules (the modules as shipped, modules.dep, modules.builtin) and
    /// /lab/insmod (the same modules decompressed, for busybox insmod in the first kernel).
    files: Vec<(String, Vec<u8>)>,
    /// The decompressed modules in load order (dependencies first).
    insmod: Vec<String>,
    /// Every module name resolved.
    names: Vec<String>,
}

fn nic_modules(kernel: LabKernel) -> NicModules {
    let base = modules_dir(kernel);
    let builtin_list = std::fs::read_to_string(base.join("modules.builtin")).unwrap();
    let builtin =
        |name: &str| builtin_list.lines().any(|l| l.rsplit('/').next().is_some_and(|f| f == format!("{name}.ko")));
    let mut found: BTreeMap<String, (String, Vec<String>, std::path::PathBuf)> = BTreeMap::new();
    let mut todo: Vec<String> = NIC_MODULES.iter().map(|s| s.to_string()).collect();
    while let Some(name) = todo.pop() {
        if found.contains_key(&name) || builtin(&name) {
            continue;
        }
        let path =
            find_module(&base.join("kernel"), &name).unwrap_or_else(|| panic!("{name}.ko not in {}", base.display()));
        let ko = decompressed(&path);
        let deps: Vec<String> = modinfo(&ko, "depends")
            .unwrap_or_default()
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| d.replace('-', "_"))
            .collect();
        todo.extend(deps.iter().cloned());
        let rel = path.strip_prefix(&base).unwrap().to_string_lossy().into_owned();
        found.insert(name, (rel, deps, path));
    }
    assert!(found["virtio_net"].1.contains(&"net_failover".to_string()), "virtio_net needs net_failover");
    fn visit(n: &str, found: &BTreeMap<String, (String, Vec<String>, std::path::PathBuf)>, order: &mut Vec<String>) {
        if order.iter().any(|o| o == n) {
            return;
        }
        for d in &found[n].1 {
            visit(d, found, order);
        }
        order.push(n.to_string());
    }
    let mut order: Vec<String> = Vec::new();
    for n in found.keys() {
        visit(n, &found, &mut order);
    }
    let dep: String = found
        .values()
        .map(|(rel, deps, _)| {
            let paths: Vec<&str> = deps.iter().map(|d| found[d].0.as_str()).collect();
            format!("{rel}: {}\n", paths.join(" "))
        })
        .collect();
    let mut files = vec![
        ("lab/modules/modules.dep".to_string(), dep.into_bytes()),
        ("lab/modules/modules.builtin".to_string(), std::fs::read(base.join("modules.builtin")).unwrap()),
    ];
    for (name, (rel, _, path)) in &found {
        files.push((format!("lab/modules/{rel}"), std::fs::read(path).unwrap()));
        files.push((format!("lab/insmod/{name}.ko"), decompressed(path)));
    }
    NicModules {
        files,
        insmod: order.iter().map(|n| format!("/lab/insmod/{n}.ko")).collect(),
        names: found.into_keys().collect(),
    }
}

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
    let nic = Nic { mac: MAC.into(), forwards: vec![("10.0.2.100:2222".parse().unwrap(), port)], connected: true };
    let network = "dhcp = true\nprobe = \"10.0.2.100:2222\"";
    let outcome = run_crash_after(kernel, &format!("network-dhcp-{kernel}"), network, nic, "save-log", false, "");
    check_setup_included_the_nic_modules(&outcome, kernel);
    let console = &outcome.console;
    for step in [
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
    ] {
        assert!(console.contains(step), "the console lacks {step:?}:\n{console}");
    }
    let got: Vec<String> = lines.try_iter().collect();
    assert_eq!(got, ["kdump capture kernel 10.0.2.15 probing"], "what the host service received");
    assert_eq!(crash_dirs(&outcome), 1, "the dump was saved after the network came up");
}

#[test]
fn a_static_address_and_gateway_in_the_capture_kernel_reach_a_host_service() {
    let (port, lines) = answering_listener();
    let nic = Nic { mac: MAC.into(), forwards: vec![("10.0.2.100:2222".parse().unwrap(), port)], connected: true };
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
    for step in [
        "kdump-init: network: address 10.0.2.42/24 on ",
        "(static)",
        "kdump-init: network: route default via 10.0.2.2 dev ",
        "answered \"lab-host got: kdump capture kernel 10.0.2.42 probing\"",
        "kdump-init: done; final_action = poweroff",
    ] {
        assert!(console.contains(step), "the console lacks {step:?}:\n{console}");
    }
    assert!(!console.contains("DHCP"), "no DHCP with a static address");
    assert_eq!(
        lines.try_iter().collect::<Vec<_>>(),
        ["kdump check-network probing", "kdump capture kernel 10.0.2.42 probing"]
    );
}

#[test]
fn dhcp_without_an_answer_gives_up_in_time_and_runs_failure_action() {
    // A NIC with no backend: carrier, but no DHCP server (nor anything else) answers.
    let nic = Nic { mac: MAC.into(), forwards: Vec::new(), connected: false };
    let outcome = run_crash("network-no-answer", "dhcp = true\ndhcp_wait_seconds = 6", nic, "poweroff", false);
    check_setup_included_the_nic_modules(&outcome, LabKernel::Bookworm);
    let console = &outcome.console;
    for step in [
        "kdump-init: network: carrier on ",
        "kdump-init: network: DHCP on ",
        "kdump-init: FAILED: network: DHCP on ",
        "no DHCP lease within 6 s",
        "kdump-init: failure_action = poweroff: poweroff now",
    ] {
        assert!(console.contains(step), "the console lacks {step:?}:\n{console}");
    }
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
    let nic = Nic { mac: MAC.into(), forwards: vec![("10.0.2.100:2222".parse().unwrap(), port)], connected: true };
    let network = "dhcp = true\ncarrier_wait_seconds = 4\nprobe = \"10.0.2.100:2222\"";
    let outcome = run_crash("network-no-carrier", network, nic, "poweroff", true);
    let console = &outcome.console;
    for step in [
        "kdump-init: network: link ",
        "waiting up to 4 s for a carrier",
        "kdump-init: FAILED: network: no carrier on ",
        "within 4 s",
        "kdump-init: failure_action = poweroff: poweroff now",
    ] {
        assert!(console.contains(step), "the console lacks {step:?}:\n{console}");
    }
    assert!(!console.contains("network: DHCP"), "no DHCP without a carrier");
    assert_eq!(lines.try_iter().count(), 0, "nothing reached the host");
    assert_eq!(crash_dirs(&outcome), 0, "nothing saved");
}
