//! Lab tests of the S3 target (`target.url = "s3://…"`): the capture kernel uploads the crash
//! to a real S3 server, SeaweedFS (`weed mini`, scripts/seaweedfs.sh), on 127.0.0.1.
//!
//! The guest's NIC is on QEMU's user network with `restrict=on`; one `guestfwd` in its
//! per-connection form maps 10.0.2.100:8333 to a `kdump-lab relay 127.0.0.1:GATE` process for
//! each connection the guest opens (HTTP opens several). The gate, in this test, passes each
//! connection on to SeaweedFS and counts the bytes going up; it can die after some bytes, as a
//! server stopped mid-upload: every connection cut, every later one closed at once. Nothing
//! but 127.0.0.1 is ever reached.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kdump_dumpfile::{KdumpReader, PageState, PhysMem};
use kdump_lab::{LabKernel, Outcome, Scenario, Vm, static_tools};
use kdump_s3::testserver::SeaweedFs;

mod nic;
use nic::{MAC, nic_modules, relayed_nic};

mod common;
use common::{assert_said, run};

/// What the guest connects to.
const SERVER: &str = "10.0.2.100:8333";
const BUCKET: &str = "crashes";

/// The gate between the relays and SeaweedFS; see the module docs.
struct Gate {
    port: u16,
    up: Arc<AtomicU64>,
    dead: Arc<AtomicBool>,
}

fn gate(s3_port: u16, cut_after: Option<u64>) -> Gate {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = Arc::new(AtomicU64::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let (up2, dead2) = (up.clone(), dead.clone());
    std::thread::spawn(move || {
        for guest in listener.incoming() {
            let Ok(mut guest) = guest else { continue };
            if dead2.load(Ordering::SeqCst) {
                let _ = guest.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", s3_port)) else { continue };
            live.lock().unwrap().extend([guest.try_clone().unwrap(), server.try_clone().unwrap()]);
            let (mut g2, mut s2) = (guest.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut g2);
                let _ = g2.shutdown(Shutdown::Write);
            });
            let (up, dead, live) = (up2.clone(), dead2.clone(), live.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match guest.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let total = up.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                    if cut_after.is_some_and(|c| total >= c) {
                        // The server dies: every connection goes, later ones are refused.
                        dead.store(true, Ordering::SeqCst);
                        for s in live.lock().unwrap().iter() {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                        break;
                    }
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = server.shutdown(Shutdown::Write);
            });
        }
    });
    Gate { port, up, dead }
}

/// Loads the NIC's modules, gives the first kernel an address (so `kdump setup` can check the
/// bucket), runs setup with wrong credentials, then with the right ones, and crashes.
/// `network`: the config's `[network]` table; without one, `kdump setup` takes the first
/// kernel's route to the server (10.0.2.15/24 on the NIC, set by this script).
fn s3_crash(name: &str, gate_port: u16, failure_action: &str, network: bool) -> Outcome {
    let kernel = LabKernel::Bookworm;
    let modules = nic_modules(kernel);
    let append = kdump_lab::LAB_CMDLINE;
    let up = modules.static_address_lines();
    let network = if network { format!("[network]\ninterface = \"{MAC}\"\ndhcp = true\n") } else { String::new() };
    let script = format!(
        r#"{up}mkdir -p /etc
cat > /etc/kdump.toml <<CONFIG
final_action = "poweroff"
failure_action = "{failure_action}"
[target]
url = "s3://{BUCKET}/fleet"
endpoint = "http://{SERVER}"
credentials = "/lab/s3/wrong"
[capture]
kernel = "/lab/vmlinuz"
append = "{append}"
modules_dir = "/lab/modules"
{network}CONFIG
kdump setup > /results/setup-wrong.txt 2>&1 || echo "exit $?" >> /results/setup-wrong.txt
sed -i 's|/lab/s3/wrong|/lab/s3/credentials|' /etc/kdump.toml
kdump setup | tee /results/setup.txt
cp /var/lib/kdump/initramfs.img /results/initramfs.img
ip addr flush dev $IF
sync
kdump test --yes-crash-this-machine
"#
    );
    let creds = format!("{}\n{}\n", SeaweedFs::ACCESS_KEY_ID, SeaweedFs::SECRET);
    let wrong = format!("{}\nnot-the-secret\n", SeaweedFs::ACCESS_KEY_ID);
    let scenario = Scenario::new(name, &script).capture_is_ours().file("lab/s3/credentials", creds, 0o600).file(
        "lab/s3/wrong",
        wrong,
        0o600,
    );
    let scenario = modules.into_guest(scenario);
    let nic = relayed_nic(SERVER, gate_port);
    let vm = Vm { memory_mib: 768, crashkernel: Some("192M".into()), nic: Some(nic), ..Vm::on(kernel) };
    let start = Instant::now();
    let outcome = scenario.vm(vm).run().expect("scenario");
    eprintln!("{name}: {:.1} s of VM time", start.elapsed().as_secs_f64());
    outcome
}

