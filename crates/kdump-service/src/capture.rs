//! The capture init's decisions, over a [`System`] that does the steps. The `kdump` binary, as
//! PID 1 of the capture kernel, implements [`System`] with real mounts, modules and dumps; the
//! tests here with a scripted machine. [`run`] mounts nothing itself and never stops the
//! machine: it returns the action to end with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    Action, Codec, Config, Destination, FailureAction, Network, NfsDestination, S3Destination, SshDestination, Target,
    TargetSpec,
};
use crate::naming::{crash_dir_name, unique};
use crate::superblock::FsIdentity;

/// Where the target filesystem is mounted.
pub const MOUNTPOINT: &str = "/mnt/target";
/// Kept free on the target during the dump, so the log can still be written when the disk fills up.
pub const LOG_RESERVE: u64 = 1 << 20;
/// What the dump is read from.
pub const VMCORE: &str = "/proc/vmcore";

/// What a dump is asked for: level, codec, threads (as `kdump dump -d L -z --num-threads N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpSpec {
    /// Dump level.
    pub level: u32,
    /// Page codec.
    pub codec: Codec,
    /// Compression threads.
    pub threads: usize,
}

impl DumpSpec {
    /// The `kdump dump` options this is, for the log.
    pub fn described(&self) -> String {
        let codec = self.codec.makedumpfile_flag().map(|f| format!(" {f}")).unwrap_or_default();
        format!("-d {}{codec} --num-threads {}", self.level, self.threads)
    }
}

/// Why a dump failed: the whole story, and its first cause alone (for a message that adds
/// where the pieces are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpFailure {
    /// Every cause, outermost first.
    pub message: String,
    /// The innermost cause.
    pub root_cause: String,
}

/// Why saving over ssh failed, and what it left on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFailure {
    /// What went wrong, with its fix.
    pub reason: String,
    /// The `….incomplete` directory on the server, once it was created.
    pub left: Option<String>,
}

/// What a crash directory saved over ssh holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSaved {
    /// The complete directory on the server.
    pub dir: String,
    /// The size of its `vmcore`.
    pub dump_size: u64,
}

/// The init's log, for a step that reports as it goes and writes the log file itself.
pub trait StepLog {
    /// Says a line (console and log).
    fn say(&mut self, line: &str);
    /// Everything said so far: what `kdump.log` holds.
    fn text(&self) -> String;
}

/// Where the init's lines go as they happen, with the time since it started.
pub trait Console {
    /// Writes a line.
    fn line(&mut self, line: &str);
    /// Time since the init started.
    fn elapsed(&self) -> Duration;
}

