//! Lab tests of `kdump` as a service: the first kernel writes /etc/kdump.toml,
//! runs `kdump setup` (which builds the capture initramfs from the static
//! `kdump` alone — no busybox on the capture side — and loads it with
//! kexec_file_load), then `kdump test` crashes it. The capture kernel boots
//! our binary as /init, which saves dump + log + info and powers off. The host
//! then reads what it left on the NVMe results disk.

mod common;
use common::run;

use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_lab::{LabKernel, Outcome, Scenario, Vm, static_tools};

/// The first kernel's script: write the config (`config` may use `$uuid`,
/// the results disk's ext4 UUID read from its superblock with dd and od), set up,
/// check idempotence and status, keep a copy of the initramfs, crash.
fn first_script(config: &str) -> String {
    first_script_loading(config, "/lab/vmlinuz")
}

/// [`first_script`] with `capture.kernel = kernel`.
fn first_script_loading(config: &str, kernel: &str) -> String {
    let append = kdump_lab::LAB_CMDLINE;
    format!(
        r#"uuid=$(dd if=/dev/nvme0n1 bs=1 skip=1128 count=16 2>/dev/null | od -An -tx1 | tr -d ' \n')
[ ${{#uuid}} = 32 ]
mkdir -p /etc
cat > /etc/kdump.toml <<CONFIG
{config}
[capture]
kernel = "{kernel}"
initramfs = "/var/lib/kdump/initramfs.img"
append = "{append}"
CONFIG
kdump config > /results/config.txt
kdump estimate | tee /results/estimate.txt
kdump estimate --json > /results/estimate.json
kdump setup | tee /results/setup.txt
kdump setup | tee /results/setup-again.txt
kdump status | tee /results/status.txt
kdump status --json > /results/status.json
kdump dump -g /results/vmcoreinfo.txt
cp /var/lib/kdump/initramfs.img /results/initramfs.img
sync
kdump test --yes-crash-this-machine
"#
    )
}

fn crash(name: &str, config: &str, vm: Vm) -> Outcome {
    Scenario::new(name, &first_script(config)).capture_is_ours().vm(vm).run().expect("scenario")
}

/// The single crash directory under `results/crash`.
fn crash_dir(outcome: &Outcome) -> PathBuf {
    let base = outcome.result_path("crash");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e}\nconsole:\n{}", base.display(), outcome.console))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one crash directory expected: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn initramfs_listing(img: &Path) -> Vec<String> {
    let out = run(Command::new("cpio").args(["-it", "--quiet", "-F"]).arg(img));
    String::from_utf8_lossy(&out).lines().map(str::to_string).collect()
}

fn check_setup_reports(outcome: &Outcome) {
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains("capture kernel loaded"), "{setup}");
    assert!(setup.contains("initramfs: ") && setup.contains(" bytes ("), "the size is printed: {setup}");
    assert!(setup.contains("symbols: ") && setup.contains(" of the running kernel ("), "{setup}");
    let again = outcome.read_result("setup-again.txt").unwrap();
    assert!(again.contains("nothing to do"), "setup is idempotent: {again}");
    let status = outcome.read_result("status.txt").unwrap();
    assert!(status.contains("capture kernel:  loaded"), "{status}");
    assert!(status.contains("reserved memory: ") && !status.contains("reserved memory: none"), "{status}");
    let estimate = outcome.read_result("estimate.txt").unwrap();
    for term in
        ["capture kernel", "initramfs", "page bitmap", "writer buffers", "target", "codec buffers", "crashkernel="]
    {
        assert!(estimate.contains(term), "estimate lacks {term}: {estimate}");
    }
    // The same facts as JSON (docs/JSON.md).
    let json = |name: &str| -> serde_json::Value {
        let text = outcome.read_result(name).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))
    };
    let e = json("estimate.json");
    let mib = e["estimate"]["crashkernel_mib"].as_u64().unwrap();
    assert!(estimate.contains(&format!("crashkernel={mib}M")), "{e:#}\n{estimate}");
    assert_eq!(e["enough"], true, "192M is enough: {e:#}");
    let terms = e["estimate"]["terms"].as_array().unwrap();
    assert_eq!(
        terms.iter().map(|t| t["bytes"].as_u64().unwrap()).sum::<u64>(),
        e["estimate"]["total"].as_u64().unwrap()
    );
    // makedumpfile -g without a vmlinux: the running kernel's own VMCOREINFO, for -i.
    let info = outcome.read_result("vmcoreinfo.txt").unwrap();
    assert!(info.starts_with("OSRELEASE=") && info.contains("\nPAGESIZE=4096\n"), "{info}");
    assert!(info.contains("SYMBOL(init_top_pgt)=") && !info.contains("CRASHTIME="), "{info}");
    let st = json("status.json");
    assert_eq!(st["capture_kernel_loaded"], true, "{st:#}");
    assert!(st["reserved_bytes"].as_u64().unwrap() >= 192 << 20, "{st:#}");
    assert!(st["loaded_with"].as_str().is_some_and(|h| status.contains(h)), "{st:#}\n{status}");
    assert_eq!(st["target"]["kind"], "disk", "{st:#}");
    assert_eq!(st["target"]["present"], true, "{st:#}");
    // No busybox on the capture side: the initramfs is our binary, the config, the module list.
    let listing = initramfs_listing(&outcome.result_path("initramfs.img"));
    let files: Vec<&str> = listing
        .iter()
        .map(String::as_str)
        .filter(|f| !["dev", "proc", "sys", "mnt", "tmp", "etc", "lib", "lib/modules"].contains(f))
        .collect();
    assert_eq!(
        files,
        ["dev/console", "dev/null", "etc/kdump-kallsyms.zst", "etc/kdump-modules", "etc/kdump.toml", "init"],
        "nothing else is in the capture initramfs (NVMe and ext4 are built into Debian's kernel)"
    );
    let image = std::fs::read(outcome.result_path("initramfs.img")).unwrap();
    let ours = std::fs::read(static_tools().unwrap().kdump).unwrap();
    let head = &ours[..ours.len().min(4096)];
    assert!(image.windows(head.len()).any(|w| w == head), "/init is our static kdump");
}

