//! Lab tests of the ssh target (`target.url = "ssh://…"`): the whole cycle against OpenSSH's
//! sshd (Debian's openssh-server, installed by scripts/deps.sh).
//!
//! The host runs an sshd of its own on 127.0.0.1 (its own config, host key and authorized
//! key, in a temporary directory). The guest's NIC is on QEMU's user network with
//! `restrict=on` and one `guestfwd`, 10.0.2.100:22, which QEMU connects to a relay on
//! 127.0.0.1 when it starts: the relay connects on to sshd only when the guest's first bytes
//! arrive (sshd would otherwise greet, and time out, long before the capture kernel is up),
//! and can cut the connection after some bytes, as a server that dies mid-transfer. Nothing
//! but 127.0.0.1 is ever reached.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kdump_lab::{LabKernel, Nic, Outcome, Scenario, Vm, static_tools};

mod nic;
use nic::{MAC, nic_modules};

mod common;
use common::{assert_said, run};

const SSHD: &str = "/usr/sbin/sshd";
/// What the guest connects to.
const SERVER: &str = "10.0.2.100";

fn whoami() -> String {
    String::from_utf8(run(Command::new("id").arg("-un"))).unwrap().trim().to_string()
}

/// An ed25519 key pair made by ssh-keygen (an oracle independent of our key code).
fn keygen(path: &Path) -> (String, String) {
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "lab", "-f"]).arg(path));
    let private = std::fs::read_to_string(path).unwrap();
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (private, public.trim().to_string())
}

/// The host's sshd: listens on 127.0.0.1 only; dumps go to `dir/dumps`.
struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// `ssh-ed25519 BASE64 COMMENT` of its host key.
    host_public: String,
    /// The guest's key (authorized).
    user_private: String,
}

