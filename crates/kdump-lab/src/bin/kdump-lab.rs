//! `kdump-lab`: run the crash-lab demo, or fetch the lab kernel.

use std::process::ExitCode;

use kdump_lab::{LabKernel, Scenario, Vm, crash_and_save_vmcore, kernel_image};

const USAGE: &str = "usage: kdump-lab demo | kdump-lab kernel [SUITE] | kdump-lab makedumpfile [SUITE] | kdump-lab vmcore OUT [MEMORY_MIB] [CPU_MODEL] [--fill] [--kernel SUITE] | kdump-lab relay 127.0.0.1:PORT\n\
  SUITE: bullseye (5.10), bookworm (6.1, the default), trixie (6.12), sid (newest)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("vmcore") => vmcore(&args[1..]),
        Some("makedumpfile") => kdump_lab::foreign_makedumpfile(args.get(1).map_or("sid", String::as_str))
            .map(|p| println!("{}", p.display()))
            .map_err(|e| e.to_string()),
        Some("relay") => relay(args.get(1).map(String::as_str)),
        Some("kernel") => {
            suite(args.get(1)).and_then(|k| k.image().map_err(|e| e.to_string())).map(|p| println!("{}", p.display()))
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kdump-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

/// QEMU's per-connection `guestfwd` command: copies stdin to a new connection to
/// `127.0.0.1:PORT` and the connection's answers to stdout, until either side ends. Writes
/// nothing else: QEMU gives stderr the guest's connection too. Only 127.0.0.1 is accepted.
fn relay(to: Option<&str>) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddrV4, TcpStream};
    let addr: SocketAddrV4 = to.and_then(|t| t.parse().ok()).ok_or(USAGE)?;
    if !addr.ip().is_loopback() {
        return Err(format!("relay: {addr} is not on 127.0.0.1: the lab reaches nothing else"));
    }
    let server = TcpStream::connect(addr).map_err(|e| format!("relay: {addr}: {e}"))?;
    let mut up = server.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut up);
        let _ = up.shutdown(Shutdown::Write);
    });
    // The server's answers until it closes; then the process ends at once, so QEMU closes
    // the guest's connection too (a thread blocked reading the guest must not keep it open).
    let mut down = &server;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = down.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    std::process::exit(0)
}

/// The demo: kdump as a service, the whole cycle. The first kernel writes
/// /etc/kdump.toml, `kdump setup` builds the capture initramfs (the static
/// `kdump` alone) and loads it, `kdump test` crashes the machine; the capture
/// kernel boots our binary as /init, which saves dump, log and report to the
/// NVMe disk and powers off; the host then prints `kdump info` of the dump.
fn demo() -> Result<(), String> {
    const FIRST: &str = r#"
echo "== step 1: what the running kernel offers kdump"
kdump sysinfo
echo "== step 2: configure once: /etc/kdump.toml"
mkdir -p /etc
cat > /etc/kdump.toml <<CONFIG
final_action = "poweroff"
[target]
device = "/dev/nvme0n1"
path = "/var/crash"
[dump]
level = 1
codec = "lzo"
[capture]
kernel = "/lab/vmlinuz"
CONFIG
cat /etc/kdump.toml
echo "== step 3: kdump estimate (crashkernel= this machine needs)"
kdump estimate
echo "== step 4: kdump setup (build the capture initramfs, load it with kexec_file_load)"
kdump setup
kdump status
echo "== step 5: kdump test: crash the kernel on purpose"
sync
kdump test --yes-crash-this-machine
"#;
    let kernel = kernel_image().map_err(|e| e.to_string())?;
    println!("crash-lab demo: booting {} under QEMU (TCG)...", kernel.display());
    let vm = Vm { memory_mib: 512, crashkernel: Some("192M".into()), results_disk_mib: 1024, ..Vm::default() };
    let outcome = Scenario::new("demo", FIRST).capture_is_ours().vm(vm).run().map_err(|e| e.to_string())?.keep();
    let mut in_scenario = false;
    let mut shown_capture = false;
    for line in outcome.console.lines() {
        if line.contains("LAB-SCENARIO-BEGIN") {
            in_scenario = true;
            continue;
        }
        if line.contains("Kernel panic") {
            in_scenario = false;
            println!("{line}");
        }
        if in_scenario && !line.starts_with("+ ") {
            println!("{line}");
        }
        if let Some(at) = line.find("kdump-init: ") {
            if !shown_capture {
                println!("== step 6: the capture kernel runs our kdump as /init (no shell, no busybox)");
                shown_capture = true;
            }
            println!("  {}", &line[at..]);
        }
    }
    let base = outcome.result_path("var/crash");
    let dir = std::fs::read_dir(&base)
        .map_err(|e| format!("{}: {e}: the capture kernel saved nothing", base.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("no crash directory in {}", base.display()))?;
    let kdump = kdump_lab::static_tools().map_err(|e| e.to_string())?.kdump;
    println!("\n== step 7: on the host, the saved crash: kdump list, then kdump info");
    let show = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let out = std::process::Command::new(&kdump).args(args).output().map_err(|e| e.to_string())?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if out.status.success() { Ok(()) } else { Err(format!("kdump {args:?} failed")) }
    };
    show(&["list".as_ref(), "--dir".as_ref(), base.as_os_str()])?;
    show(&["info".as_ref(), dir.join("vmcore").as_os_str()])?;
    println!("\nSaved by the capture kernel: {}", dir.display());
    println!("Serial console and images: {}", outcome.run_dir.display());
    Ok(())
}

/// The kernel a suite name picks (the default kernel when none is given).
fn suite(name: Option<&String>) -> Result<LabKernel, String> {
    match name {
        None => Ok(LabKernel::Bookworm),
        Some(name) => LabKernel::from_suite(name).ok_or_else(|| format!("unknown suite {name:?}\n{USAGE}")),
    }
}

/// Crashes a lab machine and copies its raw ELF /proc/vmcore to `OUT`.
fn vmcore(args: &[String]) -> Result<(), String> {
    let out = args.first().ok_or(USAGE)?;
    let memory_mib = match args.get(1) {
        Some(m) => m.parse().map_err(|_| format!("MEMORY_MIB {m:?} is not a number"))?,
        None => 1024,
    };
    let kernel = suite(args.iter().position(|a| a == "--kernel").map(|i| args.get(i + 1).ok_or(USAGE)).transpose()?)?;
    let cpu_model =
        args.get(2).filter(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| kernel.cpu_model().to_string());
    let fill = args.iter().any(|a| a == "--fill");
    let vm = Vm {
        kernel,
        memory_mib,
        cpu_model,
        results_disk_mib: memory_mib * 2 + 256,
        timeout: std::time::Duration::from_secs(1800),
        ..Vm::default()
    };
    let before = if fill { format!("MEM={memory_mib}\n{}", kdump_lab::FILL_LIKE_A_SERVER) } else { String::new() };
    let outcome = crash_and_save_vmcore("vmcore", vm, &before, "").map_err(|e| e.to_string())?;
    std::fs::rename(outcome.result_path("vmcore"), out)
        .or_else(|_| std::fs::copy(outcome.result_path("vmcore"), out).map(|_| ()))
        .map_err(|e| format!("{out}: {e}"))?;
    println!("{out}");
    Ok(())
}
