//! The crash lab.
//!
//! A lab run boots a real kernel (Debian's cloud kernel by default) under
//! `qemu-system-x86_64 -accel tcg`, with an initramfs built by our own cpio
//! writer that holds busybox (a test tool only), our static `kexec` and
//! `kdump`, and a scenario script. A scenario may load a capture kernel and
//! crash the machine; the capture kernel then boots a second initramfs with
//! its own script. Scripts write files to `/results`, an ext4 filesystem on an
//! NVMe disk that the host reads back with `debugfs`. The serial console is
//! captured, and printed whenever a scenario fails.
//!
//! ```no_run
//! use kdump_lab::{Scenario, Vm};
//! let outcome = Scenario::new("hello", "kdump sysinfo > /results/sysinfo.txt")
//!     .vm(Vm { crashkernel: Some("256M".into()), ..Vm::default() })
//!     .run()
//!     .unwrap();
//! assert!(outcome.read_result("sysinfo.txt").unwrap().contains("crash memory"));
//! ```
#![forbid(unsafe_code)]

pub mod ganesha;
mod image;
mod kernel;
mod monitor;
pub mod oracle;
mod paths;
mod tools;
mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use kernel::{LabKernel, foreign_makedumpfile, kernel_image};
pub use monitor::MonitorStep;
pub use paths::{cache_dir, runs_dir, workspace_root};
pub use tools::{StaticTools, busybox, static_tools};

/// Why a lab run did not produce the expected outcome.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A host tool the lab needs is missing or failed.
    #[error("lab setup: {0}")]
    Setup(String),
    /// Host file I/O failed.
    #[error("lab I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The guest did not finish in time.
    #[error("scenario `{scenario}` timed out after {seconds} s; serial console:\n{console}")]
    Timeout {
        /// Scenario name.
        scenario: String,
        /// The limit.
        seconds: u64,
        /// Everything the guest printed.
        console: String,
    },
    /// The guest finished, but the scenario script failed or never reported.
    #[error("scenario `{scenario}` failed: {reason}; serial console:\n{console}")]
    ScenarioFailed {
        /// Scenario name.
        scenario: String,
        /// What went wrong, e.g. `first kernel script exited with status 1`.
        reason: String,
        /// Everything the guest printed.
        console: String,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.into();
    move |source| LabError::Io { path, source }
}

/// The virtual machine a scenario runs on.
#[derive(Debug, Clone)]
pub struct Vm {
    /// The kernel it boots (the first kernel, and the capture kernel the lab loads).
    pub kernel: LabKernel,
    /// Another release as the capture kernel (`/lab/vmlinuz`), for kernel skew; None: `kernel`.
    pub capture_kernel: Option<LabKernel>,
    /// RAM in MiB.
    pub memory_mib: u32,
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// Room for hot-added memory: the most RAM in MiB the machine may grow to (QEMU
    /// `-m memory_mib,slots=2,maxmem=…`, two DIMM slots); None: no memory hotplug.
    pub max_memory_mib: Option<u32>,
    /// Room for hot-added CPUs: the most CPUs the machine may have (QEMU `-smp
    /// cpus,maxcpus=…`, one CPU per socket, so a new CPU's `socket-id` is its number; the
    /// guest then sees a VMware hypervisor, without which Linux ignores QEMU's hot-pluggable
    /// CPUs under TCG); None: no CPU hotplug.
    pub max_cpus: Option<u32>,
    /// QEMU CPU model: `max` gives 5-level paging, `Haswell-v4` 4-level
    /// (see [`LabKernel::cpu_model`]).
    pub cpu_model: String,
    /// `crashkernel=` value, if any.
    pub crashkernel: Option<String>,
    /// More first-kernel command-line words.
    pub extra_cmdline: String,
    /// Size of the results disk in MiB (a sparse file).
    pub results_disk_mib: u32,
    /// Size in MiB of a second, blank NVMe disk (`/dev/nvme1n1` in the guest,
    /// [`Outcome::extra_disk`] on the host); 0 means none.
    pub extra_disk_mib: u32,
    /// Kill the guest after this long.
    pub timeout: Duration,
    /// The QEMU binary (`qemu-system-x86_64` from PATH unless a test needs another version).
    pub qemu: PathBuf,
    /// A virtio NIC, if any.
    pub nic: Option<Nic>,
}