kdump_lab::kernel_matrix! {
    fn setup_crash_and_our_init_saves_dump_log_and_info_then_powers_off(kernel) {
        service_cycle(kernel);
    }
}

fn service_cycle(kernel: LabKernel) {
    let config = r#"final_action = "poweroff"
[target]
device = "UUID=$uuid"
path = "/crash"
wait_seconds = 30
[dump]
level = 1
codec = "lzo"
"#;
    let vm = Vm { memory_mib: 512, crashkernel: Some("192M".into()), results_disk_mib: 1024, ..Vm::on(kernel) };
    let outcome = crash(&format!("service-happy-{kernel}"), config, vm);
    check_setup_reports(&outcome);
    let console = &outcome.console;
    assert!(console.contains("sysrq: Trigger a crash"), "the first kernel crashed");
    assert!(console.contains("kdump-init: kdump "), "our init ran in the capture kernel");
    assert!(console.contains("kdump-init: done; final_action = poweroff"), "{console}");

    let dir = crash_dir(&outcome);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("localhost-20") && name.len() == "localhost-2026-11-26-05:41:46".len(), "{name}");
    let vmcore = dir.join("vmcore");
    assert!(vmcore.is_file() && !dir.join("vmcore.incomplete").exists(), "a complete dump");
    let kdump = static_tools().unwrap().kdump;
    let list: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["list", "--json", "--dir"]).arg(dir.parent().unwrap())))
            .unwrap();
    assert_eq!(list[0]["name"], name.as_str(), "{list:#}");
    assert_eq!(
        (&list[0]["complete"], &list[0]["incomplete"], &list[0]["dmesg"]),
        (&true.into(), &false.into(), &true.into())
    );
    assert_eq!(list[0]["vmcore_bytes"].as_u64(), Some(std::fs::metadata(&vmcore).unwrap().len()));

    // Our tools and Debian's makedumpfile read it; the logs agree with the saved dmesg.txt.
    let ours = run(Command::new(&kdump).arg("dmesg").arg(&vmcore));
    let theirs_path = outcome.run_dir.join("makedumpfile-dmesg.txt");
    let _ = std::fs::remove_file(&theirs_path);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&vmcore).arg(&theirs_path));
    let theirs = std::fs::read(&theirs_path).unwrap();
    assert!(ours == theirs, "kdump dmesg and makedumpfile --dump-dmesg differ on the saved dump");
    assert!(std::fs::read(dir.join("dmesg.txt")).unwrap() == ours, "dmesg.txt is the crashed kernel's log");
    assert!(String::from_utf8_lossy(&ours).contains("sysrq triggered crash"));

    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&vmcore))).unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert_eq!(info["format"]["dump_level"], 1);
    assert_eq!(info["panic"], "sysrq triggered crash");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("info.json")).unwrap()).unwrap();
    assert_eq!(saved["panic"], "sysrq triggered crash", "info.json: {saved:#}");
    assert_eq!(saved["kernel"], info["kernel"]);
    // The capture init symbolized info.json with the symbols kdump setup saved from /proc/kallsyms.
    let source = saved["symbols"].as_str().unwrap_or_default();
    assert!(source.starts_with("the crashed kernel's /proc/kallsyms, saved by kdump setup"), "info.json: {saved:#}");
    let frames = saved["backtrace"].to_string();
    assert!(frames.contains("sysrq_handle_crash+"), "info.json backtrace: {frames}");
    assert!(saved["warnings"].as_array().is_some_and(|w| w.is_empty()), "info.json: {saved:#}");

    let log = std::fs::read_to_string(dir.join("kdump.log")).unwrap();
    for wanted in ["mounted /dev/nvme0n1 (ext4)", "saved the kernel log", "saved the dump to /crash/", "final_action"] {
        assert!(log.contains(wanted), "kdump.log lacks {wanted:?}:\n{log}");
    }
}