impl Sshd {
    fn start(name: &str) -> Sshd {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: run scripts/deps.sh (Debian package openssh-server)");
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = std::env::temp_dir().join(format!("kdump-lab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("dumps")).unwrap();
        let (_, host_public) = keygen(&dir.join("host_ed25519"));
        let (user_private, user_public) = keygen(&dir.join("user_ed25519"));
        std::fs::write(dir.join("authorized_keys"), format!("{user_public}\n")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nPidFile none\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\nLoginGraceTime 0\n"
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "sshd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { child, port, dir, host_public, user_private }
    }

    fn dumps(&self) -> PathBuf {
        self.dir.join("dumps")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The known_hosts line the guest's config pins: the url names the address, port 22.
    fn known_hosts_line(&self) -> String {
        let b64 = self.host_public.split_whitespace().nth(1).unwrap();
        format!("{SERVER} ssh-ed25519 {b64}\n")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Our sshd only (its per-connection children end with their connection).
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A relay on 127.0.0.1 for QEMU's guestfwd: it connects to sshd when the guest's first
/// bytes come, then copies both ways; with `cut_after`, it closes both sides once that many
/// bytes went from the guest to the server. Returns its port and the bytes relayed upward.
fn relay(sshd_port: u16, cut_after: Option<u64>) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = Arc::new(AtomicU64::new(0));
    let counted = up.clone();
    std::thread::spawn(move || {
        let Ok((mut guest, _)) = listener.accept() else { return };
        let mut buf = vec![0u8; 64 * 1024];
        // QEMU's one connection: wait for the guest's first bytes.
        let n = match guest.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Ok(mut server) = TcpStream::connect(("127.0.0.1", sshd_port)) else { return };
        let (mut g2, mut s2) = (guest.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut g2);
            let _ = g2.shutdown(Shutdown::Write);
        });
        let mut total = n as u64;
        if server.write_all(&buf[..n]).is_err() {
            return;
        }
        loop {
            let n = match guest.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            total += n as u64;
            counted.store(total, Ordering::Relaxed);
            if cut_after.is_some_and(|c| total >= c) {
                break;
            }
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(Shutdown::Both);
        let _ = guest.shutdown(Shutdown::Both);
    });
    (port, up)
}

/// Loads the NIC's modules, writes the config with the ssh target, sets up, crashes.
/// `host`: what the url names, [`SERVER`] or a name (then `target.address` is `SERVER`).
fn ssh_crash(name: &str, sshd: &Sshd, host: &str, known_hosts: &str, relay_port: u16, failure_action: &str) -> Outcome {
    let nic = Nic {
        mac: MAC.into(),
        forwards: vec![(format!("{SERVER}:22").parse().unwrap(), relay_port)],
        commands: Vec::new(),
        connected: true,
    };
    ssh_crash_with(LabKernel::Bookworm, name, sshd, host, known_hosts, nic, failure_action, "")
}

/// [`ssh_crash`] with the NIC given and `extra` TOML after `[target]` (`[[fallback]]` or `[dump]` tables).
#[allow(clippy::too_many_arguments)]
fn ssh_crash_with(
    kernel: LabKernel,
    name: &str,
    sshd: &Sshd,
    host: &str,
    known_hosts: &str,
    nic: Nic,
    failure_action: &str,
    extra: &str,
) -> Outcome {
    let modules = nic_modules(kernel);
    let append = kdump_lab::LAB_CMDLINE;
    let insmod: String = modules.insmod.iter().map(|m| format!("insmod {m}\n")).collect();
    let url = format!("ssh://{}@{host}{}/crash", whoami(), sshd.dumps().display());
    let address = if host == SERVER { String::new() } else { SERVER.to_string() };
    let script = format!(
        r#"{insmod}mkdir -p /etc
cat > /etc/kdump.toml <<CONFIG
final_action = "poweroff"
failure_action = "{failure_action}"
[target]
url = "{url}"
address = "{address}"
ssh_key = "/lab/ssh/id_ed25519"
known_hosts = "/lab/ssh/known_hosts"
{extra}[capture]
kernel = "/lab/vmlinuz"
append = "{append}"
modules_dir = "/lab/modules"
[network]
interface = "{MAC}"
dhcp = true
CONFIG
kdump setup | tee /results/setup.txt
cp /var/lib/kdump/initramfs.img /results/initramfs.img
sync
kdump test --yes-crash-this-machine
"#
    );
    let mut scenario = Scenario::new(name, &script)
        .capture_is_ours()
        .file("lab/ssh/id_ed25519", sshd.user_private.clone(), 0o600)
        .file("lab/ssh/known_hosts", known_hosts.to_string(), 0o644);
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

/// Every entry of the server's crash base directory.
fn crash_entries(sshd: &Sshd) -> Vec<PathBuf> {
    match std::fs::read_dir(sshd.dumps().join("crash")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn check_setup(outcome: &Outcome) {
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains("target: ssh://") && setup.contains("host key pinned in /lab/ssh/known_hosts"), "{setup}");
    // The first kernel has no address on the NIC: the server cannot be reached from it now.
    assert!(setup.contains("target: WARNING: cannot reach the server from here now"), "{setup}");
    assert!(setup.contains("capture kernel loaded"), "{setup}");
    let listing = run(Command::new("cpio").args(["-itv", "--quiet", "-F"]).arg(outcome.result_path("initramfs.img")));
    let listing = String::from_utf8_lossy(&listing);
    for f in ["etc/kdump-ssh-key", "etc/kdump-known-hosts"] {
        let line = listing.lines().find(|l| l.ends_with(f)).unwrap_or_else(|| panic!("{f} not in:\n{listing}"));
        assert!(line.starts_with("-rw-------"), "{f} is 0600: {line}");
    }
}

/// On the kernels whose package in the lab cache has its modules (sid's has only vmlinuz; the
/// NIC driver is a module), each under `KDUMP_LAB_MATRIX` like `kernel_matrix!`.
mod the_capture_kernel_saves_a_complete_crash_directory_over_ssh {
    use super::*;

    #[test]
    fn bullseye() {
        if kdump_lab::in_matrix(LabKernel::Bullseye) {
            ssh_cycle(LabKernel::Bullseye);
        }
    }

    #[test]
    fn bookworm() {
        if kdump_lab::in_matrix(LabKernel::Bookworm) {
            ssh_cycle(LabKernel::Bookworm);
        }
    }

    #[test]
    fn trixie() {
        if kdump_lab::in_matrix(LabKernel::Trixie) {
            ssh_cycle(LabKernel::Trixie);
        }
    }
}

fn ssh_cycle(kernel: LabKernel) {
    let name = format!("ssh-happy-{kernel}");
    let sshd = Sshd::start(&name);
    let (port, _) = relay(sshd.port, None);
    let nic = Nic {
        mac: MAC.into(),
        forwards: vec![(format!("{SERVER}:22").parse().unwrap(), port)],
        commands: Vec::new(),
        connected: true,
    };
    let outcome = ssh_crash_with(kernel, &name, &sshd, SERVER, &sshd.known_hosts_line(), nic, "poweroff", "");
    check_setup(&outcome);
    let console = &outcome.console;
    for step in [
        "kdump-init: network: DHCP: offer of 10.0.2.15/24",
        "kdump-init: saving over ssh into ssh://",
        "kdump-init: ssh: logged in as ",
        "kdump-init: saved the kernel log to dmesg.txt",
        "kdump-init: saved the crash report to info.json",
        "kdump-init: ssh: sent vmcore, ",
        "synced on the server",
        "kdump-init: saved the dump to 10.0.2.100:",
        "kdump-init: done; final_action = poweroff",
    ] {
        assert!(console.contains(step), "the console lacks {step:?}:\n{console}\nsshd:\n{}", sshd.log());
    }
    let entries = crash_entries(&sshd);
    assert_eq!(entries.len(), 1, "one crash directory: {entries:?}");
    let dir = &entries[0];
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("localhost-20") && !name.ends_with(".incomplete"), "{name}");
    let mut files: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["dmesg.txt", "info.json", "kdump.log", "vmcore"]);
    let log = std::fs::read_to_string(dir.join("kdump.log")).unwrap();
    assert!(log.contains("ssh: sent vmcore") && log.contains("network: "), "kdump.log: {log}");

    // The dump is complete and readable: our tools and makedumpfile agree with dmesg.txt.
    let vmcore = dir.join("vmcore");
    let kdump = static_tools().unwrap().kdump;
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&vmcore))).unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert_eq!(info["format"]["dump_level"], 31);
    assert_eq!(info["panic"], "sysrq triggered crash", "{info:#}");
    let ours = run(Command::new(&kdump).arg("dmesg").arg(&vmcore));
    assert_eq!(ours, std::fs::read(dir.join("dmesg.txt")).unwrap(), "dmesg.txt is the dump's log");
    let theirs_path = outcome.run_dir.join("makedumpfile-dmesg.txt");
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&vmcore).arg(&theirs_path));
    assert!(ours == std::fs::read(&theirs_path).unwrap(), "kdump dmesg and makedumpfile --dump-dmesg differ");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("info.json")).unwrap()).unwrap();
    assert_eq!(saved["panic"], "sysrq triggered crash", "info.json: {saved:#}");
}

