//! Lab tests of the NFS target (`target.url = "nfs://…"`): the capture kernel mounts an export
//! of a real NFS server, NFS-Ganesha (user space, `kdump_lab::ganesha`), on 127.0.0.1, with its
//! own kernel's NFS client (modules that `kdump setup` puts in the initramfs), and writes the
//! crash directory there as on a local disk.
//!
//! The guest's NIC is on QEMU's user network with `restrict=on`; a `guestfwd` in its
//! per-connection form maps 10.0.2.100:2049 to a `kdump-lab relay 127.0.0.1:PORT` process for
//! each connection. Nothing but 127.0.0.1 is ever reached.

use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_lab::ganesha::{self, Ganesha};
use kdump_lab::{LabKernel, Outcome, Scenario, Vm, static_tools};

mod nic;
use nic::{NIC_MODULES, modules_with, relay_command, relays_nic};

mod common;
use common::{assert_said, run};

/// What the guest connects to, and the export's name there.
const SERVER: &str = "10.0.2.100:2049";
const URL: &str = "nfs://10.0.2.100/crash";

/// How the guest reaches the export.
struct Export<'a> {
    /// `target.url` and any more `[target]` keys.
    target: String,
    /// The NFS client's modules.
    client: &'a [&'a str],
    /// Guest-side server addresses, each with its relay command.
    relays: Vec<(&'a str, String)>,
}

impl Export<'_> {
    /// NFSv4 (the default version) at 10.0.2.100:2049, relayed to `port` of 127.0.0.1.
    fn v4(port: u16) -> Self {
        Export {
            target: format!("url = \"{URL}\""),
            client: &["nfs", "nfsv4"],
            relays: vec![(SERVER, relay_command("", port))],
        }
    }
}

/// Loads the NIC's and the NFS client's modules, gives the first kernel an address (so
/// `kdump check-target` and `kdump setup` can mount the export), runs both, and crashes. No
/// `[network]` in the config: setup takes the first kernel's route (static 10.0.2.15/24).
fn nfs_crash(kernel: LabKernel, name: &str, export: Export<'_>, failure_action: &str) -> Outcome {
    let roots: Vec<&str> = NIC_MODULES.iter().copied().chain(export.client.iter().copied()).collect();
    let modules = modules_with(kernel, &roots);
    let append = kdump_lab::LAB_CMDLINE;
    let up = modules.static_address_lines();
    let script = format!(
        r#"{up}mkdir -p /etc
cat > /etc/kdump.toml <<CONFIG
final_action = "poweroff"
failure_action = "{failure_action}"
[target]
{target}
wait_seconds = 10
[capture]
kernel = "/lab/vmlinuz"
append = "{append}"
modules_dir = "/lab/modules"
CONFIG
if kdump check-target > /results/check.txt 2>&1; then echo "exit 0"; else echo "exit 1"; fi >> /results/check.txt
kdump setup | tee /results/setup.txt
ip addr flush dev $IF
sync
kdump test --yes-crash-this-machine
"#,
        target = export.target
    );
    let scenario = Scenario::new(name, &script).capture_is_ours();
    let scenario = modules.into_guest(scenario);
    let nic = relays_nic(&export.relays);
    let vm = Vm { memory_mib: 768, crashkernel: Some("192M".into()), nic: Some(nic), ..Vm::on(kernel) };
    scenario.vm(vm).run().expect("scenario")
}

/// The crash directories in the export.
fn crash_dirs(export: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(export).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

fn nfs_cycle(kernel: LabKernel) {
    // The server's directory (export, log) stays next to the run's, for a look after a failure.
    let server = Ganesha::start(&kdump_lab::runs_dir().join(format!("nfs-{kernel}-server")), "/crash")
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = nfs_crash(kernel, &format!("nfs-{kernel}"), Export::v4(server.port()), "poweroff");

    // From the running machine: check-target mounts, writes and unmounts; setup does it too
    // and puts the NFS client's modules in the initramfs.
    let check = outcome.read_result("check.txt").unwrap();
    assert!(check.contains("ok          mounted 10.0.2.100:/crash (vers=4.1,addr=10.0.2.100,port=2049"), "{check}");
    assert!(check.contains("ok          writable") && check.ends_with("exit 0\n"), "{check}");
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains("target: check-target passed (export mounted and writable)"), "{setup}");
    let modules = setup.lines().map(str::trim_start).find(|l| l.starts_with("modules:")).unwrap_or_default();
    for m in ["nfs", "nfsv4", "sunrpc", "virtio_net"] {
        assert!(modules.split([' ', ',']).any(|w| w == m), "{m} in the initramfs: {modules}");
    }

    let console = &outcome.console;
    assert_said(
        console,
        &[
            "kdump-init: network: address 10.0.2.15/24 on ",
            &format!("kdump-init: mounting {URL} (NFSv4.1, soft, timeo 10 s, 3 retries)"),
            &format!("kdump-init: mounted {URL} (vers=4.1,addr=10.0.2.100,port=2049,proto=tcp,soft"),
            &format!("kdump-init: saving into {URL}/"),
            &format!("kdump-init: saved the dump to {URL}/"),
            "kdump-init: done; final_action = poweroff",
        ],
    );

    check_crash_dir(&server, &outcome);
}

