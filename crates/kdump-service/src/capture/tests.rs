//! The capture init's decisions on a scripted machine: each test says what the machine does
//! and checks what the init did, logged and chose to end with.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A machine whose every step is recorded; files live in a map.
struct Machine {
    now: std::rc::Rc<std::cell::Cell<Duration>>,
    console: Vec<String>,
    network_up: bool,
    network_result: Result<(), String>,
    config: Result<String, String>,
    vmcore: bool,
    /// The target appears at this time (never when `None`).
    target_at: Option<Duration>,
    target: (PathBuf, Option<FsIdentity>),
    files: BTreeMap<PathBuf, String>,
    dirs: BTreeSet<PathBuf>,
    /// What each save_dump returns, in turn, and whether a failure leaves `vmcore.incomplete`.
    dumps: VecDeque<(Result<u64, DumpFailure>, bool)>,
    saved: Vec<(PathBuf, bool, DumpSpec)>,
    flattened: Vec<PathBuf>,
    mounted: Vec<(PathBuf, String)>,
    internal_error_action: Option<Action>,
    /// What save_over_ssh returns, and each call (target, directory name, the log's text then).
    remote: Result<RemoteSaved, RemoteFailure>,
    /// Returned first, one a call, before `remote`.
    remote_queue: VecDeque<Result<RemoteSaved, RemoteFailure>>,
    remote_calls: Vec<(String, String, String)>,
    /// What mount_nfs returns; each call's source, type and options.
    nfs_result: Result<(), String>,
    nfs_mounts: Vec<(String, String, String)>,
}

const CRASH_TIME: i64 = 1_764_547_200; // 2025-12-01 00:00:00 UTC

fn machine(config: &str) -> Machine {
    Machine {
        now: Default::default(),
        console: Vec::new(),
        network_up: false,
        network_result: Ok(()),
        config: Ok(config.to_string()),
        vmcore: true,
        target_at: Some(Duration::from_secs(1)),
        target: (
            PathBuf::from("/dev/vdb"),
            Some(FsIdentity { fstype: "ext4", uuid: "1234".into(), label: "crash".into() }),
        ),
        files: BTreeMap::new(),
        dirs: BTreeSet::new(),
        dumps: VecDeque::from([(Ok(3 << 20), false)]),
        saved: Vec::new(),
        flattened: Vec::new(),
        mounted: Vec::new(),
        internal_error_action: None,
        remote: Ok(RemoteSaved { dir: format!("/srv/crash/{DIR_NAME}"), dump_size: 5 << 20 }),
        remote_queue: VecDeque::new(),
        remote_calls: Vec::new(),
        nfs_result: Ok(()),
        nfs_mounts: Vec::new(),
    }
}

const DIR_NAME: &str = "web-7-2025-12-01-00:00:00";

/// The console of a scripted machine: its lines, and the machine's clock.
struct Screen {
    lines: Vec<String>,
    now: std::rc::Rc<std::cell::Cell<Duration>>,
}

impl Console for Screen {
    fn line(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }
    fn elapsed(&self) -> Duration {
        self.now.get()
    }
}