/// The machine, as the capture init uses it. Each method is one step; errors are the
/// system's words, for the log.
pub trait System {
    /// Waits.
    fn sleep(&mut self, d: Duration);
    /// Brings the network up as `[network]` says, saying each step through `say`.
    fn bring_up_network(&mut self, network: &Network, say: &mut dyn FnMut(String)) -> Result<(), String>;
    /// Mounts /proc, /sys and /dev; returns the problems.
    fn mount_pseudo_filesystems(&mut self) -> Vec<String>;
    /// The text of the config in the initramfs.
    fn read_config(&mut self) -> Result<String, String>;
    /// From here on, a crash of the init itself ends with `action`.
    fn on_internal_error(&mut self, action: Action);
    /// Whether the crashed kernel's memory is there (`/proc/vmcore`).
    fn vmcore_present(&mut self) -> bool;
    /// Loads the initramfs's modules in order: each file and how it went.
    fn load_modules(&mut self) -> Vec<(String, Result<(), String>)>;
    /// The device of `spec`, if present now, with the filesystem its superblock holds.
    fn find_target(&mut self, spec: &TargetSpec) -> Option<(PathBuf, Option<FsIdentity>)>;
    /// The names of the block devices, for a message.
    fn block_devices(&mut self) -> Vec<String>;
    /// Mounts `node` (a `fstype`) on `at`.
    fn mount(&mut self, node: &Path, at: &Path, fstype: &str) -> Result<(), String>;
    /// Mounts the NFS export `nfs` on `at` with the kernel's client: waits up to `wait` for
    /// the server's port to answer, then mounts, and gives up on a mount that takes longer
    /// than `wait` (a capture kernel must never hang on a dead server).
    fn mount_nfs(&mut self, nfs: &NfsDestination, at: &Path, wait: Duration) -> Result<(), String>;
    /// Syncs and unmounts `at` (fine when nothing is mounted there).
    fn unmount(&mut self, at: &Path) -> Result<(), String>;
    /// Creates `dir` and its parents.
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), String>;
    /// Creates `dir`, which must not exist.
    fn create_dir(&mut self, dir: &Path) -> Result<(), String>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// The crashed kernel's host name (may be empty) and crash time (Unix seconds).
    fn crash_identity(&mut self) -> (String, i64);
    /// Saves the crashed kernel's log to `file`; returns the number of records.
    fn save_kernel_log(&mut self, file: &Path) -> Result<usize, String>;
    /// Saves `kdump info --json` of the dump to `file`.
    fn save_report(&mut self, file: &Path) -> Result<(), String>;
    /// Reserves `bytes` on the target in `file` (best effort).
    fn reserve(&mut self, file: &Path, bytes: u64);
    /// Removes `file` (best effort).
    fn remove(&mut self, file: &Path);
    /// Saves the dump to the file `dest` (atomically, as `kdump dump`); returns its size.
    fn save_dump(&mut self, dest: &Path, force: bool, spec: &DumpSpec) -> Result<u64, DumpFailure>;
    /// Saves the crash directory `dir_name` under the ssh target's directory: created as
    /// `dir_name.incomplete`, then `dmesg.txt` and `info.json`, the dump as `vmcore`, then
    /// `kdump.log` (what `log` holds by then), and renamed to `dir_name` only when all of it
    /// is written and synced. Progress and retries go to `log`.
    fn save_over_ssh(
        &mut self,
        target: &SshDestination,
        dir_name: &str,
        spec: &DumpSpec,
        log: &mut dyn StepLog,
    ) -> Result<RemoteSaved, RemoteFailure>;
    /// Saves the crash into the bucket under `<prefix>/<host>/<UTC time>/`: `dmesg.txt`,
    /// `info.json` and `kdump.log` first, with the fleet index entry (so the crash is listed
    /// even if the dump does not get there); then the dump as `vmcore`, uploaded in parts while
    /// it is written, with `vmcore.incomplete` holding the reason until it is complete (and
    /// after a failure); then `kdump.log` again. Progress and retries go to `log`.
    fn save_to_s3(
        &mut self,
        target: &S3Destination,
        spec: &DumpSpec,
        log: &mut dyn StepLog,
    ) -> Result<RemoteSaved, RemoteFailure>;
    /// Writes the dump as a flattened stream over the raw device `node`.
    fn save_flattened(&mut self, node: &Path, spec: &DumpSpec) -> Result<(), String>;
    /// Replaces `file` with `text`, synced.
    fn write_file(&mut self, file: &Path, text: &str) -> Result<(), String>;
    /// Flushes every filesystem.
    fn sync(&mut self);
}

/// The log: every line on the console, and the whole text in `kdump.log` once the crash
/// directory exists.
struct Log<'a> {
    console: &'a mut dyn Console,
    text: String,
    file: Option<PathBuf>,
}

impl Log<'_> {
    fn say(&mut self, msg: impl AsRef<str>) {
        let line = format!("[{:8.3}] kdump-init: {}", self.console.elapsed().as_secs_f64(), msg.as_ref());
        self.console.line(&line);
        self.text.push_str(&line);
        self.text.push('\n');
    }

    /// Rewrites the whole log file (cheap: it is small).
    fn flush<S: System + ?Sized>(&mut self, sys: &mut S) {
        if let Some(path) = self.file.clone()
            && let Err(e) = sys.write_file(&path, &self.text)
        {
            self.console.line(&format!("kdump-init: cannot write the log {}: {e}", path.display()));
        }
    }
}

impl StepLog for Log<'_> {
    fn say(&mut self, line: &str) {
        Log::say(self, line);
    }

    fn text(&self) -> String {
        self.text.clone()
    }
}

/// How the machine stops after a failed dump.
pub fn failure_stop(cfg: &Config) -> Action {
    match cfg.failure_action {
        FailureAction::Reboot => Action::Reboot,
        FailureAction::Poweroff => Action::Poweroff,
        FailureAction::Halt => Action::Halt,
        FailureAction::SaveLog | FailureAction::RetryStricter => cfg.final_action,
    }
}