/// Setup refused the wrong key with the fix and took the right one; the key is private.
fn check_setup(outcome: &Outcome) {
    let wrong = outcome.read_result("setup-wrong.txt").unwrap();
    assert!(wrong.contains("fails its check (kdump check-target): the S3 server refused the credentials"), "{wrong}");
    assert!(wrong.contains("check the credentials file") && !wrong.ends_with("exit 0\n"), "{wrong}");
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(
        setup.contains(&format!("target: s3://{BUCKET}/fleet at http://{SERVER}, credentials /lab/s3/credentials"))
    );
    assert!(setup.contains("target: check-target passed (bucket reachable and writable)"), "{setup}");
    assert!(setup.contains("capture kernel loaded"), "{setup}");
    if !outcome.console.contains("network: DHCP") {
        assert!(
            setup.contains(&format!(
                "network: no [network] table: from this machine's route to {SERVER}: {MAC} (eth0), static 10.0.2.15/24"
            )),
            "{setup}"
        );
    }
    let listing = run(Command::new("cpio").args(["-itv", "--quiet", "-F"]).arg(outcome.result_path("initramfs.img")));
    let listing = String::from_utf8_lossy(&listing);
    let line = listing.lines().find(|l| l.ends_with("etc/kdump-s3-credentials")).expect("credentials in the image");
    assert!(line.starts_with("-rw-------"), "0600: {line}");
}

/// Keys under the bucket's `fleet/` prefix.
fn keys(server: &SeaweedFs) -> Vec<String> {
    server.client().list_objects("fleet/", None).unwrap().into_iter().map(|e| e.key).collect()
}

/// The crash folder (`fleet/HOST/TIME`) of the one crash in the bucket.
fn the_folder(keys: &[String]) -> String {
    let folders: BTreeSet<String> = keys
        .iter()
        .filter(|k| !k.starts_with("fleet/.index/"))
        .map(|k| k.rsplit_once('/').unwrap().0.to_string())
        .collect();
    assert_eq!(folders.len(), 1, "one crash folder: {keys:?}");
    folders.into_iter().next().unwrap()
}

/// PFNs that have a page descriptor, each page read back (every page decompresses).
fn described_pfns(path: &Path) -> BTreeSet<u64> {
    let mut r = KdumpReader::open(File::open(path).unwrap()).unwrap();
    let mut buf = vec![0u8; r.page_size() as usize];
    let mut set = BTreeSet::new();
    for range in r.ram_ranges().to_vec() {
        for pfn in range {
            if r.page_desc(pfn).unwrap().is_some() {
                assert_eq!(r.read_page(pfn, &mut buf).unwrap(), PageState::Present, "{}: pfn {pfn:#x}", path.display());
                set.insert(pfn);
            }
        }
    }
    set
}