impl System for Machine {
    fn sleep(&mut self, d: Duration) {
        self.now.set(self.now.get() + d);
    }
    fn bring_up_network(&mut self, network: &Network, say: &mut dyn FnMut(String)) -> Result<(), String> {
        say(format!("network: {} up", network.interface));
        self.network_up = true;
        self.now.set(self.now.get() + Duration::from_secs(2));
        self.network_result.clone()
    }
    fn mount_pseudo_filesystems(&mut self) -> Vec<String> {
        Vec::new()
    }
    fn read_config(&mut self) -> Result<String, String> {
        self.config.clone()
    }
    fn on_internal_error(&mut self, action: Action) {
        self.internal_error_action = Some(action);
    }
    fn vmcore_present(&mut self) -> bool {
        self.vmcore
    }
    fn load_modules(&mut self) -> Vec<(String, Result<(), String>)> {
        vec![("00-ext4.ko".into(), Ok(())), ("01-nvme.ko".into(), Err("File exists".into()))]
    }
    fn find_target(&mut self, _: &TargetSpec) -> Option<(PathBuf, Option<FsIdentity>)> {
        self.target_at.is_some_and(|t| self.now.get() >= t).then(|| self.target.clone())
    }
    fn block_devices(&mut self) -> Vec<String> {
        vec!["vda".into()]
    }
    fn mount(&mut self, node: &Path, at: &Path, fstype: &str) -> Result<(), String> {
        self.mounted.push((node.to_path_buf(), fstype.to_string()));
        self.dirs.insert(at.to_path_buf());
        Ok(())
    }
    fn mount_nfs(&mut self, nfs: &NfsDestination, at: &Path, wait: Duration) -> Result<(), String> {
        self.nfs_mounts.push((nfs.source(), nfs.fstype().to_string(), nfs.mount_options()));
        if self.nfs_result.is_err() {
            self.now.set(self.now.get() + wait);
            return self.nfs_result.clone();
        }
        self.dirs.insert(at.to_path_buf());
        Ok(())
    }
    fn unmount(&mut self, _: &Path) -> Result<(), String> {
        Ok(())
    }
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), String> {
        self.dirs.insert(dir.to_path_buf());
        Ok(())
    }
    fn create_dir(&mut self, dir: &Path) -> Result<(), String> {
        if !self.dirs.insert(dir.to_path_buf()) {
            return Err("File exists".into());
        }
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.dirs.contains(path) || self.files.contains_key(path)
    }
    fn crash_identity(&mut self) -> (String, i64) {
        ("web-7".into(), CRASH_TIME)
    }
    fn save_kernel_log(&mut self, file: &Path) -> Result<usize, String> {
        self.files.insert(file.to_path_buf(), "log".into());
        Ok(42)
    }
    fn save_report(&mut self, file: &Path) -> Result<(), String> {
        self.files.insert(file.to_path_buf(), "{}".into());
        Ok(())
    }
    fn reserve(&mut self, file: &Path, _: u64) {
        self.files.insert(file.to_path_buf(), String::new());
    }
    fn remove(&mut self, file: &Path) {
        self.files.remove(file);
    }
    fn save_dump(&mut self, dest: &Path, force: bool, spec: &DumpSpec) -> Result<u64, DumpFailure> {
        self.saved.push((dest.to_path_buf(), force, *spec));
        let (result, leaves_partial) = self.dumps.pop_front().expect("no more dumps scripted");
        match &result {
            Ok(_) => {
                self.files.insert(dest.to_path_buf(), "dump".into());
            }
            Err(_) if leaves_partial => {
                self.files.insert(dest.with_file_name("vmcore.incomplete"), "part".into());
            }
            Err(_) => {}
        }
        result
    }
    fn save_over_ssh(
        &mut self,
        target: &SshDestination,
        dir_name: &str,
        _: &DumpSpec,
        log: &mut dyn StepLog,
    ) -> Result<RemoteSaved, RemoteFailure> {
        assert!(self.network_up, "ssh before the network");
        log.say("sent 5.0 MiB");
        self.remote_calls.push((target.to_string(), dir_name.to_string(), log.text()));
        self.remote_queue.pop_front().unwrap_or_else(|| self.remote.clone())
    }
    fn save_to_s3(
        &mut self,
        target: &S3Destination,
        spec: &DumpSpec,
        log: &mut dyn StepLog,
    ) -> Result<RemoteSaved, RemoteFailure> {
        assert!(self.network_up, "S3 before the network");
        log.say("uploaded 5.0 MiB");
        self.remote_calls.push((target.to_string(), spec.described(), log.text()));
        self.remote_queue.pop_front().unwrap_or_else(|| self.remote.clone())
    }
    fn save_flattened(&mut self, node: &Path, _: &DumpSpec) -> Result<(), String> {
        self.flattened.push(node.to_path_buf());
        Ok(())
    }
    fn write_file(&mut self, file: &Path, text: &str) -> Result<(), String> {
        self.files.insert(file.to_path_buf(), text.to_string());
        Ok(())
    }
    fn sync(&mut self) {}
}

impl Machine {
    fn said(&self, text: &str) -> bool {
        self.console.iter().any(|l| l.contains(text))
    }
}

/// Runs the init on `m`, its console lines kept in `m.console`.
fn go(m: &mut Machine) -> Action {
    let mut screen = Screen { lines: Vec::new(), now: m.now.clone() };
    let action = run(m, &mut screen);
    m.console = screen.lines;
    action
}