/// A virtio-net NIC. Connected, it is on QEMU's user network with `restrict=on`: the
/// guest reaches nothing but QEMU's own DHCP server (10.0.2.2 gives 10.0.2.15/24) and
/// the `guestfwd` addresses, which QEMU connects to 127.0.0.1 ports on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Its MAC (`52:54:00:...`).
    pub mac: String,
    /// `guestfwd` rules: a TCP address the guest connects to (on 10.0.2.0/24) and the host
    /// port on 127.0.0.1 it reaches. QEMU connects to the host port when it starts (the
    /// listener must be there) and relays the guest's connections over that one stream.
    pub forwards: Vec<(std::net::SocketAddrV4, u16)>,
    /// `guestfwd` rules run per connection: each guest connection to the address gets its own
    /// process of the command (QEMU's `cmd:` form), its stdin and stdout the connection, e.g.
    /// `kdump-lab relay 127.0.0.1:PORT`. For protocols that open several connections (HTTP).
    pub commands: Vec<(std::net::SocketAddrV4, String)>,
    /// false: the NIC has no backend: it has a carrier, but nothing ever answers.
    pub connected: bool,
}

impl Nic {
    /// QEMU's arguments for this NIC.
    pub fn qemu_args(&self) -> Vec<String> {
        if !self.connected {
            return vec!["-device".into(), format!("virtio-net-pci,mac={}", self.mac)];
        }
        let mut netdev = "user,id=n0,restrict=on".to_string();
        for (guest, host_port) in &self.forwards {
            netdev.push_str(&format!(",guestfwd=tcp:{guest}-tcp:127.0.0.1:{host_port}"));
        }
        for (guest, command) in &self.commands {
            assert!(!command.contains(','), "a guestfwd command cannot hold a comma: {command}");
            netdev.push_str(&format!(",guestfwd=tcp:{guest}-cmd:{command}"));
        }
        vec!["-netdev".into(), netdev, "-device".into(), format!("virtio-net-pci,netdev=n0,mac={}", self.mac)]
    }
}

impl Default for Vm {
    fn default() -> Self {
        Self {
            kernel: LabKernel::Bookworm,
            capture_kernel: None,
            memory_mib: 1024,
            cpus: 2,
            max_memory_mib: None,
            max_cpus: None,
            cpu_model: "max".to_string(),
            crashkernel: Some("256M".to_string()),
            extra_cmdline: String::new(),
            results_disk_mib: 64,
            extra_disk_mib: 0,
            timeout: Duration::from_secs(300),
            qemu: PathBuf::from("qemu-system-x86_64"),
            nic: None,
        }
    }
}

impl Vm {
    /// The default machine booting `kernel`, with the CPU model it supports.
    pub fn on(kernel: LabKernel) -> Self {
        Self { kernel, cpu_model: kernel.cpu_model().to_string(), ..Self::default() }
    }
}

/// Whether the matrix tests run on `kernel` (see [`LabKernel::matrix_from_env`]);
/// prints why when they do not.
pub fn in_matrix(kernel: LabKernel) -> bool {
    let selected = LabKernel::matrix_from_env().unwrap_or_else(|e| panic!("{e}")).contains(&kernel);
    if !selected {
        eprintln!("skipped: {kernel} is not in KDUMP_LAB_MATRIX");
    }
    selected
}

/// Declares a lab test once and runs it on every kernel of the matrix: one
/// `#[test]` per kernel, named `<test>::<suite>`, so they run in parallel and
/// a failure names its kernel. `KDUMP_LAB_MATRIX=bullseye,sid` narrows it.
///
/// ```no_run
/// kdump_lab::kernel_matrix! {
///     fn boots(kernel) {
///         let vm = kdump_lab::Vm::on(kernel);
///         kdump_lab::Scenario::new(&format!("boots-{kernel}"), "true").vm(vm).run().unwrap();
///     }
/// }
/// ```
#[macro_export]
macro_rules! kernel_matrix {
    ($(#[$meta:meta])* fn $name:ident($kernel:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($kernel: $crate::LabKernel) $body
            #[test]
            fn bullseye() {
                if $crate::in_matrix($crate::LabKernel::Bullseye) { body($crate::LabKernel::Bullseye) }
            }
            #[test]
            fn bookworm() {
                if $crate::in_matrix($crate::LabKernel::Bookworm) { body($crate::LabKernel::Bookworm) }
            }
            #[test]
            fn trixie() {
                if $crate::in_matrix($crate::LabKernel::Trixie) { body($crate::LabKernel::Trixie) }
            }
            #[test]
            fn sid() {
                if $crate::in_matrix($crate::LabKernel::Sid) { body($crate::LabKernel::Sid) }
            }
        }
    };
}