#[test]
fn the_capture_kernel_uploads_a_complete_crash_to_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let server = SeaweedFs::start(&tmp.path().join("weed"), BUCKET, false).unwrap_or_else(|e| panic!("{e}"));
    let gate = gate(server.s3_port(), None);
    let outcome = s3_crash("s3-happy", gate.port, "poweroff", false);
    check_setup(&outcome);
    let console = &outcome.console;
    assert_said(
        console,
        &[
            // No [network] in the config: setup took the first kernel's route (static 10.0.2.15/24).
            "kdump-init: network: address 10.0.2.15/24 on ",
            " (static)",
            &format!("kdump-init: saving into the S3 bucket s3://{BUCKET}/fleet at http://{SERVER}"),
            &format!("kdump-init: s3: crash folder s3://{BUCKET}/fleet/"),
            "kdump-init: s3: uploaded dmesg.txt, info.json, kdump.log and the index entry",
            "kdump-init: s3: uploading vmcore in parts of 5 MiB",
            "the upload is complete",
            &format!("kdump-init: saved the dump to s3://{BUCKET}/fleet/"),
            "kdump-init: done; final_action = poweroff",
        ],
    );
    let uploaded = console.lines().find(|l| l.contains("s3: uploaded vmcore, ")).unwrap();
    let parts: u32 = uploaded.split(" in ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(parts >= 2, "the dump is larger than one part: {uploaded}");

    let keys = keys(&server);
    let folder = the_folder(&keys);
    let mut files: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix(&format!("{folder}/"))).collect();
    files.sort();
    assert_eq!(files, ["dmesg.txt", "info.json", "kdump.log", "vmcore"], "no vmcore.incomplete left");
    let index: Vec<&String> = keys.iter().filter(|k| k.starts_with("fleet/.index/")).collect();
    assert_eq!(index.len(), 1, "{keys:?}");
    assert!(server.client().list_multipart_uploads("fleet/").unwrap().is_empty(), "no upload left open");

    // Fetched with `kdump fleet`, the dump is complete and every tool reads it.
    let kdump = static_tools().unwrap().kdump;
    let creds = tmp.path().join("credentials");
    std::fs::write(&creds, format!("{}\n{}\n", SeaweedFs::ACCESS_KEY_ID, SeaweedFs::SECRET)).unwrap();
    let fleet = |args: &[&str]| {
        run(Command::new(&kdump)
            .arg("fleet")
            .args(args)
            .args(["--url", &format!("s3://{BUCKET}/fleet"), "--endpoint", &server.client_config().endpoint])
            .arg("--credentials")
            .arg(&creds))
    };
    let vmcore = tmp.path().join("vmcore");
    let crash = folder.strip_prefix("fleet/").unwrap();
    fleet(&["fetch", crash, vmcore.to_str().unwrap()]);
    let dmesg_txt = tmp.path().join("dmesg.txt");
    fleet(&["fetch", crash, dmesg_txt.to_str().unwrap(), "--file", "dmesg.txt"]);
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&vmcore))).unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert_eq!(info["format"]["dump_level"], 31);
    assert_eq!(info["panic"], "sysrq triggered crash", "{info:#}");
    let ours = run(Command::new(&kdump).arg("dmesg").arg(&vmcore));
    assert!(ours == std::fs::read(&dmesg_txt).unwrap(), "dmesg.txt is the dump's log");
    let theirs = tmp.path().join("makedumpfile-dmesg.txt");
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&vmcore).arg(&theirs));
    assert!(ours == std::fs::read(&theirs).unwrap(), "kdump dmesg and makedumpfile --dump-dmesg differ");
    // Its page set is level 31's: what makedumpfile keeps at -d 31 from it, and what a local
    // dump at -d 31 of it keeps; every page of each reads back.
    let from_s3 = described_pfns(&vmcore);
    let md31 = tmp.path().join("makedumpfile-d31");
    run(Command::new("makedumpfile").args(["-l", "-d", "31"]).arg(&vmcore).arg(&md31));
    let local = tmp.path().join("kdump-d31");
    run(Command::new(&kdump).args(["dump", "-l", "-d", "31", "--message-level", "0"]).arg(&vmcore).arg(&local));
    assert!(from_s3 == described_pfns(&md31), "makedumpfile -d 31 keeps other pages");
    assert!(from_s3 == described_pfns(&local), "a local -d 31 dump keeps other pages");
    eprintln!(
        "s3-happy: {} pages, {parts} parts, {} bytes through the gate",
        from_s3.len(),
        gate.up.load(Ordering::SeqCst)
    );

    let list: serde_json::Value = serde_json::from_slice(&fleet(&["list", "--json"])).unwrap();
    assert_eq!(list[0]["count"], 1, "{list:#}");
    assert!(list[0]["title"].as_str().unwrap().starts_with("sysrq triggered crash"), "{list:#}");
    let mut log = Vec::new();
    server.client().get_object(&format!("{folder}/kdump.log"), &mut log).unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("network: ") && log.contains("s3: uploaded vmcore, "), "kdump.log: {log}");
}

#[test]
fn a_server_that_dies_mid_upload_leaves_no_vmcore_and_failure_action_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let server = SeaweedFs::start(&tmp.path().join("weed"), BUCKET, false).unwrap_or_else(|e| panic!("{e}"));
    // The setup check and the small files pass (well under 1 MiB); the dump does not.
    let gate = gate(server.s3_port(), Some(3 << 20));
    let outcome = s3_crash("s3-cut", gate.port, "poweroff", true);
    assert!(gate.dead.load(Ordering::SeqCst), "the gate cut the upload");
    let console = &outcome.console;
    assert_said(
        console,
        &[
            "kdump-init: s3: uploaded dmesg.txt, info.json, kdump.log and the index entry",
            "kdump-init: s3: no vmcore: the upload was aborted",
            "kdump-init: FAILED: cannot upload s3://",
            "with vmcore.incomplete saying why (no vmcore)",
            "kdump-init: failure_action = poweroff: poweroff now",
        ],
    );
    assert!(!console.contains("kdump-init: saved the dump to"), "{console}");
    let keys = keys(&server);
    let folder = the_folder(&keys);
    let mut files: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix(&format!("{folder}/"))).collect();
    files.sort();
    // Written before the upload began; the server was gone when the reason could have been.
    assert_eq!(files, ["dmesg.txt", "info.json", "kdump.log", "vmcore.incomplete"], "nothing looks complete");
    let mut marker = Vec::new();
    server.client().get_object(&format!("{folder}/vmcore.incomplete"), &mut marker).unwrap();
    assert!(!marker.is_empty());
}
