//! The capture init: this binary as PID 1 of the capture kernel's initramfs (built by
//! `kdump setup`). What it decides is `kdump_service::capture::run`; this file is the machine it
//! runs on: real mounts, modules, devices and dumps (the same save as `kdump dump`), the
//! console, and the final reboot, power-off or halt. It never needs the root filesystem.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kdump_collector::{SaveRequest, Sink};
use kdump_dumpfile::WriteAt;
use kdump_service::capture::{Console, DumpFailure, DumpSpec, RemoteFailure, RemoteSaved, StepLog, System, VMCORE};
use kdump_service::config::CONFIG_PATH;
use kdump_service::initramfs::{MODULE_DIR, MODULE_LIST, module_list};
use kdump_service::superblock::FsIdentity;
use kdump_service::{Action, Network, SshDestination, TargetSpec};
use kdump_sys::SysRoot;
use kdump_sys::power::Stop;
use kdump_sys::{block, file, module, mount, power};

use crate::dump::{Messages, save as save_dump};

/// True when this process is the capture kernel's init: PID 1 started as
/// `/init` (what the kernel runs from an initramfs). Both are required, so
/// `kdump` as PID 1 of a container, or a copy named /init run by hand, stays
/// the ordinary command.
pub fn is_capture_init() -> bool {
    std::process::id() == 1 && std::env::args_os().next().is_some_and(|a| a == "/init")
}

/// What a panic of the init does: 0 reboot, 1 power off, 2 halt (set from the config).
static ON_PANIC: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

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
    let mut console = Serial { start: Instant::now() };
    let action = kdump_service::capture::run(&mut Machine, &mut console);
    let err = power::stop_machine(stop_of(action));
    eprintln!("kdump-init: {action} failed: {err}; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn stop_of(action: Action) -> Stop {
    match action {
        Action::Reboot => Stop::Reboot,
        Action::Poweroff => Stop::Poweroff,
        Action::Halt => Stop::Halt,
    }
}

/// The capture kernel's machine.
struct Machine;

/// The console (stderr, the serial line in the lab), with the time since the init started.
struct Serial {
    start: Instant,
}