/// Runs the capture: config, modules, target, the crash directory and the dump. Returns the
/// action to end with; everything that happened is on the console and in `kdump.log`.
pub fn run<S: System + ?Sized>(sys: &mut S, console: &mut dyn Console) -> Action {
    let mut log = Log { console, text: String::new(), file: None };
    log.say(format!("kdump {} capture init", env!("CARGO_PKG_VERSION")));
    for problem in sys.mount_pseudo_filesystems() {
        log.say(problem);
    }
    let cfg = match sys.read_config().and_then(|t| Config::parse(&t).map_err(|e| e.to_string())) {
        Ok(c) => c,
        Err(e) => {
            log.say(format!("FAILED: {}: {e}; rebooting", crate::config::CONFIG_PATH));
            return Action::Reboot;
        }
    };
    sys.on_internal_error(failure_stop(&cfg));
    let action = match save(&cfg, sys, &mut log) {
        Ok(()) => {
            log.say(format!("done; final_action = {}", cfg.final_action));
            cfg.final_action
        }
        Err(e) => {
            log.say(format!("FAILED: {e}"));
            let action = failure_stop(&cfg);
            log.say(format!(
                "failure_action = {}: {}",
                cfg.failure_action,
                match cfg.failure_action {
                    FailureAction::Reboot | FailureAction::Poweroff | FailureAction::Halt => format!("{action} now"),
                    _ => format!("kept what was saved; then final_action = {action}"),
                }
            ));
            action
        }
    };
    log.flush(sys);
    sys.sync();
    if let Err(e) = sys.unmount(Path::new(MOUNTPOINT)) {
        log.say(format!("cannot unmount {MOUNTPOINT}: {e} (synced anyway)"));
    }
    action
}

fn save<S: System + ?Sized>(cfg: &Config, sys: &mut S, log: &mut Log<'_>) -> Result<(), String> {
    let destinations = cfg.destinations().map_err(|e| e.to_string())?;
    if !sys.vmcore_present() {
        return Err(format!("{VMCORE} does not exist: this is not a capture kernel booted after a crash"));
    }
    for (file, loaded) in sys.load_modules() {
        match loaded {
            Ok(()) => log.say(format!("loaded module {file}")),
            Err(e) => log.say(format!("cannot load module {file}: {e}")),
        }
    }
    let dump = DumpSpec { level: cfg.dump.level, codec: cfg.dump.codec, threads: cfg.dump.threads as usize };
    // Up first, when configured; its failure fails the server targets, not a local fallback.
    let network = cfg.network.as_ref().map(|n| sys.bring_up_network(n, &mut |line| log.say(line)));
    if let Some(Err(e)) = &network {
        // With only local targets the table is there to be checked (network.probe): its
        // failure is the failure. Otherwise the local targets still get their chance.
        if !destinations.iter().any(|(_, d)| d.is_remote()) {
            return Err(e.clone());
        }
        log.say(format!("the network is down: {e}"));
    }
    let mut failures = Vec::new();
    let count = destinations.len();
    for (i, (target, destination)) in destinations.into_iter().enumerate() {
        if i > 0 {
            log.say(format!("trying fallback {i} of {}: {destination}", count - 1));
        }
        let saved = if destination.is_remote() {
            let up = network.clone().unwrap_or_else(|| {
                Err("no [network] table in the initramfs: run kdump setup again (it adds the route to the server)"
                    .into())
            });
            match (up, destination) {
                (Err(e), _) => Err(e),
                (Ok(()), Destination::Ssh(ssh)) => save_over_ssh(cfg, &ssh, &dump, sys, log),
                (Ok(()), Destination::S3(s3)) => save_to_s3(cfg, &s3, &dump, sys, log),
                (Ok(()), Destination::Nfs(nfs)) => {
                    let saved = save_to_nfs(cfg, target, &nfs, &dump, sys, log);
                    if saved.is_err() && i + 1 < count {
                        leave_mounted_target(sys, log);
                    }
                    saved
                }
                (Ok(()), Destination::Disk(_)) => unreachable!("a disk is not remote"),
            }
        } else {
            let Destination::Disk(spec) = destination else { unreachable!("only a disk is local") };
            let saved = save_to_disk(cfg, target, &spec, &dump, sys, log);
            if saved.is_err() && i + 1 < count {
                leave_mounted_target(sys, log);
            }
            saved
        };
        match saved {
            Ok(()) => return Ok(()),
            Err(e) if i + 1 < count => {
                log.say(format!("the target failed: {e}; trying the next one"));
                failures.push(e);
            }
            Err(e) => failures.push(e),
        }
    }
    Err(match failures.len() {
        1 => failures.remove(0),
        n => format!("all {n} targets failed: {}", failures.join("; then: ")),
    })
}

