//! The capture init: this binary as PID 1 of the capture kernel's initramfs
//! (built by `kdump setup`). It mounts /proc, /sys and /dev, loads the modules
//! the target needs, finds and mounts the target, saves the dump with the
//! same code as `kdump dump`, the kernel log and `kdump info --json` into
//! `<path>/<host>-<UTC time>/`, logs to the console and `kdump.log`, syncs, and
//! ends with `final_action` (or `failure_action` when the dump fails). It
//! never needs the root filesystem.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kdump_service::config::CONFIG_PATH;
use kdump_service::initramfs::{MODULE_DIR, MODULE_LIST, module_list};
use kdump_service::naming::{crash_dir_name, unique};
use kdump_service::{Action, Config, FailureAction, TargetSpec};
use kdump_sys::SysRoot;
use kdump_sys::power::Stop;
use kdump_sys::{block, file, module, mount, power};

use crate::dump::{Output, SaveRequest, save as save_dump};

const VMCORE: &str = "/proc/vmcore";
const MOUNTPOINT: &str = "/mnt/target";
/// Kept free on the target during the dump, so the log can still be written when the disk fills up.
const LOG_RESERVE: u64 = 1 << 20;

/// True when this process is the capture kernel's init: PID 1 started as
/// `/init` (what the kernel runs from an initramfs). Both are required, so
/// `kdump` as PID 1 of a container, or a copy named /init run by hand, stays
/// the ordinary command.
pub fn is_capture_init() -> bool {
    std::process::id() == 1 && std::env::args_os().next().is_some_and(|a| a == "/init")
}

/// The console and file log.
struct Log {
    start: Instant,
    text: String,
    file: Option<PathBuf>,
}

impl Log {
    fn say(&mut self, msg: impl AsRef<str>) {
        let line = format!("[{:8.3}] kdump-init: {}", self.start.elapsed().as_secs_f64(), msg.as_ref());
        eprintln!("{line}");
        self.text.push_str(&line);
        self.text.push('\n');
    }

    /// Rewrites the whole log file (cheap: it is small) and syncs it.
    fn flush(&mut self) {
        if let Some(path) = &self.file {
            let res =
                File::create(path).and_then(|mut f| f.write_all(self.text.as_bytes()).and_then(|()| f.sync_all()));
            if let Err(e) = res {
                eprintln!("kdump-init: cannot write the log {}: {e}", path.display());
            }
        }
    }
}

/// What a panic of the init does: 0 reboot, 1 power off, 2 halt (set from the config).
static ON_PANIC: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn failure_stop(cfg: &Config) -> Action {
    match cfg.failure_action {
        FailureAction::Reboot => Action::Reboot,
        FailureAction::Poweroff => Action::Poweroff,
        FailureAction::Halt => Action::Halt,
        FailureAction::SaveLog | FailureAction::RetryStricter => cfg.final_action,
    }
}

/// Runs the capture init. Never returns.
pub fn run() -> ! {
    // PID 1 must not just die on a bug (the kernel would panic): say so, then stop as configured.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("kdump-init: FAILED: internal error: {info}");
        let how = match ON_PANIC.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Stop::Poweroff,
            2 => Stop::Halt,
            _ => Stop::Reboot,
        };
        let err = power::stop_machine(how);
        eprintln!("kdump-init: cannot stop the machine: {err}");
    }));
    let mut log = Log { start: Instant::now(), text: String::new(), file: None };
    log.say(format!("kdump {} capture init (pid {})", env!("CARGO_PKG_VERSION"), std::process::id()));
    mount_pseudo_filesystems(&mut log);
    let cfg = match std::fs::read_to_string(CONFIG_PATH)
        .context("cannot read the config")
        .and_then(|t| Config::parse(&t).map_err(anyhow::Error::from))
    {
        Ok(c) => c,
        Err(e) => {
            log.say(format!("FAILED: {CONFIG_PATH}: {e:#}; rebooting"));
            stop(&mut log, Action::Reboot);
        }
    };
    let on_panic = match failure_stop(&cfg) {
        Action::Reboot => 0,
        Action::Poweroff => 1,
        Action::Halt => 2,
    };
    ON_PANIC.store(on_panic, std::sync::atomic::Ordering::Relaxed);
    match save(&cfg, &mut log) {
        Ok(()) => {
            log.say(format!("done; final_action = {}", cfg.final_action));
            log.flush();
            unmount(&mut log);
            stop(&mut log, cfg.final_action);
        }
        Err(e) => {
            log.say(format!("FAILED: {e:#}"));
            let action = failure_stop(&cfg);
            log.say(format!(
                "failure_action = {}: {}",
                cfg.failure_action,
                match cfg.failure_action {
                    FailureAction::Reboot | FailureAction::Poweroff | FailureAction::Halt => format!("{action} now"),
                    _ => format!("kept what was saved; then final_action = {action}"),
                }
            ));
            log.flush();
            unmount(&mut log);
            stop(&mut log, action);
        }
    }
}