#[test]
fn absent_target_runs_failure_action_and_says_so() {
    let config = r#"final_action = "reboot"
failure_action = "poweroff"
[target]
device = "LABEL=no-such-disk"
path = "/crash"
wait_seconds = 3
"#;
    let vm = Vm { memory_mib: 512, crashkernel: Some("192M".into()), ..Vm::default() };
    let outcome = crash("service-absent-target", config, vm);
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains("LABEL=no-such-disk is not present now"), "setup warns: {setup}");
    assert!(setup.contains("capture kernel loaded"), "and still loads: {setup}");
    let status = outcome.read_result("status.txt").unwrap();
    assert!(status.contains("LABEL=no-such-disk ABSENT"), "{status}");
    let console = &outcome.console;
    assert!(
        console.contains("kdump-init: FAILED: the target LABEL=no-such-disk did not appear within 3 s"),
        "{console}"
    );
    assert!(console.contains("kdump-init: failure_action = poweroff: poweroff now"), "{console}");
    assert!(!outcome.result_path("crash").exists(), "nothing was written");
}

#[test]
fn full_target_leaves_an_incomplete_dump_and_the_log_and_says_what_happened() {
    // A 48 MiB filesystem cannot hold an uncompressed level-0 dump of 512 MiB.
    let config = r#"final_action = "poweroff"
failure_action = "save-log"
[target]
device = "/dev/nvme0n1"
path = "/crash"
[dump]
level = 0
codec = "none"
"#;
    let vm = Vm { memory_mib: 512, crashkernel: Some("192M".into()), results_disk_mib: 48, ..Vm::default() };
    let outcome = crash("service-full-target", config, vm);
    let console = &outcome.console;
    assert!(console.contains("kdump-init: FAILED: the dump is INCOMPLETE"), "{console}");
    assert!(console.contains("No space left on device"), "{console}");
    assert!(console.contains("(marked incomplete)"), "{console}");
    assert!(
        console.contains("failure_action = save-log: kept what was saved; then final_action = poweroff"),
        "{console}"
    );

    let dir = crash_dir(&outcome);
    let partial = dir.join("vmcore.incomplete");
    assert!(partial.is_file() && !dir.join("vmcore").exists());
    let log = std::fs::read_to_string(dir.join("kdump.log")).unwrap();
    assert!(log.contains("INCOMPLETE") && log.contains("No space left on device"), "{log}");
    assert!(log.contains("failure_action = save-log"), "the log is complete to the end: {log}");
    assert!(String::from_utf8_lossy(&std::fs::read(dir.join("dmesg.txt")).unwrap()).contains("sysrq triggered crash"));
    let kdump = static_tools().unwrap().kdump;
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&partial))).unwrap();
    assert_eq!(info["format"]["complete"], false, "{info:#}");
}