/// Before the next target: what this one holds stays as it is, with its log; the next
/// starts afresh on an empty mount point.
fn leave_mounted_target<S: System + ?Sized>(sys: &mut S, log: &mut Log<'_>) {
    log.flush(sys);
    log.file = None;
    sys.sync();
    if let Err(e) = sys.unmount(Path::new(MOUNTPOINT)) {
        log.say(format!("cannot unmount {MOUNTPOINT}: {e}"));
    }
}

/// The crash directory in an NFS export, written as on a local filesystem.
fn save_to_nfs<S: System + ?Sized>(
    cfg: &Config,
    target: &Target,
    nfs: &NfsDestination,
    dump: &DumpSpec,
    sys: &mut S,
    log: &mut Log<'_>,
) -> Result<(), String> {
    let mountpoint = Path::new(MOUNTPOINT);
    sys.create_dir_all(mountpoint).map_err(|e| format!("cannot create {MOUNTPOINT}: {e}"))?;
    log.say(format!(
        "mounting {} (NFSv{}, soft, timeo {} s, {} retries); waiting up to {} s for the server",
        nfs.url_text(),
        nfs.version,
        crate::config::NFS_TIMEO_DECISECONDS / 10,
        crate::config::NFS_RETRANS,
        target.wait_seconds
    ));
    sys.mount_nfs(nfs, mountpoint, Duration::from_secs(u64::from(target.wait_seconds)))
        .map_err(|e| format!("cannot mount {}: {e}", nfs.url_text()))?;
    log.say(format!("mounted {} ({})", nfs.url_text(), nfs.mount_options()));
    save_crash_dir(cfg, mountpoint, "", Path::new(&nfs.url_text()), dump, sys, log)
}

/// The crash directory on a local filesystem (or the flattened stream on a raw device).
fn save_to_disk<S: System + ?Sized>(
    cfg: &Config,
    target: &Target,
    spec: &TargetSpec,
    dump: &DumpSpec,
    sys: &mut S,
    log: &mut Log<'_>,
) -> Result<(), String> {
    let dump = *dump;
    let (node, detected) = wait_for_target(target, spec, sys, log)?;
    if target.raw {
        log.say(format!("kdump dump -F {} {VMCORE} > {}", dump.described(), node.display()));
        sys.save_flattened(&node, &dump)?;
        log.say(format!(
            "saved the flattened dump on {}; after reboot: kdump extract {} DEST",
            node.display(),
            node.display()
        ));
        return Ok(());
    }
    let fstype = if target.fstype == "auto" {
        detected.ok_or("target.fstype is auto but the target holds no ext2/3/4, XFS or btrfs superblock")?
    } else {
        target.fstype.clone()
    };
    let mountpoint = Path::new(MOUNTPOINT);
    sys.create_dir_all(mountpoint).map_err(|e| format!("cannot create {MOUNTPOINT}: {e}"))?;
    sys.mount(&node, mountpoint, &fstype)
        .map_err(|e| format!("cannot mount {} ({fstype}) on {MOUNTPOINT}: {e}", node.display()))?;
    log.say(format!("mounted {} ({fstype})", node.display()));
    let base = mountpoint.join(target.path.trim_start_matches('/'));
    sys.create_dir_all(&base).map_err(|e| format!("cannot create {} on the target: {e}", target.path))?;
    save_crash_dir(cfg, &base, &format!("{spec}:"), Path::new(&target.path), &dump, sys, log)
}