const DISK: &str = "final_action = \"poweroff\"\n[target]\ndevice = \"LABEL=crash\"\n";
const CRASH_DIR: &str = "/mnt/target/var/crash/web-7-2025-12-01-00:00:00";

#[test]
fn a_crash_directory_gets_the_small_files_first_then_the_dump() {
    let mut m = machine(DISK);
    assert_eq!(go(&mut m), Action::Poweroff);
    assert_eq!(m.mounted, [(PathBuf::from("/dev/vdb"), "ext4".to_string())]);
    let dir = Path::new(CRASH_DIR);
    assert_eq!(m.saved, [(dir.join("vmcore"), false, DumpSpec { level: 31, codec: Codec::Lzo, threads: 1 })]);
    for f in ["dmesg.txt", "info.json", "vmcore", "kdump.log"] {
        assert!(m.files.contains_key(&dir.join(f)), "{f}: {:?}", m.files.keys());
    }
    assert!(!m.files.contains_key(&dir.join(".kdump-log-reserve")), "the reserve is released");
    assert!(m.said("kdump-init: loaded module 00-ext4.ko"));
    assert!(m.said("cannot load module 01-nvme.ko: File exists"));
    assert!(m.said("kdump dump -d 31 -l --num-threads 1 /proc/vmcore /var/crash/web-7-2025-12-01-00:00:00/vmcore"));
    assert!(
        m.said("saved the dump to /var/crash/web-7-2025-12-01-00:00:00/vmcore (3.0 MiB, dump level 31, codec lzo)")
    );
    assert!(m.said("done; final_action = poweroff"));
    // The log file holds every line said after the directory existed, the last one included.
    let log = &m.files[&dir.join("kdump.log")];
    assert!(log.contains("saving into LABEL=crash:") && log.contains("done; final_action"), "{log}");
    assert_eq!(m.internal_error_action, Some(Action::Poweroff));
}

#[test]
fn a_second_crash_in_the_same_second_gets_its_own_directory() {
    let mut m = machine(DISK);
    m.dirs.insert(PathBuf::from(CRASH_DIR));
    go(&mut m);
    assert_eq!(m.saved[0].0, PathBuf::from(format!("{CRASH_DIR}.1/vmcore")));
}

#[test]
fn a_target_that_never_appears_is_waited_for_a_bounded_time_then_failure_action_runs() {
    let mut m = machine(&format!("failure_action = \"halt\"\n{DISK}wait_seconds = 3\n"));
    m.target_at = None;
    assert_eq!(go(&mut m), Action::Halt);
    let waited = m.now.get();
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(4), "{waited:?}");
    assert!(m.said("FAILED: the target LABEL=crash did not appear within 3 s (block devices: vda)"));
    assert!(m.said("failure_action = halt: halt now"));
    assert!(m.saved.is_empty() && m.mounted.is_empty());
}

#[test]
fn retry_stricter_saves_at_level_31_over_the_partial_file() {
    let cfg = format!("failure_action = \"retry-stricter\"\n{DISK}[dump]\nlevel = 1\ncodec = \"zstd\"\n");
    let mut m = machine(&cfg);
    let full = DumpFailure { message: "cannot write: No space left on device".into(), root_cause: "No space".into() };
    m.dumps = VecDeque::from([(Err(full), true), (Ok(1 << 20), false)]);
    assert_eq!(go(&mut m), Action::Poweroff);
    let levels: Vec<(u32, bool)> = m.saved.iter().map(|(_, force, s)| (s.level, *force)).collect();
    assert_eq!(levels, [(1, false), (31, true)]);
    assert!(m.said("the dump failed: cannot write: No space left on device"));
    assert!(m.said("retrying at dump level 31"));
    assert!(m.said("dump level 31, codec zstd"));
}