/// The command line the capture kernel boots with by default in the lab.
pub const CAPTURE_CMDLINE: &str =
    "console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=-1 cryptomgr.notests nvme_core.io_timeout=255 no_timer_check";

/// Kernel parameters every lab kernel gets: no crypto self-tests (not what the lab tests, and
/// slow under emulation), and NVMe commands allowed 255 s instead of 30: a single-threaded
/// TCG guest on a host busy with other guests and builds has been seen to time out and reset
/// its controller mid-dump. `no_timer_check`: the kernel's check that the IO-APIC timer
/// ticks fails when the emulated CPU is starved (the guest then panics with "IO-APIC + timer
/// doesn't work!", seen on a capture kernel while other guests and builds ran).
pub const LAB_CMDLINE: &str = "cryptomgr.notests nvme_core.io_timeout=255 no_timer_check";

/// A script to run in the first kernel, and optionally one for the capture kernel.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    first: String,
    capture: Option<String>,
    expect_second_kernel: bool,
    capture_is_ours: bool,
    vm: Vm,
    files: Vec<(String, Vec<u8>, u32)>,
    monitor: Vec<MonitorStep>,
}

/// What a finished scenario left behind.
#[derive(Debug)]
pub struct Outcome {
    /// Everything the guest printed on its serial console.
    pub console: String,
    /// The files the guest wrote to `/results`, copied to the host.
    pub results: PathBuf,
    /// The run directory (images, disk, console log).
    pub run_dir: PathBuf,
    /// Leave `run_dir` in place when dropped (see [`Outcome::keep`]).
    pub(crate) keep: bool,
}

