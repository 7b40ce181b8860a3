//! `kdump fleet` over real crashes: a sysrq crash on two hosts and an out-of-memory panic
//! (`vm.panic_on_oom=1`) on a third, each saved by the capture kernel (`kdump info --json`,
//! `kdump dmesg`, `kdump dump -l -d 31`), published to a real S3 server (SeaweedFS on
//! 127.0.0.1) with `kdump fleet add`, are listed as two signatures whose titles name the
//! functions that called panic; the HTML report draws them.

use std::path::Path;
use std::process::Command;

use kdump_lab::{LOAD_CAPTURE_KERNEL, Scenario, Vm, static_tools};
use kdump_s3::testserver::SeaweedFs;

const SAVE: &str = "\
kdump info --json /proc/vmcore > /results/info.json
kdump dmesg /proc/vmcore > /results/dmesg.txt
kdump dump -l -d 31 /proc/vmcore /results/vmcore
";

/// Crashes a VM named `host` with `trigger`; returns the crash directory its capture kernel
/// saved, copied under `root`.
fn crash(root: &Path, host: &str, trigger: &str) -> std::path::PathBuf {
    let first = format!("hostname {host}\n{LOAD_CAPTURE_KERNEL}sync\n{trigger}\n");
    let vm = Vm { results_disk_mib: 256, ..Vm::default() };
    let outcome = Scenario::new(&format!("fleet-{host}"), &first).capture(SAVE).vm(vm).run().expect("crash");
    let dir = root.join(host);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["info.json", "dmesg.txt", "vmcore"] {
        std::fs::copy(outcome.result_path(f), dir.join(f)).unwrap_or_else(|e| panic!("{host} {f}: {e}"));
    }
    dir
}

fn fleet(kdump: &Path, server: &SeaweedFs, creds: &Path, args: &[&str]) -> String {
    let out = Command::new(kdump)
        .arg("fleet")
        .args(args)
        .args(["--url", "s3://crashes/fleet", "--endpoint", &server.client_config().endpoint, "--credentials"])
        .arg(creds)
        .output()
        .unwrap();
    assert!(out.status.success(), "kdump fleet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sysrq_and_out_of_memory_crashes_of_three_hosts_group_into_two_signatures() {
    let sysrq = "echo c > /proc/sysrq-trigger";
    // Fill a tmpfs as large as RAM: page allocation runs out, and panic_on_oom turns the OOM
    // killer's call into a panic.
    let oom = "echo 1 > /proc/sys/vm/panic_on_oom\nmkdir -p /fill\nmount -t tmpfs -o size=100% fill /fill\n\
               dd if=/dev/zero of=/fill/zeros bs=1M\necho FAILED: no OOM panic";
    let tmp = tempfile::tempdir().unwrap();
    let dirs = [crash(tmp.path(), "web-1", sysrq), crash(tmp.path(), "web-2", sysrq), crash(tmp.path(), "db-1", oom)];

    let kdump = static_tools().unwrap().kdump;
    let server = SeaweedFs::start(&tmp.path().join("weed"), "crashes", false).unwrap_or_else(|e| panic!("{e}"));
    let creds = tmp.path().join("credentials");
    std::fs::write(&creds, format!("{}\n{}\n", SeaweedFs::ACCESS_KEY_ID, SeaweedFs::SECRET)).unwrap();
    for d in &dirs {
        fleet(&kdump, &server, &creds, &["add", d.to_str().unwrap()]);
    }
    let list: serde_json::Value = serde_json::from_str(&fleet(&kdump, &server, &creds, &["list", "--json"])).unwrap();
    let sigs = list.as_array().unwrap();
    let summary: Vec<(u64, Vec<String>, String)> = sigs
        .iter()
        .map(|s| {
            let hosts = s["hosts"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect();
            (s["count"].as_u64().unwrap(), hosts, s["title"].as_str().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert_eq!((summary[0].0, summary[0].1.clone()), (2, vec!["web-1".to_string(), "web-2".to_string()]));
    assert!(summary[0].2.starts_with("sysrq triggered crash | sysrq_handle_crash < "), "{summary:?}");
    assert_eq!((summary[1].0, summary[1].1.clone()), (1, vec!["db-1".to_string()]));
    assert!(summary[1].2.starts_with("Out of memory") && summary[1].2.contains("out_of_memory"), "{summary:?}");

    // The dump comes back byte for byte and is a dump kdump reads.
    let latest = sigs[1]["latest"].as_str().unwrap();
    let fetched = tmp.path().join("fetched-vmcore");
    fleet(&kdump, &server, &creds, &["fetch", latest, fetched.to_str().unwrap()]);
    assert!(std::fs::read(&fetched).unwrap() == std::fs::read(dirs[2].join("vmcore")).unwrap());
    let info = Command::new(&kdump).arg("info").arg(&fetched).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("Out of memory"), "{info:?}");

    let page = tmp.path().join("fleet.html");
    fleet(&kdump, &server, &creds, &["report", "--html", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("sysrq_handle_crash") && html.contains("<svg id=\"chart\""));
}
