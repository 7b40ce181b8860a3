//! Boots a scenario under QEMU and reads back what it left.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::image::{Role, build};
use crate::kernel::run as run_tool;
use crate::paths::runs_dir;
use crate::{CAPTURE_CMDLINE, LabError, Outcome, Scenario, Vm, io_err, write_file};

pub(crate) fn run(s: &Scenario) -> Result<Outcome, LabError> {
    let run_dir = runs_dir().join(&s.name);
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).map_err(io_err(&run_dir))?;

    let kernel = s.vm.kernel.image()?;
    let second = match s.vm.capture_kernel {
        Some(other) => other.image()?,
        None => kernel.clone(),
    };
    let mut files = s.files.clone();
    if let Some(capture) = &s.capture {
        let image = build(Role::Capture, capture, &[])?;
        let kernel_bytes = std::fs::read(&second).map_err(io_err(&second))?;
        files.push(("lab/vmlinuz".into(), kernel_bytes, 0o644));
        files.push(("lab/capture.img".into(), image, 0o644));
        files.push(("lab/capture.cmdline".into(), CAPTURE_CMDLINE.as_bytes().to_vec(), 0o644));
    } else if s.capture_is_ours {
        files.push(("lab/vmlinuz".into(), std::fs::read(&second).map_err(io_err(&second))?, 0o644));
    }
    let first = build(Role::First, &s.first, &files)?;
    let first_path = run_dir.join("first.img");
    write_file(&first_path, &first)?;

    let disk = run_dir.join("results.img");
    let file = File::create(&disk).map_err(io_err(&disk))?;
    file.set_len(u64::from(s.vm.results_disk_mib) << 20).map_err(io_err(&disk))?;
    drop(file);
    run_tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk), "mkfs.ext4 (install e2fsprogs)")?;

    let extra = run_dir.join("extra.img");
    if s.vm.extra_disk_mib > 0 {
        let file = File::create(&extra).map_err(io_err(&extra))?;
        file.set_len(u64::from(s.vm.extra_disk_mib) << 20).map_err(io_err(&extra))?;
    }

    // See LAB_CMDLINE: no crypto self-tests, patient NVMe timeouts.
    let mut cmdline = format!("console=ttyS0 panic=-1 {}", crate::LAB_CMDLINE);
    if let Some(ck) = &s.vm.crashkernel {
        cmdline.push_str(&format!(" crashkernel={ck}"));
    }
    if !s.vm.extra_cmdline.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(&s.vm.extra_cmdline);
    }
    let console_path = run_dir.join("console.log");
    let stderr_path = run_dir.join("qemu.stderr");
    let stderr = File::create(&stderr_path).map_err(io_err(&stderr_path))?;
    // One host thread for all vCPUs: multi-threaded TCG has been seen to race the guest's
    // own code patching (an int3 Oops in early boot, a hang in alg_test) on a loaded host.
    let mut qemu = Command::new(&s.vm.qemu);
    qemu.args(["-accel", "tcg,thread=single", "-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-m", &memory_arg(&s.vm), "-smp", &smp_arg(&s.vm), "-cpu", &cpu_arg(&s.vm)])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&first_path)
        .args(["-append", &cmdline])
        .arg("-serial")
        .arg(format!("file:{}", console_path.display()))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=none,id=results", disk.display()))
        .args(["-device", "nvme,drive=results,serial=kdumplab"]);
    qemu.args(hypervisor_args(&s.vm));
    if let Some(nic) = &s.vm.nic {
        qemu.args(nic.qemu_args());
    }
    if s.vm.extra_disk_mib > 0 {
        qemu.arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=extra", extra.display()))
            .args(["-device", "nvme,drive=extra,serial=kdumpextra"]);
    }
    let mut monitor = crate::monitor::Session::new(&s.monitor, &run_dir)?;
    qemu.args(monitor.qemu_args());
    let mut child =
        qemu.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn().map_err(|e| {
            LabError::Setup(format!("cannot start {} (install qemu-system-x86): {e}", s.vm.qemu.display()))
        })?;

    let deadline = Instant::now() + s.vm.timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err("qemu-system-x86_64"))? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if let Err(e) = monitor.poll(&console_path) {
            let _ = child.kill();
            let _ = child.wait();
            let console = read_lossy(&console_path);
            return Err(LabError::ScenarioFailed { scenario: s.name.clone(), reason: e.to_string(), console });
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let console = read_lossy(&console_path);
    let Some(status) = status else {
        return Err(LabError::Timeout { scenario: s.name.clone(), seconds: s.vm.timeout.as_secs(), console });
    };
    if !status.success() {
        return Err(LabError::Setup(format!("qemu-system-x86_64 exited with {status}: {}", read_lossy(&stderr_path))));
    }

    let results = run_dir.join("results");
    std::fs::create_dir_all(&results).map_err(io_err(&results))?;
    run_tool(
        Command::new("debugfs").arg("-R").arg(format!("rdump / {}", results.display())).arg(&disk),
        "debugfs rdump (install e2fsprogs)",
    )?;
    // Copied out: the image would only double the run's disk use.
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_file(&first_path);

    let fail = |reason: String| LabError::ScenarioFailed { scenario: s.name.clone(), reason, console: console.clone() };
    if !s.monitor.is_empty() {
        write_file(&run_dir.join("monitor.log"), monitor.transcript().as_bytes())?;
    }
    if let Some(marker) = monitor.not_run().first() {
        return Err(fail(format!("the monitor step waiting for `{marker}` on the console never ran")));
    }
    let last_role = if s.expect_second_kernel { Role::Capture } else { Role::First };
    match end_status(&console, Role::First) {
        Some(0) if s.expect_second_kernel => {
            return Err(fail("the first kernel's script returned instead of handing over to the second kernel".into()));
        }
        Some(rc) if rc != 0 => return Err(fail(format!("the first kernel's script exited with status {rc}"))),
        None if !console.contains("LAB-SCENARIO-BEGIN first") => {
            return Err(fail("the first kernel never started its script".into()));
        }
        _ => {}
    }
    if s.capture_is_ours {
        // The second kernel ran our own init: no markers; it powered the machine off in time.
        return Ok(Outcome { console, results, run_dir, keep: false });
    }
    match end_status(&console, last_role) {
        Some(0) => Ok(Outcome { console, results, run_dir, keep: false }),
        Some(rc) => Err(fail(format!("the {} kernel's script exited with status {rc}", last_role.name()))),
        None if last_role == Role::Capture && !console.contains("LAB-SCENARIO-BEGIN capture") => {
            Err(fail("the second kernel never started its script (did the crash or kexec -e hand over to it?)".into()))
        }
        None => Err(fail(format!("the {} kernel's script never reported its status", last_role.name()))),
    }
}