#[test]
fn a_wrong_host_key_is_refused_and_failure_action_runs_with_nothing_on_the_server() {
    let sshd = Sshd::start("ssh-wrong-key");
    let (port, _) = relay(sshd.port, None);
    // Another server's key.
    let (_, impostor) = keygen(&sshd.dir.join("other_ed25519"));
    let b64 = impostor.split_whitespace().nth(1).unwrap();
    // The url names the server (the capture kernel connects to target.address): the host key
    // is looked up under the name, where another server's key is pinned.
    let known_hosts = format!("dumphost ssh-ed25519 {b64}\n");
    let outcome = ssh_crash("ssh-wrong-key", &sshd, "dumphost", &known_hosts, port, "poweroff");
    let console = &outcome.console;
    assert_said(
        console,
        &[
            "kdump-init: ssh: connecting to 10.0.2.100:22 (dumphost as ",
            "kdump-init: FAILED: HOST KEY MISMATCH for dumphost",
            "kdump-init: failure_action = poweroff: poweroff now",
        ],
    );
    assert!(!console.contains("ssh: logged in"), "{console}");
    assert!(crash_entries(&sshd).is_empty(), "nothing was written: {:?}", crash_entries(&sshd));
}

#[test]
fn a_connection_lost_mid_transfer_leaves_only_an_incomplete_directory() {
    let sshd = Sshd::start("ssh-cut");
    // dmesg.txt and info.json pass (well under 1 MiB); the dump does not.
    let (port, up) = relay(sshd.port, Some(3 << 20));
    let outcome = ssh_crash("ssh-cut", &sshd, SERVER, &sshd.known_hosts_line(), port, "poweroff");
    let console = &outcome.console;
    assert!(up.load(Ordering::Relaxed) >= 3 << 20, "the relay cut the connection");
    assert_said(
        console,
        &[
            "kdump-init: saved the crash report to info.json",
            "kdump-init: FAILED: ",
            "(still named .incomplete: not a complete dump)",
            "kdump-init: failure_action = poweroff: poweroff now",
        ],
    );
    // QEMU's user network does not close the guest's side when the host's goes: the client
    // notices the silence after its 30 s timeout, and reports it once.
    let failed = console.lines().find(|l| l.contains("kdump-init: FAILED: ")).unwrap();
    assert!(failed.contains("lost writing ") && failed.contains("no answer within the timeout"), "{failed}");
    assert_eq!(failed.matches("no answer within the timeout").count(), 1, "said once: {failed}");
    let time_of = |needle: &str| -> f64 {
        let line = console.lines().find(|l| l.contains(needle)).unwrap();
        let at = line.find("] kdump-init").unwrap();
        line[line[..at].rfind('[').unwrap() + 1..at].trim().parse().unwrap()
    };
    let waited = time_of("kdump-init: FAILED: ") - time_of("kdump-init: saved the crash report");
    assert!(waited < 45.0, "bounded by the 30 s timeout: {waited} s");
    let entries = crash_entries(&sshd);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".incomplete"), "nothing looks complete: {name}");
    assert!(entries[0].join("dmesg.txt").is_file() && entries[0].join("info.json").is_file());
}