/// The export holds one complete crash directory; every tool reads the dump.
fn check_crash_dir(server: &Ganesha, outcome: &Outcome) {
    let dirs = crash_dirs(server.export());
    let [dir] = &dirs[..] else { panic!("one crash directory: {dirs:?}\n{}", server.log_text()) };
    assert!(!dir.to_string_lossy().ends_with(".incomplete"));
    let mut files: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["dmesg.txt", "info.json", "kdump.log", "vmcore"], "no vmcore.incomplete left");
    let vmcore = dir.join("vmcore");
    let kdump = static_tools().unwrap().kdump;
    let ours = run(Command::new(&kdump).arg("dmesg").arg(&vmcore));
    assert_eq!(String::from_utf8_lossy(&ours), std::fs::read_to_string(dir.join("dmesg.txt")).unwrap());
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&vmcore))).unwrap();
    assert!(info["panic"].as_str().is_some_and(|p| p.contains("sysrq")), "{info:#}");
    let theirs = outcome.run_dir.join("nfs.makedumpfile-dmesg");
    let _ = std::fs::remove_file(&theirs);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&vmcore).arg(&theirs));
    let log = std::fs::read_to_string(dir.join("kdump.log")).unwrap();
    assert!(log.contains("mounted nfs://") && log.contains("done; final_action = poweroff"), "{log}");
}

macro_rules! nfs_kernels {
    ($($name:ident: $kernel:expr;)*) => {$(
        #[test]
        fn $name() {
            if kdump_lab::in_matrix($kernel) {
                nfs_cycle($kernel);
            }
        }
    )*};
}

// Every kernel of the matrix.
nfs_kernels! {
    the_capture_kernel_writes_the_crash_directory_to_an_nfs_export_bullseye: LabKernel::Bullseye;
    the_capture_kernel_writes_the_crash_directory_to_an_nfs_export_bookworm: LabKernel::Bookworm;
    the_capture_kernel_writes_the_crash_directory_to_an_nfs_export_trixie: LabKernel::Trixie;
    the_capture_kernel_writes_the_crash_directory_to_an_nfs_export_sid: LabKernel::Sid;
}

#[test]
fn a_dead_nfs_server_is_given_up_on_in_bounded_time_and_failure_action_runs() {
    // Nothing listens behind the relay: every connection the guest opens is closed at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let outcome = nfs_crash(LabKernel::Bookworm, "nfs-dead", Export::v4(port), "poweroff");
    let check = outcome.read_result("check.txt").unwrap();
    assert!(
        check.contains("PROBLEM     the mount did not finish within 30 s") && check.ends_with("exit 1\n"),
        "{check}"
    );
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains("target: WARNING: the export cannot be used from here now"), "{setup}");
    assert!(setup.contains("capture kernel loaded"), "setup goes on: {setup}");
    let console = &outcome.console;
    assert_said(
        console,
        &[
            &format!("kdump-init: mounting {URL} (NFSv4.1"),
            &format!("kdump-init: FAILED: cannot mount {URL}: "),
            "kdump-init: failure_action = poweroff: poweroff now",
        ],
    );
    // Bounded: the wait (10 s) and the mount's own limit (30 s), not the kernel's retries.
    let failed = console.lines().find(|l| l.contains("kdump-init: FAILED: cannot mount")).unwrap();
    let at: f64 = failed.trim_start_matches('[').split(']').next().unwrap().trim().parse().unwrap();
    let mounting = console.lines().find(|l| l.contains("kdump-init: mounting")).unwrap();
    let from: f64 = mounting.trim_start_matches('[').split(']').next().unwrap().trim().parse().unwrap();
    assert!(at - from < 60.0, "gave up after {:.0} s: {failed}", at - from);
}

#[test]
fn nfsv3_with_an_explicit_mount_port_needs_no_rpcbind_lookup() {
    // Ganesha serves NFSv3 only registered with an rpcbind: it runs in namespaces of its own
    // with one; the guest still reaches only its NFS and MOUNT ports, and never port 111.
    let server =
        Ganesha::start_v3(&kdump_lab::runs_dir().join("nfs-v3-server"), "/crash").unwrap_or_else(|e| panic!("{e}"));
    // NFSv3 mounts the export by its path on the server.
    let url = format!("nfs://10.0.2.100{}", server.export().display());
    let prefix = server.relay_prefix();
    let export = Export {
        target: format!("url = \"{url}\"\nnfs_version = \"3\"\nmount_port = 20048"),
        client: &["nfs", "nfsv3"],
        relays: vec![
            (SERVER, relay_command(&prefix, ganesha::NFS_PORT)),
            ("10.0.2.100:20048", relay_command(&prefix, ganesha::MOUNT_PORT)),
        ],
    };
    let outcome = nfs_crash(LabKernel::Bookworm, "nfs-v3", export, "poweroff");
    let check = outcome.read_result("check.txt").unwrap();
    assert!(check.ends_with("exit 0\n"), "{check}");
    assert_said(
        &outcome.console,
        &[
            &format!("kdump-init: mounting {url} (NFSv3, soft"),
            "port=2049,proto=tcp,soft,timeo=100,retrans=3,sec=sys,nolock,mountproto=tcp,mountvers=3,mountport=20048,\
             mountaddr=10.0.2.100)",
            &format!("kdump-init: saved the dump to {url}/"),
            "kdump-init: done; final_action = poweroff",
        ],
    );
    check_crash_dir(&server, &outcome);
}