#[test]
fn raw_device_target_holds_a_flattened_stream_that_kdump_extract_rebuilds() {
    let config = r#"final_action = "poweroff"
[target]
device = "/dev/nvme1n1"
raw = true
[dump]
level = 1
codec = "zlib"
"#;
    let vm = Vm { memory_mib: 512, crashkernel: Some("192M".into()), extra_disk_mib: 512, ..Vm::default() };
    let outcome = crash("service-raw-target", config, vm);
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains("is /dev/nvme1n1 (raw device)"), "{setup}");
    assert!(outcome.console.contains("kdump-init: saved the flattened dump on /dev/nvme1n1"), "{}", outcome.console);
    assert!(outcome.console.contains("kdump-init: done; final_action = poweroff"));

    let kdump = static_tools().unwrap().kdump;
    let rebuilt = outcome.run_dir.join("extracted.kdump");
    let _ = std::fs::remove_file(&rebuilt);
    let said = run(Command::new(&kdump).arg("extract").arg(outcome.extra_disk()).arg(&rebuilt));
    assert!(String::from_utf8_lossy(&said).contains("kdump extract: "), "{}", String::from_utf8_lossy(&said));
    let ours = run(Command::new(&kdump).arg("dmesg").arg(&rebuilt));
    let theirs_path = outcome.run_dir.join("makedumpfile-dmesg.txt");
    let _ = std::fs::remove_file(&theirs_path);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&rebuilt).arg(&theirs_path));
    assert!(ours == std::fs::read(&theirs_path).unwrap(), "kdump dmesg and makedumpfile differ on the extracted dump");
    assert!(String::from_utf8_lossy(&ours).contains("sysrq triggered crash"));
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&rebuilt))).unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert_eq!(info["panic"], "sysrq triggered crash");
}

/// `name=` and `depends=` of a module's .modinfo.
fn modinfo(ko: &[u8], key: &str) -> Option<String> {
    let pat = format!("\0{key}=");
    let at = ko.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let end = ko[at..].iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&ko[at..at + end]).into_owned())
}

#[test]
fn extra_modules_are_resolved_decompressed_and_loaded_by_our_init() {
    // Debian's package ships no modules.dep (depmod runs at install): write one for
    // net_failover (as .ko.zst) and its dependency failover (as .ko.xz).
    let kernel = kdump_lab::kernel_image().unwrap();
    let release = kernel.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let mods = kernel.parent().unwrap().parent().unwrap().join("lib/modules").join(&release);
    let failover = std::fs::read(mods.join("kernel/net/core/failover.ko")).unwrap();
    let net_failover = std::fs::read(mods.join("kernel/drivers/net/net_failover.ko")).unwrap();
    assert_eq!(modinfo(&net_failover, "depends").as_deref(), Some("failover"));
    assert_eq!(modinfo(&failover, "depends").as_deref(), Some(""));
    let dep =
        "kernel/drivers/net/net_failover.ko.zst: kernel/net/core/failover.ko.xz\nkernel/net/core/failover.ko.xz:\n";
    let mut failover_xz = Vec::new();
    lzma_rs::xz_compress(&mut failover.as_slice(), &mut failover_xz).unwrap();
    let config = r#"final_action = "poweroff"
[target]
device = "LABEL=kdump-modules-test"
path = "/var/crash"
wait_seconds = 1
[capture]
modules = ["net-failover"]
modules_dir = "/lab/modules"
"#;
    // The target is deliberately absent: this test is about the modules, and is quick.
    let first = first_script(config).replace("[capture]\nkernel", "kernel");
    let outcome = Scenario::new("service-modules", &first)
        .capture_is_ours()
        .file("lab/modules/modules.dep", dep, 0o644)
        .file("lab/modules/modules.builtin", "kernel/drivers/nvme/host/nvme.ko\n", 0o644)
        .file("lab/modules/kernel/net/core/failover.ko.xz", failover_xz, 0o644)
        .file(
            "lab/modules/kernel/drivers/net/net_failover.ko.zst",
            zstd::encode_all(net_failover.as_slice(), 3).unwrap(),
            0o644,
        )
        .vm(Vm { memory_mib: 512, crashkernel: Some("192M".into()), ..Vm::default() })
        .run()
        .expect("scenario");
    let setup = outcome.read_result("setup.txt").unwrap();
    assert!(setup.contains("modules: failover, net_failover to load"), "{setup}");
    let listing = initramfs_listing(&outcome.result_path("initramfs.img"));
    assert!(listing.contains(&"lib/modules/00-failover.ko".to_string()), "{listing:?}");
    assert!(listing.contains(&"lib/modules/01-net_failover.ko".to_string()), "{listing:?}");
    let console = &outcome.console;
    assert!(console.contains("kdump-init: loaded module 00-failover.ko"), "{console}");
    assert!(console.contains("kdump-init: loaded module 01-net_failover.ko"), "{console}");
    assert!(console.contains("did not appear within 1 s"), "{console}");
}