fn mount_pseudo_filesystems(log: &mut Log) {
    for (src, dir, fstype) in [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")]
    {
        let _ = std::fs::create_dir_all(dir);
        if let Err(e) = mount::mount(src, Path::new(dir), fstype, 0)
            && !mount::is_already_mounted(&e)
        {
            log.say(format!("cannot mount {fstype} on {dir}: {e}"));
        }
    }
}

fn load_modules(log: &mut Log) {
    let list = std::fs::read_to_string(format!("/{MODULE_LIST}")).unwrap_or_default();
    for file in module_list(&list) {
        let path = PathBuf::from(format!("/{MODULE_DIR}/{file}"));
        match File::open(&path).and_then(|f| module::finit_module(&f)) {
            Ok(()) => log.say(format!("loaded module {file}")),
            Err(e) => log.say(format!("cannot load module {file}: {e}")),
        }
    }
}

fn stop(log: &mut Log, action: Action) -> ! {
    let how = match action {
        Action::Reboot => Stop::Reboot,
        Action::Poweroff => Stop::Poweroff,
        Action::Halt => Stop::Halt,
    };
    let err = power::stop_machine(how);
    log.say(format!("{action} failed: {err}; halting here"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn unmount(log: &mut Log) {
    kdump_sys::kexec::sync_filesystems();
    if Path::new(MOUNTPOINT).exists()
        && let Err(e) = mount::umount(Path::new(MOUNTPOINT))
        && !mount::is_not_mounted(&e)
    {
        log.say(format!("cannot unmount {MOUNTPOINT}: {e} (synced anyway)"));
    }
}

/// Waits for the target device; returns its node and fstype (from the superblock).
fn wait_for_target(cfg: &Config, spec: &TargetSpec, log: &mut Log) -> anyhow::Result<(PathBuf, Option<String>)> {
    let root = SysRoot::host();
    let deadline = Instant::now() + Duration::from_secs(u64::from(cfg.target.wait_seconds));
    log.say(format!("waiting up to {} s for the target {spec}", cfg.target.wait_seconds));
    loop {
        if let Some((node, id)) = crate::service::find_target(&root, spec) {
            log.say(format!(
                "target {spec} is {}{}",
                node.display(),
                id.as_ref()
                    .map(|i| format!(" ({}, UUID {}, label {:?})", i.fstype, i.uuid, i.label))
                    .unwrap_or_default()
            ));
            return Ok((node, id.map(|i| i.fstype.to_string())));
        }
        if Instant::now() >= deadline {
            let devs: Vec<String> =
                block::block_devices(&root).unwrap_or_default().into_iter().map(|d| d.name).collect();
            bail!(
                "the target {spec} did not appear within {} s (block devices: {})",
                cfg.target.wait_seconds,
                if devs.is_empty() { "none".to_string() } else { devs.join(", ") }
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What `kdump dump` would be asked for this config at `level`.
fn request(cfg: &Config, level: u32) -> SaveRequest {
    SaveRequest { threads: Some(cfg.dump.threads as usize), ..SaveRequest::new(level, cfg.dump.codec) }
}

/// The command line `kdump dump` would take for `req`, for the log.
fn described(req: &SaveRequest) -> String {
    let codec = req.codec.makedumpfile_flag().map(|f| format!(" {f}")).unwrap_or_default();
    format!("-d {}{codec} --num-threads {}", req.level, req.threads.unwrap_or(0))
}

fn save(cfg: &Config, log: &mut Log) -> anyhow::Result<()> {
    let spec = cfg.target_spec()?;
    if !Path::new(VMCORE).exists() {
        bail!("{VMCORE} does not exist: this is not a capture kernel booted after a crash");
    }
    load_modules(log);
    if let Some(network) = &cfg.network {
        crate::network::bring_up(network, &mut |line| log.say(line))?;
    }
    let (node, detected) = wait_for_target(cfg, &spec, log)?;
    if cfg.target.raw {
        return save_raw(cfg, &node, log);
    }
    let fstype = if cfg.target.fstype == "auto" {
        detected.context("target.fstype is auto but the target holds no ext2/3/4, XFS or btrfs superblock")?
    } else {
        cfg.target.fstype.clone()
    };
    std::fs::create_dir_all(MOUNTPOINT)?;
    mount::mount(&node.to_string_lossy(), Path::new(MOUNTPOINT), &fstype, 0)
        .with_context(|| format!("cannot mount {} ({fstype}) on {MOUNTPOINT}", node.display()))?;
    log.say(format!("mounted {} ({fstype})", node.display()));
    let base = Path::new(MOUNTPOINT).join(cfg.target.path.trim_start_matches('/'));
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {} on the target", cfg.target.path))?;

    // Name the directory after the crashed host and the crash time.
    let (host, when) = crash_identity();
    let name = unique(&crash_dir_name(&host, when), |n| base.join(n).exists());
    let dir = base.join(&name);
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let shown = Path::new(&cfg.target.path).join(&name);
    log.file = Some(dir.join("kdump.log"));
    log.say(format!("saving into {spec}:{}", shown.display()));
    log.flush();

    // The small files first, so that a full disk still leaves them.
    match std::fs::File::create(dir.join("dmesg.txt")).map_err(anyhow::Error::from).and_then(|mut f| {
        let mut dump = crate::dumpfile::open(Path::new(VMCORE))?;
        let records = crate::dmesg::records(&mut dump)?;
        f.write_all(&kdump_kernel::printk::format_like_makedumpfile(&records))?;
        f.sync_all()?;
        Ok(records.len())
    }) {
        Ok(n) => log.say(format!("saved the kernel log ({n} records) to dmesg.txt")),
        Err(e) => log.say(format!("cannot save the kernel log: {e:#}")),
    }
    match std::fs::File::create(dir.join("info.json")).map_err(anyhow::Error::from).and_then(|mut f| {
        let saved = Path::new("/").join(kdump_service::initramfs::KALLSYMS);
        crate::info::write(Path::new(VMCORE), true, None, Some(&saved), &mut f)?;
        f.sync_all()?;
        Ok(())
    }) {
        Ok(()) => log.say("saved the crash report to info.json"),
        Err(e) => log.say(format!("cannot save info.json: {e:#}")),
    }
    let reserve = dir.join(".kdump-log-reserve");
    if let Ok(f) = File::create(&reserve) {
        let _ = file::reserve_space(&f, LOG_RESERVE);
    }
    log.flush();

    let vmcore = dir.join("vmcore");
    let req = request(cfg, cfg.dump.level);
    log.say(format!("kdump dump {} {VMCORE} {}", described(&req), shown.join("vmcore").display()));
    let mut result = save_dump(Path::new(VMCORE), Output::File { path: &vmcore, force: false }, &req);
    let mut level = cfg.dump.level;
    if let Err(e) = &result
        && cfg.failure_action == FailureAction::RetryStricter
        && cfg.dump.level != 31
    {
        log.say(format!("the dump failed: {e:#}"));
        log.say("failure_action = retry-stricter: retrying at dump level 31");
        log.flush();
        match save_dump(Path::new(VMCORE), Output::File { path: &vmcore, force: true }, &request(cfg, 31)) {
            Ok(()) => {
                result = Ok(());
                level = 31;
            }
            // Report the first failure: it is what happened to the dump that was asked for.
            Err(again) => log.say(format!("the retry at level 31 failed too: {again:#}")),
        }
    }
    let _ = std::fs::remove_file(&reserve);
    kdump_sys::kexec::sync_filesystems();
    match result {
        Ok(()) => {
            let size = std::fs::metadata(&vmcore).map(|m| m.len()).unwrap_or(0);
            log.say(format!(
                "saved the dump to {} ({:.1} MiB, dump level {level}, codec {})",
                shown.join("vmcore").display(),
                size as f64 / (1 << 20) as f64,
                cfg.dump.codec
            ));
            Ok(())
        }
        Err(e) => {
            let partial = dir.join("vmcore.incomplete");
            if !partial.exists() {
                return Err(e);
            }
            // The writer's own message says what happened; say where the pieces are, with target paths.
            let msg = format!(
                "{}; the pages saved so far are in {} (marked incomplete), the log in {}",
                e.root_cause(),
                shown.join("vmcore.incomplete").display(),
                shown.join("kdump.log").display()
            );
            bail!(msg)
        }
    }
}

/// The crashed kernel's host name and crash time (VMCOREINFO CRASHTIME), else now.
fn crash_identity() -> (String, i64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let Ok(mut dump) = crate::dumpfile::open(Path::new(VMCORE)) else { return (String::new(), now) };
    let Ok(info) = dump.vmcoreinfo() else { return (String::new(), now) };
    let when = info.crash_time().unwrap_or(now);
    let host = kdump_kernel::memory::X86_64Layout::from_vmcoreinfo(&info)
        .ok()
        .and_then(|layout| {
            let mut mem = kdump_kernel::KernelMemory::new(crate::dumpfile::PhysAdapter::new(dump.mem.as_mut()), layout);
            crate::kernel::identity(&mut mem, &info).nodename
        })
        .unwrap_or_default();
    (host, when)
}

/// A raw device: the flattened stream (`kdump dump -F`) written over the device.
fn save_raw(cfg: &Config, node: &Path, log: &mut Log) -> anyhow::Result<()> {
    let dev = OpenOptions::new().write(true).open(node).with_context(|| format!("cannot open {}", node.display()))?;
    let req = request(cfg, cfg.dump.level);
    log.say(format!("kdump dump -F {} {VMCORE} > {}", described(&req), node.display()));
    let name = node.display().to_string();
    let mut stream = std::io::BufWriter::with_capacity(1 << 20, &dev);
    let result = save_dump(Path::new(VMCORE), Output::Flattened { sink: &mut stream, name: &name }, &req);
    drop(stream);
    dev.sync_all().with_context(|| format!("cannot flush {}", node.display()))?;
    result?;
    log.say(format!(
        "saved the flattened dump on {}; after reboot: kdump extract {} DEST",
        node.display(),
        node.display()
    ));
    Ok(())
}