#[test]
fn an_incomplete_dump_says_where_its_pages_are_in_target_paths() {
    let mut m = machine(DISK);
    let full = DumpFailure {
        message: "the pages are in /mnt/target/…: the dump is INCOMPLETE: No space".into(),
        root_cause: "the dump is INCOMPLETE: No space".into(),
    };
    m.dumps = VecDeque::from([(Err(full), true)]);
    assert_eq!(go(&mut m), Action::Poweroff, "save-log ends with final_action");
    assert!(m.said(
        "FAILED: the dump is INCOMPLETE: No space; the pages saved so far are in \
         /var/crash/web-7-2025-12-01-00:00:00/vmcore.incomplete (marked incomplete), the log in \
         /var/crash/web-7-2025-12-01-00:00:00/kdump.log"
    ));
    assert!(m.said("failure_action = save-log: kept what was saved; then final_action = poweroff"));
    let log = &m.files[&Path::new(CRASH_DIR).join("kdump.log")];
    assert!(log.contains("FAILED: the dump is INCOMPLETE"), "the failure reaches the log file: {log}");
}

#[test]
fn a_raw_target_gets_the_flattened_stream_and_nothing_is_mounted() {
    let mut m = machine("[target]\ndevice = \"/dev/vdb\"\nraw = true\n");
    assert_eq!(go(&mut m), Action::Reboot);
    assert_eq!(m.flattened, [PathBuf::from("/dev/vdb")]);
    assert!(m.mounted.is_empty() && m.saved.is_empty());
    assert!(m.said("kdump extract /dev/vdb DEST"));
}

#[test]
fn no_vmcore_or_no_config_fail_clearly() {
    let mut m = machine(DISK);
    m.vmcore = false;
    assert_eq!(go(&mut m), Action::Poweroff);
    assert!(m.said("/proc/vmcore does not exist: this is not a capture kernel"));
    let mut m = machine(DISK);
    m.config = Err("No such file or directory".into());
    assert_eq!(go(&mut m), Action::Reboot);
    assert!(m.said("FAILED: /etc/kdump.toml: No such file or directory; rebooting"));
    let mut m = machine("[target]\n");
    assert_eq!(go(&mut m), Action::Reboot, "no target: failure_action save-log, final_action reboot");
    assert!(m.said("FAILED:"));
}

const NETWORK: &str = "[network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n";

#[test]
fn the_network_comes_up_before_the_target_is_looked_for_and_its_failure_runs_failure_action() {
    let mut m = machine(&format!("{DISK}{NETWORK}"));
    m.target_at = Some(Duration::from_secs(2));
    assert_eq!(go(&mut m), Action::Poweroff);
    assert!(m.network_up);
    let up = m.console.iter().position(|l| l.contains("network: 52:54:00:12:34:56 up")).expect("network line");
    let target = m.console.iter().position(|l| l.contains("target LABEL=crash is")).expect("target line");
    assert!(up < target, "{:?}", m.console);
    assert!(m.said("done; final_action = poweroff"));

    // Only local targets: the table is there to be checked, its failure is the failure.
    let mut m = machine(&format!("failure_action = \"reboot\"\n{DISK}{NETWORK}"));
    m.network_result = Err("network: no carrier on eth0 within 4 s".into());
    assert_eq!(go(&mut m), Action::Reboot);
    assert!(m.said("FAILED: network: no carrier on eth0 within 4 s"));
    assert!(m.saved.is_empty() && m.mounted.is_empty(), "nothing is tried after the network failed");
}

const SSH_THEN_DISK: &str = "final_action = \"poweroff\"\nfailure_action = \"halt\"\n[target]\nurl = \"ssh://kdump@10.0.2.100/srv/crash\"\n[[fallback]]\ndevice = \"LABEL=crash\"\npath = \"/var/crash\"\n[network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n";