/// Writes `<host>-<UTC time>/` in `base` (a mounted filesystem's directory): the small files,
/// then the dump. `shown_base` names `base` in messages, after `announce` in the first one.
fn save_crash_dir<S: System + ?Sized>(
    cfg: &Config,
    base: &Path,
    announce: &str,
    shown_base: &Path,
    dump: &DumpSpec,
    sys: &mut S,
    log: &mut Log<'_>,
) -> Result<(), String> {
    let dump = *dump;

    // Name the directory after the crashed host and the crash time.
    let (host, when) = sys.crash_identity();
    let name = unique(&crash_dir_name(&host, when), |n| sys.exists(&base.join(n)));
    let dir = base.join(&name);
    sys.create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let shown = shown_base.join(&name);
    log.file = Some(dir.join("kdump.log"));
    log.say(format!("saving into {announce}{}", shown.display()));
    log.flush(sys);

    // The small files first, so that a full disk still leaves them.
    match sys.save_kernel_log(&dir.join("dmesg.txt")) {
        Ok(n) => log.say(format!("saved the kernel log ({n} records) to dmesg.txt")),
        Err(e) => log.say(format!("cannot save the kernel log: {e}")),
    }
    match sys.save_report(&dir.join("info.json")) {
        Ok(()) => log.say("saved the crash report to info.json"),
        Err(e) => log.say(format!("cannot save info.json: {e}")),
    }
    let reserve = dir.join(".kdump-log-reserve");
    sys.reserve(&reserve, LOG_RESERVE);
    log.flush(sys);

    let vmcore = dir.join("vmcore");
    log.say(format!("kdump dump {} {VMCORE} {}", dump.described(), shown.join("vmcore").display()));
    let mut result = sys.save_dump(&vmcore, false, &dump).map(|size| (size, dump.level));
    if let Err(e) = &result
        && cfg.failure_action == FailureAction::RetryStricter
        && dump.level != 31
    {
        log.say(format!("the dump failed: {}", e.message));
        log.say("failure_action = retry-stricter: retrying at dump level 31");
        log.flush(sys);
        let stricter = DumpSpec { level: 31, ..dump };
        match sys.save_dump(&vmcore, true, &stricter) {
            Ok(size) => result = Ok((size, 31)),
            // Report the first failure: it is what happened to the dump that was asked for.
            Err(again) => log.say(format!("the retry at level 31 failed too: {}", again.message)),
        }
    }
    sys.remove(&reserve);
    sys.sync();
    match result {
        Ok((size, level)) => {
            log.say(format!(
                "saved the dump to {} ({:.1} MiB, dump level {level}, codec {})",
                shown.join("vmcore").display(),
                size as f64 / (1 << 20) as f64,
                cfg.dump.codec
            ));
            Ok(())
        }
        Err(e) if sys.exists(&dir.join("vmcore.incomplete")) => {
            // The writer's own message says what happened; say where the pieces are, with target paths.
            Err(format!(
                "{}; the pages saved so far are in {} (marked incomplete), the log in {}",
                e.root_cause,
                shown.join("vmcore.incomplete").display(),
                shown.join("kdump.log").display()
            ))
        }
        Err(e) => Err(e.message),
    }
}

/// The crash directory on the ssh server. Nothing on the server looks complete unless all of
/// it is: the System renames `.incomplete` away only at the end.
fn save_over_ssh<S: System + ?Sized>(
    cfg: &Config,
    ssh: &SshDestination,
    dump: &DumpSpec,
    sys: &mut S,
    log: &mut Log<'_>,
) -> Result<(), String> {
    let (host, when) = sys.crash_identity();
    let name = crash_dir_name(&host, when);
    log.say(format!("saving over ssh into {ssh}/{name} (named {name}.incomplete until complete)"));
    log.say(format!("kdump dump {} {VMCORE} {}/{name}/vmcore", dump.described(), ssh.url));
    let mut saved = sys.save_over_ssh(ssh, &name, dump, log);
    let mut used = *dump;
    if let Some(stricter) = retry_stricter(cfg, dump, &saved, log) {
        // A directory of its own: the first attempt's stays `.incomplete` beside it.
        let again = format!("{name}.1");
        log.say(format!("saving over ssh into {ssh}/{again}"));
        match sys.save_over_ssh(ssh, &again, &stricter, log) {
            Ok(done) => (saved, used) = (Ok(done), stricter),
            // Report the first failure: it is what happened to the dump that was asked for.
            Err(again) => log.say(format!("the retry at level 31 failed too: {}", again.reason)),
        }
    }
    remote_outcome(
        cfg,
        &used,
        log,
        saved,
        |dir| format!("{}:{dir}", ssh.url.host),
        |dir| format!("what was sent is in {}:{dir} (still named .incomplete: not a complete dump)", ssh.url.host),
    )
}