#[test]
fn retry_stricter_saves_a_level_31_dump_where_level_0_did_not_fit() {
    // Level 0 of 512 MiB does not fit in 48 MiB; level 31 (kernel pages only, LZO) does.
    let config = r#"final_action = "poweroff"
failure_action = "retry-stricter"
[target]
device = "/dev/nvme0n1"
path = "/crash"
[dump]
level = 0
codec = "lzo"
"#;
    let vm = Vm { memory_mib: 512, crashkernel: Some("192M".into()), results_disk_mib: 48, ..Vm::default() };
    let outcome = crash("service-retry-stricter", config, vm);
    let console = &outcome.console;
    assert!(console.contains("kdump-init: the dump failed: "), "{console}");
    assert!(console.contains("kdump-init: failure_action = retry-stricter: retrying at dump level 31"), "{console}");
    assert!(console.contains("kdump-init: done; final_action = poweroff"), "{console}");

    let dir = crash_dir(&outcome);
    let vmcore = dir.join("vmcore");
    assert!(vmcore.is_file() && !dir.join("vmcore.incomplete").exists(), "the retry replaced the partial dump");
    let log = std::fs::read_to_string(dir.join("kdump.log")).unwrap();
    assert!(log.contains("No space left on device") && log.contains("dump level 31"), "{log}");
    let kdump = static_tools().unwrap().kdump;
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&vmcore))).unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert_eq!(info["format"]["dump_level"], 31);
    assert_eq!(info["panic"], "sysrq triggered crash");
}

