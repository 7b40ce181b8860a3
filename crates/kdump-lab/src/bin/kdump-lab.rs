//! `kdump-lab`: run the crash-lab demo, or fetch the lab kernel.

use std::process::ExitCode;

use kdump_lab::{Scenario, Vm, crash_and_save_vmcore, kernel_image};

const USAGE: &str = "usage: kdump-lab demo | kdump-lab kernel | kdump-lab vmcore OUT [MEMORY_MIB] [CPU_MODEL] [--fill]";

/// Fills a machine of `$MEM` MiB like a busy server before the crash: a
/// quarter of RAM of random data in tmpfs (incompressible), an eighth of
/// base64 text held by a process (anonymous memory), and page cache of
/// executables and text read back from disk.
const FILL: &str = r#"
mkdir -p /fill && mount -t tmpfs -o size=50% tmpfs /fill
dd if=/dev/urandom of=/fill/random bs=1M count=$((MEM / 4)) 2>/dev/null
(dd if=/dev/urandom bs=1M count=$((MEM / 16)) 2>/dev/null | base64; sleep 100000) | tail -c $((MEM / 8 * 1048576)) > /dev/null &
i=0; while [ $i -lt $((MEM / 64)) ]; do cat /bin/busybox /bin/kdump; i=$((i + 1)); done > /results/cache
cat /results/cache > /dev/null
sleep 3
free -m
"#;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("vmcore") => vmcore(&args[1..]),
        Some("kernel") => kernel_image().map(|p| println!("{}", p.display())).map_err(|e| e.to_string()),
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

/// The first kernel's part of the demo.
const DEMO_FIRST: &str = r#"
echo "== step 1: what the running kernel offers kdump"
kdump sysinfo
echo "== step 2: load the capture kernel with our kexec (kexec_file_load)"
kexec -d -p /lab/vmlinuz --initrd=/lab/capture.img --append="$(cat /lab/capture.cmdline)"
kexec -S || true
echo "== step 3: crash the kernel: echo c > /proc/sysrq-trigger"
sync
echo c > /proc/sysrq-trigger
"#;

/// The capture kernel's part of the demo.
const DEMO_CAPTURE: &str = r#"
echo "== step 4: the capture kernel is up"
cat /proc/cmdline
ls -l /proc/vmcore
echo "== step 5: save the dump -- MISSING: kdump dump is not built yet"
echo "== step 6: crash report -- MISSING: kdump info is not built yet"
"#;

fn demo() -> Result<(), String> {
    println!("crash-lab demo: booting {} under QEMU (TCG)...", kernel_image().map_err(|e| e.to_string())?.display());
    let outcome =
        Scenario::new("demo", DEMO_FIRST).capture(DEMO_CAPTURE).vm(Vm::default()).run().map_err(|e| e.to_string())?;
    let mut in_scenario = false;
    for line in outcome.console.lines() {
        if line.contains("LAB-SCENARIO-BEGIN") {
            in_scenario = true;
            continue;
        }
        // The first script never ends: the panic hands over to the capture kernel.
        if line.contains("LAB-SCENARIO-END") || line.contains("Kernel panic") {
            in_scenario = false;
            if line.contains("Kernel panic") {
                println!("{line}");
            }
        }
        if in_scenario && !line.starts_with("+ ") {
            println!("{line}");
        }
    }
    println!("\nNot built yet: dump saving (kdump dump), crash report (kdump info), the kdump service.");
    println!("Serial console and images: {}", outcome.run_dir.display());
    Ok(())
}

/// Crashes a lab machine and copies its raw ELF /proc/vmcore to `OUT`.
fn vmcore(args: &[String]) -> Result<(), String> {
    let out = args.first().ok_or(USAGE)?;
    let memory_mib = match args.get(1) {
        Some(m) => m.parse().map_err(|_| format!("MEMORY_MIB {m:?} is not a number"))?,
        None => 1024,
    };
    let cpu_model = args.get(2).filter(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "max".to_string());
    let fill = args.iter().any(|a| a == "--fill");
    let vm = Vm {
        memory_mib,
        cpu_model,
        results_disk_mib: memory_mib * 2 + 256,
        timeout: std::time::Duration::from_secs(1800),
        ..Vm::default()
    };
    let before = if fill { format!("MEM={memory_mib}\n{FILL}") } else { String::new() };
    let outcome = crash_and_save_vmcore("vmcore", vm, &before, "").map_err(|e| e.to_string())?;
    std::fs::rename(outcome.result_path("vmcore"), out)
        .or_else(|_| std::fs::copy(outcome.result_path("vmcore"), out).map(|_| ()))
        .map_err(|e| format!("{out}: {e}"))?;
    println!("{out}");
    Ok(())
}