/// QEMU's `-cpu`: the model, without the CPUID hypervisor bit on a machine with room for
/// hot-added CPUs (see [`hypervisor_args`]).
fn cpu_arg(vm: &Vm) -> String {
    match vm.max_cpus {
        Some(_) => format!("{},-hypervisor", vm.cpu_model),
        None => vm.cpu_model.clone(),
    }
}

/// A hypervisor Linux recognizes, on a machine with room for hot-added CPUs. QEMU lists
/// hot-pluggable CPUs in the MADT as LAPIC entries with Enabled=0; Linux counts those as
/// possible CPUs only when it runs under a hypervisor it knows (x86 `acpi_is_processor_usable`,
/// 6.12 stable and later), and under TCG it knows none (CPUID leaf 0x40000000 says
/// `TCGTCGTCGTCG`). Without the CPUID hypervisor bit, Linux's VMware check falls back to the
/// DMI serial number and QEMU's VMware I/O port (on by default on the pc machine), which
/// answers it: "Hypervisor detected: VMware", and the new CPUs become possible.
fn hypervisor_args(vm: &Vm) -> Vec<String> {
    match vm.max_cpus {
        Some(_) => vec!["-smbios".into(), "type=1,serial=VMware-kdump-lab".into()],
        None => Vec::new(),
    }
}