/// A passed test leaves nothing behind: a run directory holds hundreds of MiB
/// (vmcores, makedumpfile's dumps for comparison) and a full lab suite would
/// otherwise fill CI's disk. A failing test unwinds with the files in place for
/// inspection, and `KDUMP_LAB_KEEP=1` keeps every run.
impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.keep && !std::thread::panicking() && std::env::var_os("KDUMP_LAB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

impl Outcome {
    /// Keeps the run directory after the outcome is dropped (a demo shows it to the user).
    pub fn keep(mut self) -> Self {
        self.keep = true;
        self
    }

    /// Path of a file the guest wrote as `/results/<name>`.
    pub fn result_path(&self, name: &str) -> PathBuf {
        self.results.join(name)
    }

    /// The second disk's image on the host (see [`Vm::extra_disk_mib`]).
    pub fn extra_disk(&self) -> PathBuf {
        self.run_dir.join("extra.img")
    }

    /// Reads a text file the guest wrote as `/results/<name>`.
    pub fn read_result(&self, name: &str) -> Result<String, LabError> {
        let path = self.result_path(name);
        std::fs::read_to_string(&path).map_err(io_err(path))
    }
}

impl Scenario {
    /// A scenario whose first-kernel script is `script` (run by busybox `sh -e`,
    /// with our tools and busybox applets on PATH).
    pub fn new(name: &str, script: &str) -> Self {
        Self {
            name: name.to_string(),
            first: script.to_string(),
            capture: None,
            expect_second_kernel: false,
            capture_is_ours: false,
            vm: Vm::default(),
            files: Vec::new(),
            monitor: Vec::new(),
        }
    }

    /// The script the second kernel runs: the capture kernel after the first
    /// kernel crashed, or the kernel `kexec -e` started. The first kernel's
    /// image then carries `/lab/vmlinuz`, `/lab/capture.img` (the second
    /// kernel's initramfs) and `/lab/capture.cmdline` for the first script to
    /// load with `kexec`; the first script must not return.
    pub fn capture(mut self, script: &str) -> Self {
        self.capture = Some(script.to_string());
        self.expect_second_kernel = true;
        self
    }

    /// Carries `/lab/vmlinuz`, `/lab/capture.img` and `/lab/capture.cmdline`
    /// (whose init runs `script`) without expecting the first kernel to hand
    /// over: for scenarios that load and unload but never crash.
    pub fn carry_capture_kernel(mut self, script: &str) -> Self {
        self.capture = Some(script.to_string());
        self.expect_second_kernel = false;
        self
    }

    /// The second kernel is not the lab's: the first script sets up its own
    /// capture kernel (e.g. `kdump setup`, whose initramfs is our binary alone)
    /// and crashes the machine. The first kernel's image carries `/lab/vmlinuz`
    /// only; no lab markers are expected after the crash, and the run succeeds
    /// when the machine powers off (or reboots) before the timeout. The
    /// [`Outcome`] holds the console and the results disk read back, for the
    /// test to judge.
    pub fn capture_is_ours(mut self) -> Self {
        self.capture = None;
        self.expect_second_kernel = true;
        self.capture_is_ours = true;
        self
    }

    /// Sets the machine.
    pub fn vm(mut self, vm: Vm) -> Self {
        self.vm = vm;
        self
    }

    /// Runs QEMU monitor commands during the run when the console shows a marker, then
    /// writes a reply to the guest's `/dev/ttyS1` (see [`MonitorStep`]). Steps run in
    /// order; a step that never runs fails the scenario.
    pub fn monitor(mut self, step: MonitorStep) -> Self {
        self.monitor.push(step);
        self
    }

    /// Adds a file to the first kernel's image at `guest_path`.
    pub fn file(mut self, guest_path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((guest_path.to_string(), data.into(), mode));
        self
    }

    /// Boots the machine, runs the scenario and returns what it left behind.
    /// On failure the serial console is printed to stderr and carried in the error.
    pub fn run(&self) -> Result<Outcome, LabError> {
        let result = vm::run(self);
        if let Err(e @ (LabError::Timeout { .. } | LabError::ScenarioFailed { .. })) = &result {
            eprintln!("===== crash lab: {e}\n===== end of serial console");
        }
        result
    }
}

pub(crate) fn write_file(path: &Path, data: &[u8]) -> Result<(), LabError> {
    std::fs::write(path, data).map_err(io_err(path))
}

/// Fills a machine of `$MEM` MiB like a busy server before the crash: a
/// quarter of RAM of random data in tmpfs (incompressible), an eighth of
/// base64 text held by a process (anonymous memory), and page cache of
/// executables and text read back from disk (into `/results/cache`). Benchmarks
/// and `kdump-lab vmcore --fill` use it.
pub const FILL_LIKE_A_SERVER: &str = r#"
mkdir -p /fill && mount -t tmpfs -o size=50% tmpfs /fill
dd if=/dev/urandom of=/fill/random bs=1M count=$((MEM / 4)) 2>/dev/null
(dd if=/dev/urandom bs=1M count=$((MEM / 16)) 2>/dev/null | base64; sleep 100000) | tail -c $((MEM / 8 * 1048576)) > /dev/null &
i=0; while [ $i -lt $((MEM / 64)) ]; do cat /bin/busybox /bin/kdump; i=$((i + 1)); done > /results/cache
cat /results/cache > /dev/null
sleep 3
free -m
"#;

/// The first-kernel script that loads the lab's capture kernel with our
/// kexec (kexec_file_load) and checks it is loaded.
pub const LOAD_CAPTURE_KERNEL: &str = r#"kexec -s -p /lab/vmlinuz --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline)"
[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ]
"#;

/// Crashes a machine for real and saves its raw `/proc/vmcore` (ELF) on the
/// host: loads the capture kernel with our kexec, runs `before_crash`, panics
/// with sysrq, and copies /proc/vmcore in the capture kernel (then runs
/// `in_capture`). The results disk is sized to hold the whole dump.
pub fn crash_and_save_vmcore(name: &str, vm: Vm, before_crash: &str, in_capture: &str) -> Result<Outcome, LabError> {
    let vm = Vm { results_disk_mib: vm.results_disk_mib.max(vm.memory_mib + 128), ..vm };
    let first = format!("{LOAD_CAPTURE_KERNEL}{before_crash}\nsync\necho c > /proc/sysrq-trigger\n");
    let capture = format!("cp /proc/vmcore /results/vmcore\n{in_capture}\n");
    Scenario::new(name, &first).capture(&capture).vm(vm).run()
}