#[test]
fn a_server_that_does_not_answer_falls_back_to_the_local_disk() {
    let sshd = Sshd::start("ssh-fallback");
    // Each guest connection gets a relay to a port where nothing listens: refused at once.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let relay = format!("{} relay 127.0.0.1:{closed}", env!("CARGO_BIN_EXE_kdump-lab"));
    let nic = Nic {
        mac: MAC.into(),
        forwards: Vec::new(),
        commands: vec![(format!("{SERVER}:22").parse().unwrap(), relay)],
        connected: true,
    };
    let fallback = "[[fallback]]\ndevice = \"/dev/nvme0n1\"\npath = \"/crash\"\n";
    let outcome = ssh_crash_with(
        LabKernel::Bookworm,
        "ssh-fallback",
        &sshd,
        SERVER,
        &sshd.known_hosts_line(),
        nic,
        "halt",
        fallback,
    );
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains("target: /dev/nvme0n1 is /dev/nvme0n1 (ext4"), "the fallback disk is set up too: {setup}");
    assert!(setup.contains("dumps go to ssh://") && setup.contains(", else /dev/nvme0n1:/crash"), "{setup}");
    let console = &outcome.console;
    assert_said(
        console,
        &[
            "kdump-init: ssh: attempt 1 of 5 failed: ",
            "kdump-init: the target failed: ",
            "trying the next one",
            "kdump-init: trying fallback 1 of 1: /dev/nvme0n1",
            "kdump-init: saved the dump to /crash/",
            "kdump-init: done; final_action = poweroff",
        ],
    );
    assert!(crash_entries(&sshd).is_empty(), "nothing on the server");
    let base = outcome.result_path("crash");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&base).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].join("vmcore").is_file() && dirs[0].join("dmesg.txt").is_file());
    let log = std::fs::read_to_string(dirs[0].join("kdump.log")).unwrap();
    assert!(log.contains("ssh: attempt 4 of 5 failed") && log.contains("trying fallback 1 of 1"), "kdump.log: {log}");
    let kdump = static_tools().unwrap().kdump;
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(dirs[0].join("vmcore"))))
            .unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert_eq!(info["panic"], "sysrq triggered crash", "{info:#}");
}

/// A gate on 127.0.0.1 for `kdump-lab relay` (one process per guest connection): the first
/// connection is cut once `cut_after` bytes went up, as a link that drops; the later ones pass.
fn gate_cutting_the_first(sshd_port: u16, cut_after: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, guest) in listener.incoming().enumerate() {
            let Ok(mut guest) = guest else { continue };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", sshd_port)) else { continue };
            let (mut g2, mut s2) = (guest.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut g2);
                let _ = g2.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0u64;
                loop {
                    let k = match guest.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => k,
                    };
                    total += k as u64;
                    if n == 0 && total >= cut_after {
                        break;
                    }
                    if server.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
                let _ = server.shutdown(Shutdown::Both);
                let _ = guest.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn retry_stricter_sends_level_31_again_after_the_connection_dropped_mid_transfer() {
    let sshd = Sshd::start("ssh-retry");
    let gate = gate_cutting_the_first(sshd.port, 3 << 20);
    let relay = format!("{} relay 127.0.0.1:{gate}", env!("CARGO_BIN_EXE_kdump-lab"));
    let nic = Nic {
        mac: MAC.into(),
        forwards: Vec::new(),
        commands: vec![(format!("{SERVER}:22").parse().unwrap(), relay)],
        connected: true,
    };
    let known_hosts = sshd.known_hosts_line();
    let extra = "[dump]\nlevel = 1\n";
    let outcome =
        ssh_crash_with(LabKernel::Bookworm, "ssh-retry", &sshd, SERVER, &known_hosts, nic, "retry-stricter", extra);
    let console = &outcome.console;
    assert_said(
        console,
        &[
            "kdump-init: kdump dump -d 1 -l ",
            "kdump-init: the dump failed: ",
            "kdump-init: failure_action = retry-stricter: retrying at dump level 31",
            "kdump-init: ssh: sent vmcore, ",
            "dump level 31, codec lzo)",
            "kdump-init: done; final_action = poweroff",
        ],
    );
    let mut names: Vec<String> =
        crash_entries(&sshd).iter().map(|e| e.file_name().unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with(".1") && names[1].ends_with(".incomplete"), "the first stays incomplete: {names:?}");
    let vmcore = sshd.dumps().join("crash").join(&names[0]).join("vmcore");
    let kdump = static_tools().unwrap().kdump;
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&vmcore))).unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert_eq!(info["format"]["dump_level"], 31);
    assert_eq!(info["panic"], "sysrq triggered crash");
}
