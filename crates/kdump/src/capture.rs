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
use kdump_s3::{MultipartConfig, MultipartSink, RetryPolicy};
use kdump_service::capture::{Console, DumpFailure, DumpSpec, RemoteFailure, RemoteSaved, StepLog, System, VMCORE};
use kdump_service::config::CONFIG_PATH;
use kdump_service::initramfs::{MODULE_DIR, MODULE_LIST, module_list};
use kdump_service::superblock::FsIdentity;
use kdump_service::{Action, Network, NfsDestination, S3Destination, SshDestination, TargetSpec};
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

    fn mount_nfs(&mut self, nfs: &NfsDestination, at: &Path, wait: Duration) -> Result<(), String> {
        crate::nfs_target::mount(nfs, at, wait)
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
            crate::info::write(&[PathBuf::from(VMCORE)], true, None, Some(&symbols), &mut f)?;
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

    fn save_to_s3(
        &mut self,
        s3: &S3Destination,
        spec: &DumpSpec,
        log: &mut dyn StepLog,
    ) -> Result<RemoteSaved, RemoteFailure> {
        let refused = |reason: String| RemoteFailure { reason, left: None };
        let client = crate::s3_target::from_initramfs(s3, Path::new("/")).map_err(|e| refused(format!("{e:#}")))?;
        let (kernel_log, report) = crash_texts(log);
        let crash = match report.as_deref().and_then(crate::s3_target::crash_ref) {
            Some(c) => c,
            None => {
                let (host, when) = self.crash_identity();
                log.say("s3: no signature (no info.json): indexed under signature \"unknown\"");
                crate::s3_target::unidentified(&host, when)
            }
        };
        let folder = crash.folder(&s3.url.prefix);
        log.say(&format!("s3: crash folder s3://{}/{folder}, signature {}", s3.url.bucket, crash.signature));
        // The small files first (kdump.log as it is now, rewritten at the end), then the
        // index entry: the crash is listed even if the dump does not get there.
        let log_now = log.text();
        let mut small: Vec<(&str, &[u8])> = Vec::new();
        if let Some(t) = &kernel_log {
            small.push(("dmesg.txt", t));
        }
        if let Some(r) = &report {
            small.push(("info.json", r));
        }
        small.push(("kdump.log", log_now.as_bytes()));
        crate::s3_target::publish_small(&client, &s3.url, &crash, &small, S3_RETRY)
            .map_err(|e| refused(format!("{e:#}")))?;
        log.say(&format!(
            "s3: uploaded {} and the index entry",
            small.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
        ));
        let left = |reason: String| RemoteFailure { reason, left: Some(folder.clone()) };
        let key = format!("{folder}/vmcore");
        // The whole of memory bounds the dump; parts are chosen so it fits S3's 10,000.
        let estimate = std::fs::metadata(VMCORE).map(|m| m.len()).unwrap_or(1 << 30);
        let parts = MultipartConfig { retry: S3_RETRY, ..MultipartConfig::for_estimated_size(estimate) };
        let mut sink = MultipartSink::start(client.clone(), &key, parts).map_err(|e| left(e.to_string()))?;
        log.say(&format!(
            "s3: uploading vmcore in parts of {} MiB, {} at once (at most {} MiB of buffers)",
            parts.part_size >> 20,
            parts.parts_in_flight,
            parts.memory_bound() >> 20
        ));
        let name = format!("s3://{}/{key}", s3.url.bucket);
        let start = Instant::now();
        let saved = {
            let mut progress =
                Progress::new(&mut sink, "s3: uploaded", |s: &MultipartSink| s.progress().bytes_uploaded());
            save_dump(
                Path::new(VMCORE),
                Sink::Positioned { sink: &mut progress, name: &name, data_alignment: Some(parts.part_size) },
                &request(spec),
                Messages::DEFAULT,
            )
        };
        let outcome = match saved {
            Ok(saved) => sink.complete().map(|done| (saved, done)).map_err(|e| format!("cannot complete {name}: {e}")),
            Err(e) => {
                // The sink's own failure, when it is what stopped the dump, names part and cause.
                let reason = match sink.failure() {
                    Some(f) => format!("cannot upload {name}: {f}"),
                    None => format!("cannot save the dump: {}", e.root_cause()),
                };
                let aborted = sink.abort(&reason);
                if let Err(m) = aborted.marker_written {
                    log.say(&format!("s3: cannot write vmcore.incomplete: {m}"));
                }
                Err(reason)
            }
        };
        match outcome {
            Ok((saved, done)) => {
                let secs = start.elapsed().as_secs_f64();
                log.say(&format!(
                    "s3: uploaded vmcore, {:.1} MiB in {} parts in {secs:.1} s ({:.1} MB/s); the upload is complete",
                    done.size as f64 / (1 << 20) as f64,
                    done.parts,
                    done.size as f64 / 1e6 / secs.max(0.001)
                ));
                if !done.marker_removed {
                    log.say("s3: WARNING: vmcore.incomplete could not be removed: it is stale, vmcore is complete");
                }
                let log_key = format!("{folder}/kdump.log");
                if let Err(e) = S3_RETRY.run(|| client.put_object(&log_key, log.text().as_bytes())) {
                    log.say(&format!("s3: cannot rewrite kdump.log: {e}"));
                }
                Ok(RemoteSaved { dir: folder.clone(), dump_size: saved.file_size() })
            }
            Err(reason) => {
                log.say(&format!("s3: no vmcore: the upload was aborted; vmcore.incomplete says why: {reason}"));
                let log_key = format!("{folder}/kdump.log");
                let _ = client.put_object(&log_key, log.text().as_bytes());
                Err(left(reason))
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
/// Retries of each S3 request in the capture kernel: the network may need a moment after
/// DHCP and the server may be restarting (1 + 2 + 4 + 8 s between five attempts).
const S3_RETRY: RetryPolicy = RetryPolicy { attempts: 5, first_backoff: Duration::from_secs(1) };
/// How often the transfer prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// The crashed kernel's log (as `dmesg.txt`) and report (as `info.json`), each when it could
/// be made (a problem is said and the file skipped).
fn crash_texts(log: &mut dyn StepLog) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let kernel_log = (|| -> anyhow::Result<(Vec<u8>, usize)> {
        let mut dump = kdump_collector::source::open(Path::new(VMCORE))?;
        let records = crate::dmesg::records(&mut dump)?;
        Ok((kdump_kernel::printk::format_like_makedumpfile(&records), records.len()))
    })();
    let kernel_log = match kernel_log {
        Ok((text, n)) => {
            log.say(&format!("read the kernel log: {n} records"));
            Some(text)
        }
        Err(e) => {
            log.say(&format!("cannot read the kernel log: {e:#}"));
            None
        }
    };
    let mut report = Vec::new();
    let symbols = Path::new("/").join(kdump_service::initramfs::KALLSYMS);
    let report = match crate::info::write(&[PathBuf::from(VMCORE)], true, None, Some(&symbols), &mut report) {
        Ok(()) => Some(report),
        Err(e) => {
            log.say(&format!("cannot make info.json: {e:#}"));
            None
        }
    };
    (kernel_log, report)
}

/// The small files, then the dump; returns the dump's size. A local problem with a small
/// file (an unreadable log) is said and skipped; any write error on the server stops.
fn fill_remote_dir(
    dir: &mut kdump_ssh::RemoteCrashDir<'_>,
    host: &str,
    spec: &DumpSpec,
    log: &mut dyn StepLog,
) -> Result<u64, String> {
    let (kernel_log, report) = crash_texts(log);
    if let Some(text) = kernel_log {
        dir.write_file("dmesg.txt", &text).map_err(|e| e.to_string())?;
        log.say("saved the kernel log to dmesg.txt");
    }
    if let Some(report) = report {
        dir.write_file("info.json", &report).map_err(|e| e.to_string())?;
        log.say("saved the crash report to info.json");
    }
    let mut file = dir.create_file("vmcore").map_err(|e| e.to_string())?;
    let name = format!("{host}:{}", file.path());
    let start = Instant::now();
    let saved = {
        let mut progress = Progress::new(&mut file, "ssh: sent", kdump_ssh::RemoteFile::bytes_written);
        save_dump(
            Path::new(VMCORE),
            Sink::Positioned { sink: &mut progress, name: &name, data_alignment: None },
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

/// A remote sink printing how much was sent now and then (a dump over a slow link takes
/// minutes: the console shows it is moving). `sent` reads the bytes that left so far.
struct Progress<'a, W: WriteAt + ?Sized> {
    inner: &'a mut W,
    sent: Box<dyn Fn(&W) -> u64 + Send + 'a>,
    /// `ssh: sent`, `s3: uploaded`.
    what: &'static str,
    start: Instant,
    next: Instant,
}

impl<'a, W: WriteAt + ?Sized> Progress<'a, W> {
    fn new(inner: &'a mut W, what: &'static str, sent: impl Fn(&W) -> u64 + Send + 'a) -> Self {
        let start = Instant::now();
        Progress { inner, sent: Box::new(sent), what, start, next: start + PROGRESS_EVERY }
    }
}

impl<W: WriteAt + ?Sized> WriteAt for Progress<'_, W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write_at(offset, data)?;
        let now = Instant::now();
        if now >= self.next {
            self.next = now + PROGRESS_EVERY;
            let sent = (self.sent)(self.inner);
            let secs = (now - self.start).as_secs_f64();
            eprintln!(
                "kdump-init: {} {:.1} MiB ({:.1} MB/s)",
                self.what,
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