impl Console for Serial {
    fn line(&mut self, line: &str) {
        eprintln!("{line}");
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

fn request(spec: &DumpSpec) -> SaveRequest {
    SaveRequest { threads: Some(spec.threads), ..SaveRequest::new(spec.level, spec.codec) }
}

impl System for Machine {
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }

    fn bring_up_network(&mut self, network: &Network, say: &mut dyn FnMut(String)) -> Result<(), String> {
        crate::network::bring_up(network, say).map_err(|e| format!("{e:#}"))
    }

    fn mount_pseudo_filesystems(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for (src, dir, fstype) in
            [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")]
        {
            let _ = std::fs::create_dir_all(dir);
            if let Err(e) = mount::mount(src, Path::new(dir), fstype, 0)
                && !mount::is_already_mounted(&e)
            {
                problems.push(format!("cannot mount {fstype} on {dir}: {e}"));
            }
        }
        problems
    }

    fn read_config(&mut self) -> Result<String, String> {
        std::fs::read_to_string(CONFIG_PATH).map_err(|e| format!("cannot read the config: {e}"))
    }

    fn on_internal_error(&mut self, action: Action) {
        let code = match action {
            Action::Reboot => 0,
            Action::Poweroff => 1,
            Action::Halt => 2,
        };
        ON_PANIC.store(code, std::sync::atomic::Ordering::Relaxed);
    }

    fn vmcore_present(&mut self) -> bool {
        Path::new(VMCORE).exists()
    }

    fn load_modules(&mut self) -> Vec<(String, Result<(), String>)> {
        let list = std::fs::read_to_string(format!("/{MODULE_LIST}")).unwrap_or_default();
        module_list(&list)
            .into_iter()
            .map(|name| {
                let path = PathBuf::from(format!("/{MODULE_DIR}/{name}"));
                let loaded = File::open(&path).and_then(|f| module::finit_module(&f)).map_err(|e| e.to_string());
                (name.to_string(), loaded)
            })
            .collect()
    }

    fn find_target(&mut self, spec: &TargetSpec) -> Option<(PathBuf, Option<FsIdentity>)> {
        crate::service::find_target(&SysRoot::host(), spec)
    }

    fn block_devices(&mut self) -> Vec<String> {
        block::block_devices(&SysRoot::host()).unwrap_or_default().into_iter().map(|d| d.name).collect()
    }

    fn mount(&mut self, node: &Path, at: &Path, fstype: &str) -> Result<(), String> {
        mount::mount(&node.to_string_lossy(), at, fstype, 0).map_err(|e| e.to_string())
    }

    fn unmount(&mut self, at: &Path) -> Result<(), String> {
        kdump_sys::kexec::sync_filesystems();
        match mount::umount(at) {
            Err(e) if !mount::is_not_mounted(&e) && at.exists() => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    fn create_dir_all(&mut self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())
    }

    fn create_dir(&mut self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir(dir).map_err(|e| e.to_string())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn crash_identity(&mut self) -> (String, i64) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let Ok(mut dump) = kdump_collector::source::open(Path::new(VMCORE)) else { return (String::new(), now) };
        let Ok(info) = dump.vmcoreinfo() else { return (String::new(), now) };
        let when = info.crash_time().unwrap_or(now);
        let host = kdump_kernel::memory::X86_64Layout::from_vmcoreinfo(&info)
            .ok()
            .and_then(|layout| {
                let mut mem =
                    kdump_kernel::KernelMemory::new(kdump_collector::PhysAdapter::new(dump.mem.as_mut()), layout);
                kdump_kernel::identity::identity(&mut mem, &info).nodename
            })
            .unwrap_or_default();
        (host, when)
    }

    fn save_kernel_log(&mut self, path: &Path) -> Result<usize, String> {
        let saved = (|| -> anyhow::Result<usize> {
            let mut f = File::create(path)?;
            let mut dump = kdump_collector::source::open(Path::new(VMCORE))?;
            let records = crate::dmesg::records(&mut dump)?;
            f.write_all(&kdump_kernel::printk::format_like_makedumpfile(&records))?;
            f.sync_all()?;
            Ok(records.len())
        })();
        saved.map_err(|e| format!("{e:#}"))
    }

    fn save_report(&mut self, path: &Path) -> Result<(), String> {
        let saved = (|| -> anyhow::Result<()> {
            let mut f = File::create(path)?;
            let symbols = Path::new("/").join(kdump_service::initramfs::KALLSYMS);
            crate::info::write(Path::new(VMCORE), true, None, Some(&symbols), &mut f)?;
            f.sync_all()?;
            Ok(())
        })();
        saved.map_err(|e| format!("{e:#}"))
    }

    fn reserve(&mut self, path: &Path, bytes: u64) {
        if let Ok(f) = File::create(path) {
            let _ = file::reserve_space(&f, bytes);
        }
    }

    fn remove(&mut self, path: &Path) {
        let _ = std::fs::remove_file(path);
    }

    fn save_dump(&mut self, dest: &Path, force: bool, spec: &DumpSpec) -> Result<u64, DumpFailure> {
        save_dump(Path::new(VMCORE), Sink::File { path: dest, force }, &request(spec), Messages::DEFAULT)
            .map(|saved| saved.file_size())
            .map_err(|e| DumpFailure { message: format!("{e:#}"), root_cause: e.root_cause().to_string() })
    }

    fn save_over_ssh(
        &mut self,
        ssh: &SshDestination,
        dir_name: &str,
        spec: &DumpSpec,
        log: &mut dyn StepLog,
    ) -> Result<RemoteSaved, RemoteFailure> {
        let refused = |reason: String| RemoteFailure { reason, left: None };
        let target = crate::ssh_target::from_initramfs(ssh, Path::new("/")).map_err(|e| refused(format!("{e:#}")))?;
        log.say(&format!("ssh: connecting to {}:{} ({} as {})", ssh.address, ssh.url.port, ssh.url.host, ssh.url.user));
        let mut conn = target
            .connect_retrying(CONNECT_ATTEMPTS, CONNECT_DELAY, |n, e| {
                log.say(&format!(
                    "ssh: attempt {n} of {CONNECT_ATTEMPTS} failed: {e}; again in {} s",
                    CONNECT_DELAY.as_secs()
                ))
            })
            .map_err(|e| refused(e.to_string()))?;
        log.say(&format!("ssh: logged in as {} with key {}", ssh.url.user, target.key.fingerprint()));
        let mut dir = conn.create_crash_dir(dir_name).map_err(|e| refused(e.to_string()))?;
        let left = dir.path().to_string();
        log.say(&format!("ssh: created {}:{left}", ssh.url.host));
        match fill_remote_dir(&mut dir, &ssh.url.host, spec, log) {
            Ok(dump_size) => {
                // kdump.log last but one: the rename is what makes the directory look complete.
                let done = dir
                    .write_file("kdump.log", log.text().as_bytes())
                    .and_then(|()| dir.complete())
                    .map_err(|e| RemoteFailure { reason: e.to_string(), left: Some(left.clone()) })?;
                let _ = conn.close();
                Ok(RemoteSaved { dir: done, dump_size })
            }
            Err(reason) => {
                log.say(&format!("ssh: the crash directory stays {left}: {reason}"));
                // Best effort: the connection may be what failed.
                let _ = dir.write_file("kdump.log", log.text().as_bytes());
                Err(RemoteFailure { reason, left: Some(left) })
            }
        }
    }

    fn save_flattened(&mut self, node: &Path, spec: &DumpSpec) -> Result<(), String> {
        let dev =
            OpenOptions::new().write(true).open(node).map_err(|e| format!("cannot open {}: {e}", node.display()))?;
        let name = node.display().to_string();
        let mut stream = std::io::BufWriter::with_capacity(1 << 20, &dev);
        let result = save_dump(
            Path::new(VMCORE),
            Sink::Flattened { stream: &mut stream, name: &name },
            &request(spec),
            Messages::DEFAULT,
        );
        drop(stream);
        dev.sync_all().map_err(|e| format!("cannot flush {}: {e}", node.display()))?;
        result.map(drop).map_err(|e| format!("{e:#}"))
    }

    fn write_file(&mut self, path: &Path, text: &str) -> Result<(), String> {
        File::create(path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .map_err(|e| e.to_string())
    }

    fn sync(&mut self) {
        kdump_sys::kexec::sync_filesystems();
    }
}

/// Connection attempts in the capture kernel while the server does not answer (the network
/// may need a moment after DHCP; the server may be restarting), and the pause between them.
const CONNECT_ATTEMPTS: u32 = 5;
const CONNECT_DELAY: Duration = Duration::from_secs(3);
/// How often the transfer prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// The small files, then the dump; returns the dump's size. A local problem with a small
/// file (an unreadable log) is said and skipped; any write error on the server stops.
fn fill_remote_dir(
    dir: &mut kdump_ssh::RemoteCrashDir<'_>,
    host: &str,
    spec: &DumpSpec,
    log: &mut dyn StepLog,
) -> Result<u64, String> {
    let kernel_log = (|| -> anyhow::Result<(Vec<u8>, usize)> {
        let mut dump = kdump_collector::source::open(Path::new(VMCORE))?;
        let records = crate::dmesg::records(&mut dump)?;
        Ok((kdump_kernel::printk::format_like_makedumpfile(&records), records.len()))
    })();
    match kernel_log {
        Ok((text, n)) => {
            dir.write_file("dmesg.txt", &text).map_err(|e| e.to_string())?;
            log.say(&format!("saved the kernel log ({n} records) to dmesg.txt"));
        }
        Err(e) => log.say(&format!("cannot read the kernel log: {e:#}")),
    }
    let mut report = Vec::new();
    let symbols = Path::new("/").join(kdump_service::initramfs::KALLSYMS);
    match crate::info::write(Path::new(VMCORE), true, None, Some(&symbols), &mut report) {
        Ok(()) => {
            dir.write_file("info.json", &report).map_err(|e| e.to_string())?;
            log.say("saved the crash report to info.json");
        }
        Err(e) => log.say(&format!("cannot make info.json: {e:#}")),
    }
    let mut file = dir.create_file("vmcore").map_err(|e| e.to_string())?;
    let name = format!("{host}:{}", file.path());
    let start = Instant::now();
    let saved = {
        let mut progress = Progress { inner: &mut file, start, next: start + PROGRESS_EVERY };
        save_dump(
            Path::new(VMCORE),
            Sink::Positioned { sink: &mut progress, name: &name },
            &request(spec),
            Messages::DEFAULT,
        )
    };
    let sent = file.bytes_written();
    match saved {
        Ok(saved) => {
            file.finish().map_err(|e| e.to_string())?;
            let secs = start.elapsed().as_secs_f64();
            log.say(&format!(
                "ssh: sent vmcore, {:.1} MiB in {secs:.1} s ({:.1} MB/s), synced on the server",
                sent as f64 / (1 << 20) as f64,
                sent as f64 / 1e6 / secs.max(0.001)
            ));
            Ok(saved.file_size())
        }
        Err(e) => {
            // Close what can be closed; the error that stopped the dump is the one to report
            // (its innermost cause: the ssh error names host, file and fix once).
            let _ = file.finish();
            Err(format!("cannot save the dump: {}", e.root_cause()))
        }
    }
}

/// The remote file, printing how much was sent now and then (a dump over a slow link takes
/// minutes: the console shows it is moving).
struct Progress<'a, 'f> {
    inner: &'a mut kdump_ssh::RemoteFile<'f>,
    start: Instant,
    next: Instant,
}

impl WriteAt for Progress<'_, '_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write_at(offset, data)?;
        let now = Instant::now();
        if now >= self.next {
            self.next = now + PROGRESS_EVERY;
            let sent = self.inner.bytes_written();
            let secs = (now - self.start).as_secs_f64();
            eprintln!(
                "kdump-init: ssh: sent {:.1} MiB ({:.1} MB/s)",
                sent as f64 / (1 << 20) as f64,
                sent as f64 / 1e6 / secs.max(0.001)
            );
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