/// `capture.kernel` an ELF vmlinux (the lab kernel's own, extracted from its bzImage), which
/// the x86_64 kexec_file_load refuses with ENOEXEC: `kdump setup` says so, loads it through
/// the kexec_load path of `kexec -c` (our ELF core headers, boot_params and purgatory), and
/// `kdump status` names that path; the crash boots the vmlinux, our init saves the dump and
/// reboots.
#[test]
fn setup_falls_back_to_kexec_load_for_an_elf_vmlinux_and_the_cycle_completes() {
    let config = r#"final_action = "reboot"
[target]
device = "UUID=$uuid"
path = "/crash"
wait_seconds = 30
[dump]
level = 31
"#;
    let kernel = LabKernel::Bookworm;
    let vmlinux = common::vmlinux_of(&std::fs::read(kernel.image().unwrap()).unwrap());
    let vm = Vm { memory_mib: 1024, crashkernel: Some("256M".into()), results_disk_mib: 1024, ..Vm::on(kernel) };
    let outcome = Scenario::new("service-vmlinux-kexec-load", &first_script_loading(config, "/lab/vmlinux"))
        .file("/lab/vmlinux", vmlinux, 0o644)
        .capture_is_ours()
        .vm(vm)
        .run()
        .expect("scenario");
    let setup = outcome.read_result("setup.txt").unwrap_or_default();
    assert!(setup.contains("kernel: /lab/vmlinux (ELF vmlinux, "), "{setup}\n{}", outcome.console);
    assert!(
        setup.contains("kexec_file_load refused the capture kernel (ENOEXEC): loading it with kexec_load"),
        "{setup}"
    );
    assert!(
        setup.contains("capture kernel loaded with kexec_load (kexec_file_load refused the ELF vmlinux with ENOEXEC)"),
        "{setup}"
    );
    let again = outcome.read_result("setup-again.txt").unwrap();
    assert!(again.contains("nothing to do"), "setup is idempotent on the fallback too: {again}");
    let status = outcome.read_result("status.txt").unwrap();
    assert!(
        status.contains(
            "capture kernel:  loaded with kexec_load (kexec_file_load refused the ELF vmlinux with ENOEXEC), by kdump setup"
        ),
        "{status}"
    );

    let console = &outcome.console;
    assert!(console.contains("sysrq: Trigger a crash"), "the first kernel crashed");
    assert!(console.contains("kdump-init: done; final_action = reboot"), "{console}");
    let dir = crash_dir(&outcome);
    let vmcore = dir.join("vmcore");
    assert!(vmcore.is_file() && !dir.join("vmcore.incomplete").exists(), "a complete dump");
    let kdump = static_tools().unwrap().kdump;
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&vmcore))).unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert_eq!(info["format"]["dump_level"], 31);
    assert_eq!(info["panic"], "sysrq triggered crash");
    let log = std::fs::read_to_string(dir.join("kdump.log")).unwrap();
    assert!(log.contains("saved the dump to /crash/"), "{log}");
}

/// Kernel skew through the service: the first kernel (6.1) runs `kdump setup` with
/// `capture.kernel` a 6.12 kernel file. Setup names both releases, checks 6.12's own build
/// configuration (shipped at /boot/config-<release>, as a distribution installs it) without
/// a warning, loads it; after the crash 6.12 boots our init, which saves a dump whose report
/// names the crashed 6.1 kernel.
#[test]
fn setup_with_a_capture_kernel_of_another_release_completes_the_cycle() {
    let config = r#"final_action = "poweroff"
[target]
device = "UUID=$uuid"
path = "/crash"
wait_seconds = 30
[dump]
level = 31
"#;
    let capture = LabKernel::Trixie.image().unwrap();
    let capture_release = capture.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let build_config = std::fs::read(capture.with_file_name(format!("config-{capture_release}"))).unwrap();
    let vm = Vm {
        memory_mib: 1024,
        crashkernel: Some("256M".into()),
        results_disk_mib: 1024,
        ..Vm::on(LabKernel::Bookworm)
    };
    let outcome = Scenario::new("service-skew-capture-6.12", &first_script_loading(config, "/lab/vmlinuz-capture"))
        .file("/lab/vmlinuz-capture", std::fs::read(&capture).unwrap(), 0o644)
        .file(&format!("/boot/config-{capture_release}"), build_config, 0o644)
        .capture_is_ours()
        .vm(vm)
        .run()
        .expect("scenario");
    let setup = outcome.read_result("setup.txt").unwrap_or_default();
    assert!(setup.contains(&format!("capture kernel: {capture_release} (the running kernel is 6.1.")), "{setup}");
    assert!(!setup.contains("WARNING") && !setup.contains("cannot check its build options"), "{setup}");
    assert!(setup.contains("capture kernel loaded"), "{setup}");
    let console = &outcome.console;
    assert!(console.contains(&format!("Linux version {capture_release}")), "the capture kernel is 6.12");
    assert!(console.contains("kdump-init: done; final_action = poweroff"), "{console}");
    let dir = crash_dir(&outcome);
    let kdump = static_tools().unwrap().kdump;
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(dir.join("vmcore")))).unwrap();
    assert_eq!(info["format"]["complete"], true, "{info:#}");
    assert!(info["kernel"]["release"].as_str().is_some_and(|r| r.starts_with("6.1.")), "{info:#}");
    assert_eq!(info["panic"], "sysrq triggered crash");
}