/// QEMU's `-m`: the boot RAM, and with room for hot-added DIMMs two slots up to the maximum.
fn memory_arg(vm: &Vm) -> String {
    match vm.max_memory_mib {
        Some(max) => format!("{},slots=2,maxmem={max}M", vm.memory_mib),
        None => vm.memory_mib.to_string(),
    }
}

/// QEMU's `-smp`: the boot CPUs, and with room for hot-added CPUs `max` one-core sockets,
/// so the CPU to add next is `socket-id=<cpus>` (core and thread 0). Not cores of one
/// socket: Linux ignores hot-pluggable APIC IDs in a package that has present ones when it
/// sees no hypervisor (x86 topology, 6.9+), and under TCG it sees none.
fn smp_arg(vm: &Vm) -> String {
    match vm.max_cpus {
        Some(max) => format!("{},maxcpus={max},sockets={max},cores=1,threads=1", vm.cpus),
        None => vm.cpus.to_string(),
    }
}

/// The status printed by the lab init as `LAB-SCENARIO-END <role> rc=<n>`.
/// Kernel messages may share the line, so the marker is searched anywhere.
fn end_status(console: &str, role: Role) -> Option<i32> {
    let marker = format!("LAB-SCENARIO-END {} rc=", role.name());
    let at = console.rfind(&marker)? + marker.len();
    let digits: String = console[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_kernels_get_the_lab_parameters_too() {
        assert!(crate::CAPTURE_CMDLINE.ends_with(crate::LAB_CMDLINE), "{}", crate::CAPTURE_CMDLINE);
    }

    #[test]
    fn finds_end_markers_amid_kernel_noise() {
        let log = "boot\nLAB-SCENARIO-END first rc=0\n[ 1.0] x LAB-SCENARIO-END capture rc=17[ 1.1] y\n";
        assert_eq!(end_status(log, Role::First), Some(0));
        assert_eq!(end_status(log, Role::Capture), Some(17));
        assert_eq!(end_status("nothing", Role::First), None);
    }

    #[test]
    fn nics_are_restricted_user_networks_or_unplugged() {
        let nic = crate::Nic {
            mac: "52:54:00:12:34:56".into(),
            forwards: vec![("10.0.2.100:2222".parse().unwrap(), 40000)],
            commands: vec![("10.0.2.100:80".parse().unwrap(), "/lab/kdump-lab relay 127.0.0.1:40001".into())],
            connected: true,
        };
        assert_eq!(
            nic.qemu_args(),
            [
                "-netdev",
                "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:2222-tcp:127.0.0.1:40000,\
                 guestfwd=tcp:10.0.2.100:80-cmd:/lab/kdump-lab relay 127.0.0.1:40001",
                "-device",
                "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"
            ]
        );
        let unplugged = crate::Nic { connected: false, ..nic };
        assert_eq!(unplugged.qemu_args(), ["-device", "virtio-net-pci,mac=52:54:00:12:34:56"]);
    }

    #[test]
    fn hotplug_room_only_when_asked() {
        let vm = Vm { memory_mib: 1024, cpus: 2, ..Vm::default() };
        assert_eq!((memory_arg(&vm), smp_arg(&vm)), ("1024".to_string(), "2".to_string()));
        let vm = Vm { max_memory_mib: Some(2048), max_cpus: Some(4), ..vm };
        assert_eq!(memory_arg(&vm), "1024,slots=2,maxmem=2048M");
        assert_eq!(smp_arg(&vm), "2,maxcpus=4,sockets=4,cores=1,threads=1");
        assert_eq!(cpu_arg(&vm), "max,-hypervisor");
        assert_eq!(hypervisor_args(&vm), ["-smbios", "type=1,serial=VMware-kdump-lab"]);
    }
}