#[test]
fn fallbacks_are_tried_in_order_and_failure_action_runs_only_when_all_failed() {
    // The server refuses: the disk gets the dump.
    let mut m = machine(SSH_THEN_DISK);
    m.remote = Err(RemoteFailure { reason: "connection refused by 10.0.2.100:22".into(), left: None });
    assert_eq!(go(&mut m), Action::Poweroff);
    assert_eq!(m.remote_calls.len(), 1);
    assert!(m.said("the target failed: connection refused by 10.0.2.100:22; trying the next one"));
    assert!(m.said("trying fallback 1 of 1: LABEL=crash"));
    assert_eq!(m.saved.len(), 1, "{:?}", m.console);
    assert!(m.said("done; final_action = poweroff"));
    // The network never came up: the disk still gets it, the server is not tried.
    let mut m = machine(SSH_THEN_DISK);
    m.network_result = Err("network: no DHCP lease within 30 s".into());
    assert_eq!(go(&mut m), Action::Poweroff);
    assert!(m.remote_calls.is_empty());
    assert!(m.said("the target failed: network: no DHCP lease within 30 s; trying the next one"));
    assert_eq!(m.saved.len(), 1);
    // Both fail: every reason, then failure_action.
    let mut m = machine(SSH_THEN_DISK);
    m.remote = Err(RemoteFailure { reason: "connection refused by 10.0.2.100:22".into(), left: None });
    m.target_at = None;
    assert_eq!(go(&mut m), Action::Halt);
    assert!(m.said(
        "FAILED: all 2 targets failed: connection refused by 10.0.2.100:22; then: the target LABEL=crash did not appear"
    ));
    assert!(m.said("failure_action = halt: halt now"));
    // A server as the fallback of a disk: the disk is unmounted before the server is tried.
    let disk_then_ssh = "failure_action = \"poweroff\"\n[target]\ndevice = \"LABEL=crash\"\n[[fallback]]\nurl = \"ssh://kdump@10.0.2.100/srv/crash\"\n[network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n";
    let mut m = machine(disk_then_ssh);
    m.dumps =
        VecDeque::from([(Err(DumpFailure { message: "disk full".into(), root_cause: "disk full".into() }), true)]);
    assert_eq!(go(&mut m), Action::Reboot);
    assert_eq!(m.remote_calls.len(), 1);
    assert!(m.said("trying fallback 1 of 1: ssh://kdump@10.0.2.100/srv/crash"));
}

const SSH: &str = "final_action = \"poweroff\"\nfailure_action = \"halt\"\n[target]\nurl = \"ssh://kdump@10.0.2.100/srv/crash\"\n[network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n";

#[test]
fn an_ssh_target_gets_the_crash_directory_after_the_network_and_nothing_is_mounted() {
    let mut m = machine(SSH);
    assert_eq!(go(&mut m), Action::Poweroff);
    assert!(m.mounted.is_empty() && m.saved.is_empty(), "no local disk is touched");
    let [(target, name, log)] = &m.remote_calls[..] else { panic!("{:?}", m.remote_calls) };
    assert_eq!((target.as_str(), name.as_str()), ("ssh://kdump@10.0.2.100/srv/crash", DIR_NAME));
    // What the System writes as kdump.log holds the whole story up to the transfer.
    assert!(log.contains("network: 52:54:00:12:34:56 up") && log.contains("sent 5.0 MiB"), "{log}");
    assert!(m.said(&format!(
        "saving over ssh into ssh://kdump@10.0.2.100/srv/crash/{DIR_NAME} (named {DIR_NAME}.incomplete"
    )));
    assert!(m.said(&format!(
        "kdump dump -d 31 -l --num-threads 1 /proc/vmcore ssh://kdump@10.0.2.100/srv/crash/{DIR_NAME}/vmcore"
    )));
    assert!(m.said(&format!(
        "saved the dump to 10.0.2.100:/srv/crash/{DIR_NAME}/vmcore (5.0 MiB, dump level 31, codec lzo)"
    )));
    assert!(m.said("done; final_action = poweroff"));
    assert!(!m.said("waiting up to"), "no device is waited for");
}

#[test]
fn an_ssh_failure_says_why_and_what_was_left_then_failure_action_runs() {
    // Refused before anything was written: the reason alone.
    let mut m = machine(SSH);
    m.remote = Err(RemoteFailure { reason: "the host key of 10.0.2.100 is not the one pinned".into(), left: None });
    assert_eq!(go(&mut m), Action::Halt);
    assert!(m.said("FAILED: the host key of 10.0.2.100 is not the one pinned"));
    assert!(m.said("failure_action = halt: halt now"));
    // Lost mid-transfer: where the partial directory is, never a complete-looking name.
    let mut m = machine(SSH);
    m.remote = Err(RemoteFailure {
        reason: "the connection to 10.0.2.100 was lost".into(),
        left: Some(format!("/srv/crash/{DIR_NAME}.incomplete")),
    });
    assert_eq!(go(&mut m), Action::Halt);
    assert!(m.said(&format!(
        "FAILED: the connection to 10.0.2.100 was lost; what was sent is in 10.0.2.100:/srv/crash/{DIR_NAME}.incomplete \
         (still named .incomplete: not a complete dump)"
    )));
    // A network that does not come up: no connection is tried.
    let mut m = machine(SSH);
    m.network_result = Err("network: no DHCP lease within 30 s".into());
    assert_eq!(go(&mut m), Action::Halt);
    assert!(m.remote_calls.is_empty());
    assert!(m.said("FAILED: network: no DHCP lease within 30 s"));
}