/// With `failure_action = retry-stricter`, a dump to a server that failed once the transfer
/// had begun (not a refusal, which would repeat) is tried again at level 31 (less to send):
/// the spec to retry with.
fn retry_stricter(
    cfg: &Config,
    dump: &DumpSpec,
    saved: &Result<RemoteSaved, RemoteFailure>,
    log: &mut Log<'_>,
) -> Option<DumpSpec> {
    let Err(RemoteFailure { reason, left: Some(_) }) = saved else { return None };
    if cfg.failure_action != FailureAction::RetryStricter || dump.level == 31 {
        return None;
    }
    log.say(format!("the dump failed: {reason}"));
    log.say("failure_action = retry-stricter: retrying at dump level 31");
    Some(DumpSpec { level: 31, ..*dump })
}

/// Says where a dump saved on a server is (`place` of its directory), or gives the failure
/// with what it left (`left` of the directory).
fn remote_outcome(
    cfg: &Config,
    dump: &DumpSpec,
    log: &mut Log<'_>,
    saved: Result<RemoteSaved, RemoteFailure>,
    place: impl Fn(&str) -> String,
    left: impl Fn(&str) -> String,
) -> Result<(), String> {
    match saved {
        Ok(saved) => {
            log.say(format!(
                "saved the dump to {}/vmcore ({:.1} MiB, dump level {}, codec {})",
                place(&saved.dir),
                saved.dump_size as f64 / (1 << 20) as f64,
                dump.level,
                cfg.dump.codec
            ));
            Ok(())
        }
        Err(RemoteFailure { reason, left: Some(dir) }) => Err(format!("{reason}; {}", left(&dir))),
        Err(RemoteFailure { reason, left: None }) => Err(reason),
    }
}

/// The crash in the bucket. The System never completes `vmcore` unless the whole dump is
/// there: a failed upload is aborted and leaves `vmcore.incomplete` with the reason.
fn save_to_s3<S: System + ?Sized>(
    cfg: &Config,
    s3: &S3Destination,
    dump: &DumpSpec,
    sys: &mut S,
    log: &mut Log<'_>,
) -> Result<(), String> {
    log.say(format!("saving into the S3 bucket {s3}"));
    log.say(format!("kdump dump {} {VMCORE} {}/<host>/<time>/vmcore", dump.described(), s3.url_text()));
    let mut saved = sys.save_to_s3(s3, dump, log);
    let mut used = *dump;
    if let Some(stricter) = retry_stricter(cfg, dump, &saved, log) {
        // The same crash folder: the first attempt's upload was aborted, its marker is replaced.
        match sys.save_to_s3(s3, &stricter, log) {
            Ok(done) => (saved, used) = (Ok(done), stricter),
            Err(again) => log.say(format!("the retry at level 31 failed too: {}", again.reason)),
        }
    }
    let bucket = &s3.url.bucket;
    remote_outcome(
        cfg,
        &used,
        log,
        saved,
        |dir| format!("s3://{bucket}/{dir}"),
        |dir| {
            format!("the crash's small files are in s3://{bucket}/{dir}, with vmcore.incomplete saying why (no vmcore)")
        },
    )
}

/// Waits for the target device; returns its node and fstype (from the superblock).
fn wait_for_target<S: System + ?Sized>(
    target: &Target,
    spec: &TargetSpec,
    sys: &mut S,
    log: &mut Log<'_>,
) -> Result<(PathBuf, Option<String>), String> {
    let deadline = log.console.elapsed() + Duration::from_secs(u64::from(target.wait_seconds));
    log.say(format!("waiting up to {} s for the target {spec}", target.wait_seconds));
    loop {
        if let Some((node, id)) = sys.find_target(spec) {
            log.say(format!(
                "target {spec} is {}{}",
                node.display(),
                id.as_ref()
                    .map(|i| format!(" ({}, UUID {}, label {:?})", i.fstype, i.uuid, i.label))
                    .unwrap_or_default()
            ));
            return Ok((node, id.map(|i| i.fstype.to_string())));
        }
        if log.console.elapsed() >= deadline {
            let devs = sys.block_devices();
            return Err(format!(
                "the target {spec} did not appear within {} s (block devices: {})",
                target.wait_seconds,
                if devs.is_empty() { "none".to_string() } else { devs.join(", ") }
            ));
        }
        sys.sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests;