const S3: &str = "failure_action = \"poweroff\"\n[target]\nurl = \"s3://crashes/fleet\"\nendpoint = \"http://10.0.2.100:8333\"\n[network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n";

#[test]
fn an_s3_target_gets_the_crash_after_the_network_and_a_failure_names_the_marker() {
    let mut m = machine(S3);
    m.remote = Ok(RemoteSaved { dir: "fleet/host/2026-12-01-10:00:00".into(), dump_size: 5 << 20 });
    assert_eq!(go(&mut m), Action::Reboot);
    assert!(m.mounted.is_empty() && m.saved.is_empty(), "no local disk is touched");
    let [(target, spec, log)] = &m.remote_calls[..] else { panic!("{:?}", m.remote_calls) };
    assert_eq!(
        (target.as_str(), spec.as_str()),
        ("s3://crashes/fleet at http://10.0.2.100:8333", "-d 31 -l --num-threads 1")
    );
    assert!(log.contains("network: 52:54:00:12:34:56 up") && log.contains("uploaded 5.0 MiB"), "{log}");
    assert!(m.said("saving into the S3 bucket s3://crashes/fleet at http://10.0.2.100:8333"));
    assert!(m.said(
        "saved the dump to s3://crashes/fleet/host/2026-12-01-10:00:00/vmcore (5.0 MiB, dump level 31, codec lzo)"
    ));
    assert!(m.said("done; final_action = reboot"));

    let mut m = machine(S3);
    m.remote = Err(RemoteFailure {
        reason: "cannot upload part 3: connection refused by 10.0.2.100:8333".into(),
        left: Some("fleet/host/2026-12-01-10:00:00".into()),
    });
    assert_eq!(go(&mut m), Action::Poweroff);
    assert!(m.said(
        "FAILED: cannot upload part 3: connection refused by 10.0.2.100:8333; the crash's small files are in \
         s3://crashes/fleet/host/2026-12-01-10:00:00, with vmcore.incomplete saying why (no vmcore)"
    ));
    assert!(m.said("failure_action = poweroff: poweroff now"));
}

#[test]
fn retry_stricter_sends_level_31_again_after_a_transfer_failed_but_not_after_a_refusal() {
    let cfg = SSH
        .replace("failure_action = \"halt\"", "failure_action = \"retry-stricter\"")
        .replace("[network]", "[dump]\nlevel = 1\n[network]");
    let lost = RemoteFailure {
        reason: "the connection to 10.0.2.100 was lost".into(),
        left: Some(format!("/srv/crash/{DIR_NAME}.incomplete")),
    };
    // Lost mid-transfer, then the retry at level 31 succeeds, in a directory of its own.
    let mut m = machine(&cfg);
    m.remote_queue = VecDeque::from([Err(lost.clone())]);
    m.remote = Ok(RemoteSaved { dir: format!("/srv/crash/{DIR_NAME}.1"), dump_size: 1 << 20 });
    assert_eq!(go(&mut m), Action::Poweroff);
    let names: Vec<&str> = m.remote_calls.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(names, [DIR_NAME.to_string(), format!("{DIR_NAME}.1")]);
    assert!(m.said("failure_action = retry-stricter: retrying at dump level 31"));
    assert!(m.said(&format!("saved the dump to 10.0.2.100:/srv/crash/{DIR_NAME}.1/vmcore (1.0 MiB, dump level 31")));
    // A refusal (nothing was started) is not retried: it would be refused again.
    let mut m = machine(&cfg);
    m.remote = Err(RemoteFailure { reason: "the host key of 10.0.2.100 is not the one pinned".into(), left: None });
    m.go_and_expect_retry_count(1);
    // Both fail: the first failure is reported.
    let mut m = machine(&cfg);
    m.remote = Err(lost.clone());
    m.go_and_expect_retry_count(2);
    assert!(m.said("the retry at level 31 failed too: the connection to 10.0.2.100 was lost"));
    assert!(m.said("FAILED: the connection to 10.0.2.100 was lost; what was sent is in"));
    // S3: the same folder again at level 31.
    let s3 = S3.replace("failure_action = \"poweroff\"", "failure_action = \"retry-stricter\"\n[dump]\nlevel = 1");
    let mut m = machine(&s3);
    m.remote_queue =
        VecDeque::from([Err(RemoteFailure { reason: "cannot upload part 3".into(), left: Some("fleet/h/t".into()) })]);
    m.remote = Ok(RemoteSaved { dir: "fleet/h/t".into(), dump_size: 1 << 20 });
    assert_eq!(go(&mut m), Action::Reboot);
    let specs: Vec<&str> = m.remote_calls.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(specs, ["-d 1 -l --num-threads 1", "-d 31 -l --num-threads 1"]);
}

impl Machine {
    fn go_and_expect_retry_count(&mut self, calls: usize) {
        go(self);
        assert_eq!(self.remote_calls.len(), calls, "{:?}", self.console);
    }
}

const NFS: &str = "final_action = \"poweroff\"\nfailure_action = \"halt\"\n[target]\nurl = \"nfs://10.0.2.100/srv/crash\"\nwait_seconds = 20\n[network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n";

#[test]
fn an_nfs_target_is_mounted_soft_after_the_network_and_gets_the_crash_directory() {
    let mut m = machine(NFS);
    assert_eq!(go(&mut m), Action::Poweroff);
    let [(source, fstype, options)] = &m.nfs_mounts[..] else { panic!("{:?}", m.nfs_mounts) };
    assert_eq!((source.as_str(), fstype.as_str()), ("10.0.2.100:/srv/crash", "nfs4"));
    assert_eq!(options, "vers=4.1,addr=10.0.2.100,port=2049,proto=tcp,soft,timeo=100,retrans=3,sec=sys");
    assert!(m.mounted.is_empty(), "no local disk is mounted");
    let dir = Path::new("/mnt/target").join(DIR_NAME);
    for f in ["dmesg.txt", "info.json", "vmcore", "kdump.log"] {
        assert!(m.files.contains_key(&dir.join(f)), "{f}: {:?}", m.files.keys());
    }
    assert!(m.said("mounting nfs://10.0.2.100/srv/crash (NFSv4.1, soft, timeo 10 s, 3 retries); waiting up to 20 s"));
    assert!(m.said(&format!("saving into nfs://10.0.2.100/srv/crash/{DIR_NAME}")));
    assert!(m.said(&format!("saved the dump to nfs://10.0.2.100/srv/crash/{DIR_NAME}/vmcore (3.0 MiB")));
    let log = &m.files[&dir.join("kdump.log")];
    assert!(log.contains("network: 52:54:00:12:34:56 up") && log.contains("done; final_action"), "{log}");
}

#[test]
fn a_dead_nfs_server_is_waited_for_a_bounded_time_then_a_fallback_or_failure_action() {
    let mut m = machine(NFS);
    m.nfs_result = Err("10.0.2.100:2049 did not answer within 20 s (connection refused)".into());
    assert_eq!(go(&mut m), Action::Halt);
    assert!(m.said(
        "FAILED: cannot mount nfs://10.0.2.100/srv/crash: 10.0.2.100:2049 did not answer within 20 s (connection refused)"
    ));
    assert!(m.said("failure_action = halt: halt now"));
    assert!(m.saved.is_empty() && m.files.is_empty(), "nothing written");
    // With a disk after it, the disk gets the dump.
    let mut m = machine(&format!("{NFS}[[fallback]]\ndevice = \"LABEL=crash\"\n"));
    m.nfs_result = Err("10.0.2.100:2049 did not answer within 20 s (connection refused)".into());
    assert_eq!(go(&mut m), Action::Poweroff);
    assert!(m.said("trying fallback 1 of 1: LABEL=crash"));
    assert_eq!(m.saved.len(), 1);
}
