//! The kdump service: `kdump setup`, `reload`, `unload`, `status`, `estimate`, `test`,
//! `list`, `extract` and `config`. The pure parts are in `kdump-service`;
//! the system calls in `kdump-sys` (`mount`, `block`, `module`, `power`, `file`).

use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use kdump_loader::choice::KernelFile;
use kdump_loader::cmdline::{self, CmdlineRequest};
use kdump_loader::errno::{self, Call, allows_fallback, explain, is_signature_error};
use kdump_loader::image::KernelImage;
use kdump_loader::plan::Options;
use kdump_loader::preflight::{LoadCheck, Syscall, check_load};
use kdump_service::capture_kernel;
use kdump_service::config::{CONFIG_PATH, DEFAULTS_TOML, default_capture_cmdline};
use kdump_service::initramfs::{self, ModuleFile, TargetFiles, is_static_elf};
use kdump_service::modules::{self, Compression, ModuleIndex};
use kdump_service::naming::CrashDirSummary;
use kdump_service::superblock::{self, FsIdentity};
use kdump_service::{Config, Destination, TargetSpec};
use kdump_sys::legacy::{LegacyLoad, load_plan, plan_kexec_load};
use kdump_sys::{SysRoot, collect_machine_info, kexec};
use kdump_sys::{block, module, mount, power};

/// The service's subcommands.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Build the capture initramfs (this static binary as /init, the config, the target's modules)
    /// and load it with the capture kernel (kexec_file_load; kexec_load where that refuses the image,
    /// e.g. an ELF vmlinux). Idempotent.
    Setup {
        /// The config file.
        #[arg(long, value_name = "FILE", default_value = CONFIG_PATH)]
        config: PathBuf,
        /// Build and report, but load nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Reload the loaded capture kernel after CPU or memory hotplug, so that its ELF core
    /// headers describe the machine as it is now (what packaging/98-kdump-hotplug.rules runs).
    /// Serialized and idempotent: a reload happens only when RAM or the present CPUs changed
    /// since the last load.
    Reload {
        /// The config file.
        #[arg(long, value_name = "FILE", default_value = CONFIG_PATH)]
        config: PathBuf,
        /// Do nothing where the kernel updates the loaded capture kernel itself on hotplug
        /// (crash hotplug: /sys/devices/system/{cpu,memory}/crash_hotplug read 1).
        #[arg(long)]
        if_needed: bool,
    },
    /// Unload the capture kernel.
    Unload,
    /// Reserved memory, whether a capture kernel is loaded, the target, the last dumps.
    Status {
        /// The config file.
        #[arg(long, value_name = "FILE", default_value = CONFIG_PATH)]
        config: PathBuf,
        /// Print JSON (fields in docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// The crashkernel= size this machine needs, with the arithmetic.
    Estimate {
        /// The config file.
        #[arg(long, value_name = "FILE", default_value = CONFIG_PATH)]
        config: PathBuf,
        /// Print JSON (fields in docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Crash this machine on purpose (sysrq c) to test the capture kernel.
    Test {
        /// Required: the machine really crashes.
        #[arg(long)]
        yes_crash_this_machine: bool,
    },
    /// The saved dumps (the target's crash directories).
    List {
        /// The config file.
        #[arg(long, value_name = "FILE", default_value = CONFIG_PATH)]
        config: PathBuf,
        /// List this directory instead of the configured target's.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print JSON (fields in docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a normal dump file from the flattened stream on a raw target device.
    Extract {
        /// The raw device (or a file holding the stream).
        device: PathBuf,
        /// The dump file to write.
        dest: PathBuf,
        /// Overwrite DEST.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// The network the capture kernel will use: every Ethernet interface (permanent MAC, carrier,
    /// driver modules), the one [network] names, and a TCP probe from this machine of
    /// network.probe or --probe. Exits 1 when something is wrong, saying what.
    CheckNetwork {
        /// The config file.
        #[arg(long, value_name = "FILE", default_value = CONFIG_PATH)]
        config: PathBuf,
        /// Probe this IPv4 HOST:PORT instead of network.probe.
        #[arg(long, value_name = "HOST:PORT")]
        probe: Option<std::net::SocketAddrV4>,
    },
    /// Check the server target (target.url) from this machine. ssh: reachable, host key pinned
    /// in target.known_hosts, login with target.ssh_key, free space, a test write. S3: reachable,
    /// credentials accepted, a test object written, read back and removed. Exits 1 when a step
    /// fails, saying how to fix it.
    CheckTarget {
        /// The config file.
        #[arg(long, value_name = "FILE", default_value = CONFIG_PATH)]
        config: PathBuf,
    },
    /// Check the config file and print it with every default filled in.
    Config {
        /// The config file.
        #[arg(long, value_name = "FILE", default_value = CONFIG_PATH)]
        config: PathBuf,
        /// Print every key with its default and what it means.
        #[arg(long)]
        defaults: bool,
    },
}

pub fn run(cmd: &ServiceCommand) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::Setup { config, dry_run } => setup(config, *dry_run),
        ServiceCommand::Reload { config, if_needed } => reload(config, *if_needed),
        ServiceCommand::Unload => unload(),
        ServiceCommand::Status { config, json } => status(config, *json),
        ServiceCommand::Estimate { config, json } => estimate(config, *json),
        ServiceCommand::Test { yes_crash_this_machine } => test(*yes_crash_this_machine),
        ServiceCommand::List { config, dir, json } => list(config, dir.as_deref(), *json),
        ServiceCommand::Extract { device, dest, force } => extract(device, dest, *force),
        ServiceCommand::CheckNetwork { config, probe } => {
            let (cfg, _) = load_config(config)?;
            crate::network::check(cfg.network.as_ref(), *probe)
        }
        ServiceCommand::CheckTarget { config } => {
            let (cfg, _) = load_config(config)?;
            match cfg.destination()? {
                Destination::Ssh(ssh) => crate::ssh_target::check_target(&ssh),
                Destination::S3(s3) => crate::s3_target::check_target(&s3),
                Destination::Nfs(nfs) => crate::nfs_target::check_target(&nfs),
                Destination::Disk(spec) => bail!(
                    "the target is the local device {spec}: check-target checks server targets (kdump status shows a disk)"
                ),
            }
        }
        ServiceCommand::Config { config, defaults } => {
            if *defaults {
                print!("{DEFAULTS_TOML}");
                return Ok(());
            }
            let (cfg, _) = load_config(config)?;
            print!("{}", cfg.to_toml());
            Ok(())
        }
    }
}

pub fn load_config(path: &Path) -> anyhow::Result<(Config, String)> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read {} (write one: kdump config --defaults shows every key)", path.display())
    })?;
    let cfg = Config::parse(&text).with_context(|| format!("{} is not a usable kdump config", path.display()))?;
    Ok((cfg, text))
}

/// Finds the target device now: its node and, for filesystems, its superblock identity.
pub fn find_target(root: &SysRoot, spec: &TargetSpec) -> Option<(PathBuf, Option<FsIdentity>)> {
    match spec {
        TargetSpec::Path(p) => {
            if !p.exists() {
                return None;
            }
            let id = block::read_head(p, superblock::PROBE_LEN).ok().and_then(|h| superblock::identify(&h));
            Some((p.clone(), id))
        }
        TargetSpec::Uuid(_) | TargetSpec::Label(_) => {
            for dev in block::block_devices(root).ok()? {
                let node = PathBuf::from(format!("/dev/{}", dev.name));
                let Ok(head) = block::read_head(&node, superblock::PROBE_LEN) else { continue };
                let Some(id) = superblock::identify(&head) else { continue };
                if spec.matches(&id) {
                    return Some((node, Some(id)));
                }
            }
            None
        }
    }
}

/// The driver modules of the [network] interface, found now by its permanent MAC.
fn nic_modules(
    root: &SysRoot,
    network: &kdump_service::Network,
    report: &mut Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let mac = network.mac()?;
    let Some(iface) = kdump_sys::net::interface_by_mac(root, mac).context("cannot list the network interfaces")? else {
        let present: Vec<String> = kdump_sys::net::interfaces(root)
            .unwrap_or_default()
            .iter()
            .map(|i| format!("{} {}", i.name, i.permanent_mac))
            .collect();
        bail!(
            "network.interface {mac}: no interface has that MAC (present: {}); write the permanent MAC of the NIC \
             the capture kernel should use",
            if present.is_empty() { "none".into() } else { present.join(", ") }
        );
    };
    let modules = kdump_sys::net::driver_modules(root, &iface.name);
    report.push(format!(
        "network: {} is {} (driver modules: {})",
        mac,
        iface.name,
        if modules.is_empty() { "none".to_string() } else { modules.join(", ") }
    ));
    Ok(modules)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

struct Built {
    initramfs: initramfs::Initramfs,
    kernel: PathBuf,
    cmdline: String,
    report: Vec<String>,
}

/// The modules a local-disk target needs in the capture kernel (its block driver and
/// filesystem), with what setup reports of it; refuses a raw target that is mounted.
fn disk_modules(
    root: &SysRoot,
    target: &kdump_service::config::Target,
    spec: &TargetSpec,
    report: &mut Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let mut wanted = Vec::new();
    let Some((node, id)) = find_target(root, spec) else {
        report.push(format!(
            "target: WARNING: {spec} is not present now; the capture kernel will wait {} s for it",
            target.wait_seconds
        ));
        if target.fstype != "auto" {
            wanted.push(target.fstype.clone());
        }
        return Ok(wanted);
    };
    let name = block::block_name_of(&node).unwrap_or_default();
    let what = match &id {
        Some(id) => format!("{} (UUID {}, label {:?})", id.fstype, id.uuid, id.label),
        None if target.raw => "raw device".to_string(),
        None => "no filesystem recognised".to_string(),
    };
    report.push(format!("target: {spec} is {} ({what})", node.display()));
    if target.raw {
        // The device itself, or one of its partitions (/sys/class/block/sdb/sdb1).
        let mounted = mount::mounts(root).unwrap_or_default().into_iter().find(|m| {
            block::block_name_of(Path::new(&m.source))
                .is_some_and(|m| m == name || root.exists(&format!("/sys/class/block/{name}/{m}")))
        });
        if let Some(m) = mounted {
            bail!(
                "target.raw: {} is mounted on {}: a crash would write the dump over that filesystem; \
                 name an unused device",
                node.display(),
                m.target.display()
            );
        }
        if let Some(id) = &id {
            report.push(format!(
                "target: WARNING: {} holds {} filesystem (UUID {}): a crash will overwrite it",
                node.display(),
                id.fstype,
                id.uuid
            ));
        }
    }
    wanted.extend(block::block_device_modules(root, &name));
    if !target.raw {
        let fstype = if target.fstype == "auto" { id.map(|i| i.fstype.to_string()) } else { None }
            .unwrap_or_else(|| target.fstype.clone());
        if fstype != "auto" {
            wanted.push(fstype);
        }
    }
    Ok(wanted)
}

/// The `[network]` of a config whose targets include a server but that names no network: the
/// interface, address and gateway this machine uses to reach the first server now (static in
/// the capture kernel). `None` when every target is local.
fn network_from_route(
    root: &SysRoot,
    cfg: &Config,
    report: &mut Vec<String>,
) -> anyhow::Result<Option<kdump_service::Network>> {
    let server = cfg.destinations()?.into_iter().find_map(|(_, d)| match d {
        Destination::Ssh(ssh) => Some(std::net::SocketAddrV4::new(ssh.address, ssh.url.port)),
        Destination::S3(s3) => {
            let port = kdump_s3::parse_endpoint(&s3.endpoint).map(|e| e.host_port.port).unwrap_or(443);
            Some(std::net::SocketAddrV4::new(s3.address, port))
        }
        Destination::Nfs(nfs) => Some(std::net::SocketAddrV4::new(nfs.address, nfs.port)),
        Destination::Disk(_) => None,
    });
    let Some(server) = server else { return Ok(None) };
    let path = kdump_sys::net::path_to(root, server).with_context(|| {
        format!(
            "the target {server} needs the capture kernel's network and the config has no [network] table; \
             this machine has no route to it now to copy: add [network] (interface and dhcp = true or address)"
        )
    })?;
    let network = kdump_service::Network {
        interface: path.interface.permanent_mac.to_string(),
        dhcp: false,
        address: path.local.to_string(),
        gateway: path.gateway.map(|g| g.to_string()).unwrap_or_default(),
        ..kdump_service::Network::default()
    };
    report.push(format!(
        "network: no [network] table: from this machine's route to {server}: {} ({}), static {}{}",
        network.interface,
        path.interface.name,
        network.address,
        path.gateway.map(|g| format!(" via {g}")).unwrap_or_default()
    ));
    Ok(Some(network))
}

/// Builds the capture initramfs for `cfg` (shared by setup and estimate); `check_target`:
/// also try an ssh target from here (setup does, estimate does not).
fn build(cfg: &Config, config_text: &str, root: &SysRoot, check_target: bool) -> anyhow::Result<Built> {
    let mut report = Vec::new();
    let release = module::kernel_release(root).context("cannot read the running kernel's release")?;
    let kernel = if cfg.capture.kernel.is_empty() {
        PathBuf::from(format!("/boot/vmlinuz-{release}"))
    } else {
        PathBuf::from(&cfg.capture.kernel)
    };
    // The capture kernel's own release decides its modules and what it can do; it may differ
    // from the running kernel's (the paper's kernel skew).
    let capture_release = image_release(&kernel).unwrap_or_else(|| release.clone());
    let skewed = capture_release != release;
    if skewed {
        report.push(format!("capture kernel: {capture_release} (the running kernel is {release})"));
    }
    let config_path = format!("/boot/config-{capture_release}");
    match std::fs::read_to_string(&config_path) {
        Ok(text) => report.extend(
            capture_kernel::config_warnings(&capture_release, &text)
                .into_iter()
                .map(|w| format!("capture kernel: WARNING: {w}")),
        ),
        Err(_) => report.push(format!(
            "capture kernel: cannot check its build options (no {config_path}); it needs CONFIG_CRASH_DUMP and CONFIG_PROC_VMCORE"
        )),
    }
    let mut wanted: Vec<String> = Vec::new();
    let mut from_config: Vec<String> = cfg.capture.modules.iter().map(|m| modules::normalize(m)).collect();
    let mut target_files = Vec::new();
    for (target, destination) in cfg.destinations()? {
        match destination {
            Destination::Disk(spec) => wanted.extend(disk_modules(root, target, &spec, &mut report)?),
            Destination::Ssh(ssh) => target_files.push(TargetFiles::Ssh(if check_target {
                crate::ssh_target::for_setup(&ssh, &mut report)?
            } else {
                crate::ssh_target::load(&ssh)?.1
            })),
            Destination::S3(s3) => target_files.push(TargetFiles::S3(if check_target {
                crate::s3_target::for_setup(&s3, &mut report)?
            } else {
                crate::s3_target::load(&s3, std::time::Duration::from_secs(5))?.1
            })),
            // The kernel's NFS client; its dependencies (sunrpc, …) come from modules.dep.
            Destination::Nfs(nfs) => {
                wanted.extend(nfs.modules().iter().map(|m| m.to_string()));
                if check_target {
                    crate::nfs_target::for_setup(&nfs, &mut report);
                }
            }
        }
    }
    // A server target with no [network]: the capture kernel takes this machine's path to it.
    let derived = match &cfg.network {
        Some(_) => None,
        None => network_from_route(root, cfg, &mut report)?,
    };
    if let Some(network) = cfg.network.as_ref().or(derived.as_ref()) {
        wanted.extend(nic_modules(root, network, &mut report)?);
    }
    let config_text = match &derived {
        Some(network) => format!(
            "{config_text}\n# Added by kdump setup: this machine's path to the server when the initramfs was built.\n{}",
            network.to_table()
        ),
        None => config_text.to_string(),
    };
    let config_text = config_text.as_str();
    wanted.append(&mut from_config.clone());
    let mut dedup: Vec<String> = Vec::new();
    for w in wanted.iter().map(|w| modules::normalize(w)) {
        if !dedup.contains(&w) {
            dedup.push(w);
        }
    }
    let modules_dir = if cfg.capture.modules_dir.is_empty() {
        PathBuf::from(format!("/lib/modules/{capture_release}"))
    } else {
        PathBuf::from(&cfg.capture.modules_dir)
    };
    let mut files = Vec::new();
    let dep = std::fs::read_to_string(modules_dir.join("modules.dep")).ok();
    let builtin = std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    // A name that /sys/module shows with an initstate is a loaded module; without one, built in.
    let is_loadable = |m: &str| root.exists(&format!("/sys/module/{m}/initstate"));
    match dep {
        None => {
            from_config.retain(|m| !ModuleIndex::parse("", &builtin).is_builtin(m));
            let needed: Vec<&String> = dedup.iter().filter(|m| from_config.contains(m) || is_loadable(m)).collect();
            if !needed.is_empty() {
                bail!(
                    "the capture kernel needs the modules {needed:?} but {} has no modules.dep: run `depmod {release}` \
                     (or set capture.modules_dir)",
                    modules_dir.display()
                );
            }
            report.push(format!("modules: none needed ({} built in)", dedup.join(", ")));
        }
        Some(dep) => {
            let index = ModuleIndex::parse(&dep, &builtin);
            let r = index.resolve(&dedup);
            for m in &r.missing {
                if from_config.contains(m) || is_loadable(m) {
                    // The running kernel's modules say nothing certain of another release's
                    // build: warn, and let the capture kernel show whether it sees the target.
                    if skewed {
                        report.push(format!(
                            "capture kernel: WARNING: module {m} (needed for the target) is neither in {0}/modules.dep \
                             nor in {0}/modules.builtin: {capture_release} may not see the target",
                            modules_dir.display()
                        ));
                    } else {
                        bail!("module {m} is not in {}/modules.dep", modules_dir.display());
                    }
                }
            }
            for rel in &r.load {
                let path = modules_dir.join(rel);
                let raw = std::fs::read(&path).with_context(|| format!("cannot read the module {}", path.display()))?;
                let data =
                    decompress_module(rel, raw).with_context(|| format!("cannot decompress {}", path.display()))?;
                files.push(ModuleFile { name: modules::name_of(rel), data });
            }
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            report.push(format!(
                "modules: {} to load{}{}",
                if names.is_empty() { "none".to_string() } else { names.join(", ") },
                if r.builtin.is_empty() { String::new() } else { format!("; built in: {}", r.builtin.join(", ")) },
                if r.missing.is_empty() {
                    String::new()
                } else {
                    format!("; not found (assumed built in): {}", r.missing.join(", "))
                },
            ));
        }
    }
    let exe = std::fs::read("/proc/self/exe").context("cannot read this program (/proc/self/exe)")?;
    if !is_static_elf(&exe) {
        bail!(
            "this kdump is dynamically linked and cannot be the capture kernel's /init: build the static one with \
             RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu"
        );
    }
    let kallsyms = match saved_kallsyms(root, &release) {
        Ok((bytes, count)) => {
            report.push(format!("symbols: {count} of the running kernel ({}), for info.json", mib(bytes.len() as u64)));
            Some(bytes)
        }
        Err(e) => {
            report.push(format!("symbols: not saved ({e:#}); info.json will use the dump's own kallsyms"));
            None
        }
    };
    let initramfs = initramfs::build(&exe, config_text, &files, kallsyms.as_deref(), &target_files)
        .context("cannot build the capture initramfs")?;
    let running = root.read("/proc/cmdline").map(|s| s.trim().to_string()).unwrap_or_default();
    let mut line =
        if cfg.capture.cmdline.is_empty() { default_capture_cmdline(&running) } else { cfg.capture.cmdline.clone() };
    if !cfg.capture.append.is_empty() {
        line = format!("{line} {}", cfg.capture.append);
    }
    Ok(Built { initramfs, kernel, cmdline: line, report })
}

/// The running kernel's symbols for the capture initramfs ([`initramfs::KALLSYMS`]):
/// `/proc/kallsyms` reduced by `kdump_kernel::kallsyms::saved_symbols`, zstd-compressed;
/// and how many symbols that is.
fn saved_kallsyms(root: &SysRoot, release: &str) -> anyhow::Result<(Vec<u8>, usize)> {
    let text = root.read("/proc/kallsyms").context("cannot read /proc/kallsyms")?;
    let saved = kdump_kernel::kallsyms::saved_symbols(&text, release)?;
    let count = saved.lines().count() - 1;
    Ok((zstd::bulk::compress(saved.as_bytes(), 9).context("cannot compress the symbols")?, count))
}

/// The release a kernel file names in its setup header (a bzImage, also compressed), if any.
fn image_release(path: &Path) -> Option<String> {
    let raw = std::fs::read(path).ok()?;
    let decompressed = kdump_loader::image::decompress(&raw).ok()?;
    let image = KernelImage::parse(decompressed.as_deref().unwrap_or(&raw)).ok()?;
    let version = image.header().version?;
    capture_kernel::release_of(&version).map(str::to_string)
}

/// A module file's ELF bytes: `.ko` as is, `.ko.zst`, `.ko.xz` and `.ko.gz` decompressed
/// (finit_module of the kernels we boot may not take compressed modules), through the same
/// bounded decompression as compressed kernels.
fn decompress_module(rel: &str, raw: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    match kdump_loader::image::decompress(&raw)? {
        Some(plain) => Ok(plain),
        None if modules::compression(rel) == Compression::None => Ok(raw),
        None => bail!("the file name says {:?}-compressed but its bytes are not", modules::compression(rel)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn setup(config_path: &Path, dry_run: bool) -> anyhow::Result<()> {
    let (cfg, text) = load_config(config_path)?;
    let root = SysRoot::host();
    let built = build(&cfg, &text, &root, true)?;
    println!("kdump setup: config {}", config_path.display());
    for line in &built.report {
        println!("  {line}");
    }
    for (path, size) in &built.initramfs.contents {
        println!("  initramfs: {path:<32} {size:>10} bytes");
    }
    let out = PathBuf::from(&cfg.capture.initramfs);
    println!(
        "  initramfs: {} bytes ({}), {}",
        built.initramfs.bytes.len(),
        mib(built.initramfs.bytes.len() as u64),
        out.display()
    );

    let raw = std::fs::read(&built.kernel)
        .with_context(|| format!("cannot read the capture kernel {} (set capture.kernel)", built.kernel.display()))?;
    // A compressed kernel file or an ELF vmlinux: kexec_file_load refuses both, kexec_load
    // (below) takes the decompressed bytes.
    let mut digest = kdump_sha256::Sha256::new();
    digest.update(&raw);
    let capture_kernel = KernelFile::parse(raw)
        .with_context(|| format!("{} cannot be loaded (set capture.kernel)", built.kernel.display()))?;
    let image = capture_kernel.image.header();
    let request =
        CmdlineRequest { reuse: None, append: vec![built.cmdline.clone()], panic: true, capture_defaults: true };
    let line = cmdline::build(&request, usize::try_from(image.cmdline_size).unwrap_or(usize::MAX))?;
    println!(
        "  kernel: {} ({}, {}{})",
        built.kernel.display(),
        capture_kernel.image.format(),
        image.version.as_deref().unwrap_or("unknown version"),
        if capture_kernel.compressed { ", compressed" } else { "" }
    );
    println!("  command line: {line}");

    digest.update(&built.initramfs.bytes);
    digest.update(line.as_bytes());
    let machine = collect_machine_info(&root).context("cannot read the machine description")?;
    // The machine as the loaded ELF core headers describe it: after CPU or memory hotplug the
    // stamp differs and setup reloads (kdump reload, run by the udev rule).
    digest.update(machine_layout(&machine).as_bytes());
    let boot_id = root.read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let stamp = format!("{} {}", boot_id.trim(), hex(&digest.finalize()));
    let stamp_path = loaded_stamp_path(&cfg);
    if machine.kexec.crash_loaded
        && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s.lines().next() == Some(stamp.as_str()))
        && std::fs::read(&out).is_ok_and(|b| b == built.initramfs.bytes)
    {
        println!(
            "kdump setup: already loaded with this kernel, initramfs, command line and machine layout: nothing to do"
        );
        return Ok(());
    }
    let problems = check_load(&LoadCheck {
        machine: &machine,
        panic: true,
        syscall: Syscall::File,
        image: &image,
        initrd_len: Some(built.initramfs.bytes.len() as u64),
        cap_sys_boot: true,
    });
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("\n  - {p}")).collect();
        bail!("cannot load the capture kernel:{}", list.concat());
    }
    if dry_run {
        println!("kdump setup: --dry-run: nothing written, nothing loaded");
        return Ok(());
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = PathBuf::from(format!("{}.new", out.display()));
    std::fs::write(&tmp, &built.initramfs.bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    if machine.kexec.crash_loaded {
        kexec::kexec_file_unload(true)
            .map_err(|e| anyhow::anyhow!(explain(Call::FileUnload, true, e)))
            .context("cannot unload the previous capture kernel")?;
        println!("  unloaded the previous capture kernel");
    }
    let kernel = File::open(&built.kernel).with_context(|| format!("cannot open {}", built.kernel.display()))?;
    let initrd = File::open(&out).with_context(|| format!("cannot open {}", out.display()))?;
    let cline = CString::new(line.clone()).context("the command line contains a NUL byte")?;
    let how = match kexec::kexec_file_load(&kernel, Some(&initrd), &cline, kexec::KEXEC_FILE_ON_CRASH) {
        Ok(()) => "kexec_file_load".to_string(),
        // The same set `kexec -a` retries: an image or kernel the file loader does not take.
        // Signature and lockdown refusals stand: kexec_load would bypass what they enforce.
        Err(e) if allows_fallback(e) && !is_signature_error(e) => {
            let why = explain(Call::FileLoad, true, e);
            println!(
                "  kexec_file_load refused the capture kernel ({}): loading it with kexec_load, with our own ELF \
                 core headers and purgatory",
                errno::name(e)
            );
            load_with_kexec_load(&root, &machine, &capture_kernel.bytes, &built.initramfs.bytes, &line).with_context(
                || format!("kexec_file_load refused the capture kernel first ({}): {why}", errno::name(e)),
            )?;
            format!(
                "kexec_load (kexec_file_load refused the {} with {})",
                capture_kernel.image.format(),
                errno::name(e)
            )
        }
        Err(e) => bail!("kexec_file_load refused the capture kernel: {}", explain(Call::FileLoad, true, e)),
    };
    let loaded = kdump_sys::kexec_loaded(&root, true).context("cannot read /sys/kernel/kexec_crash_loaded")?;
    if !loaded {
        bail!("{how} succeeded but /sys/kernel/kexec_crash_loaded does not read 1");
    }
    let _ = std::fs::write(&stamp_path, format!("{stamp}\n{LOADED_WITH}{how}\n"));
    let destination = cfg
        .destinations()?
        .into_iter()
        .map(|(target, destination)| match destination {
            Destination::Disk(spec) => {
                format!("{spec}:{}", if target.raw { " (raw, flattened)".to_string() } else { target.path.clone() })
            }
            remote => remote.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", else ");
    println!(
        "kdump setup: capture kernel loaded with {how} ({} reserved); on a crash, dumps go to {destination}",
        mib(machine.crash_reserved()),
    );
    Ok(())
}

/// `kdump setup` records the load here: the boot and the digest of kernel, initramfs and
/// command line (what makes a second setup a no-op), then how it was loaded.
fn loaded_stamp_path(cfg: &Config) -> PathBuf {
    PathBuf::from(format!("{}.loaded", cfg.capture.initramfs))
}

/// The stamp line that says which syscall loaded the capture kernel.
const LOADED_WITH: &str = "loaded with: ";

/// The fallback: the capture kernel through kexec_load, by the same loader as `kexec -c -p`
/// (our ELF core headers, boot_params and purgatory).
fn load_with_kexec_load(
    root: &SysRoot,
    machine: &kdump_machine::MachineInfo,
    kernel: &[u8],
    initramfs: &[u8],
    cmdline: &str,
) -> anyhow::Result<()> {
    let image = KernelImage::parse(kernel)?.header();
    let problems = check_load(&LoadCheck {
        machine,
        panic: true,
        syscall: Syscall::Legacy,
        image: &image,
        initrd_len: Some(initramfs.len() as u64),
        cap_sys_boot: true,
    });
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("\n  - {p}")).collect();
        bail!("kexec_load cannot load it either:{}", list.concat());
    }
    let options = Options {
        cmdline: cmdline.to_string(),
        elf32: false,
        backup: true,
        memmap_cmdline: false,
        skip_checks: false,
        window: None,
        // As `kexec -c -p`: the kernel updates the headers on hotplug where it can.
        hotplug: kdump_sys::crash_hotplug(root)
            .context("cannot read the kernel's crash hotplug support")?
            .elfcorehdr_for_load(),
    };
    let load = LegacyLoad { kernel, initrd: Some(initramfs), options, panic: true };
    let plan = plan_kexec_load(root, machine, &load).context("cannot plan the kexec_load of the capture kernel")?;
    for w in &plan.machine.warnings {
        println!("  kexec_load: warning: {w}");
    }
    load_plan(root, &plan)?;
    Ok(())
}

/// What of the machine the capture kernel's ELF core headers depend on: RAM, and the CPUs
/// whose crash notes they point at.
fn machine_layout(machine: &kdump_machine::MachineInfo) -> String {
    let ram: Vec<String> = machine.system_ram.iter().map(|r| format!("{:#x}-{:#x}", r.start, r.end)).collect();
    format!("ram {} present {:?} possible {:?}", ram.join(","), machine.present_cpus, machine.possible_cpus)
}

/// `kdump reload`: `kdump setup` again if a capture kernel is loaded (and, with `if_needed`,
/// only where the kernel does not update it itself on hotplug). One at a time: udev runs
/// it for every CPU and memory block that comes or goes.
fn reload(config_path: &Path, if_needed: bool) -> anyhow::Result<()> {
    let root = SysRoot::host();
    let loaded = kdump_sys::kexec_loaded(&root, true).context("cannot read /sys/kernel/kexec_crash_loaded")?;
    if !loaded {
        println!("kdump reload: no capture kernel is loaded: nothing to do (kdump setup loads one)");
        return Ok(());
    }
    let hotplug = kdump_sys::crash_hotplug(&root)?;
    if if_needed && !hotplug.reload_needed() {
        println!("kdump reload: the kernel updates the loaded capture kernel on hotplug itself: nothing to do");
        return Ok(());
    }
    let (cfg, _) = load_config(config_path)?;
    let lock_path = PathBuf::from(format!("{}.lock", cfg.capture.initramfs));
    if let Some(dir) = lock_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let lock = File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
    setup(config_path, false)
}

fn unload() -> anyhow::Result<()> {
    let root = SysRoot::host();
    let loaded = kdump_sys::kexec_loaded(&root, true).context("cannot read /sys/kernel/kexec_crash_loaded")?;
    if !loaded {
        println!("kdump unload: no capture kernel is loaded: nothing to do");
        return Ok(());
    }
    kdump_sys::legacy::unload_any(true).context("cannot unload the capture kernel")?;
    println!("kdump unload: capture kernel unloaded");
    Ok(())
}

/// Where the target's crash directories are on the running system, if it is mounted.
fn mounted_crash_dir(root: &SysRoot, cfg: &Config) -> Option<PathBuf> {
    let spec = cfg.target_spec().ok()?;
    let (node, _) = find_target(root, &spec)?;
    let name = block::block_name_of(&node)?;
    let mounts = mount::mounts(root).ok()?;
    let m = mounts.iter().find(|m| block::block_name_of(Path::new(&m.source)).as_deref() == Some(name.as_str()))?;
    Some(m.target.join(cfg.target.path.trim_start_matches('/')))
}

fn summaries(dir: &Path) -> anyhow::Result<Vec<CrashDirSummary>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let files: Vec<(String, u64)> = std::fs::read_dir(entry.path())?
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            .collect();
        if files.iter().any(|(f, _)| f.starts_with("vmcore") || f == "kdump.log") {
            out.push(CrashDirSummary::from_files(&entry.file_name().to_string_lossy(), &files));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What `kdump status` reports (its `--json` form; docs/JSON.md).
#[derive(Debug, serde::Serialize)]
struct Status {
    /// Bytes reserved by crashkernel= (0: none).
    reserved_bytes: u64,
    /// Whether a capture kernel is loaded.
    capture_kernel_loaded: bool,
    /// How kdump setup loaded it in this boot (`kexec_file_load`, `kexec_load`), if it did.
    loaded_with: Option<String>,
    /// Whether the loaded capture kernel follows hotplug, in words.
    hotplug: Option<String>,
    /// Why the config cannot be used, when it cannot.
    config_error: Option<String>,
    /// The configured target.
    target: Option<TargetStatus>,
}

/// The target in [`Status`].
#[derive(Debug, serde::Serialize)]
struct TargetStatus {
    /// `disk`, `ssh` or `s3`.
    kind: &'static str,
    /// The device spec or the url.
    name: String,
    /// A disk: whether it is present now, and its node.
    present: Option<bool>,
    node: Option<String>,
    /// A disk mounted here: its crash directory, and the dumps in it (oldest first).
    dumps_dir: Option<String>,
    dumps: Option<Vec<CrashDirSummary>>,
}

fn status(config_path: &Path, json: bool) -> anyhow::Result<()> {
    let report = status_report(config_path)?;
    if json {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &report)?;
        println!();
        return Ok(());
    }
    println!(
        "reserved memory: {}",
        if report.reserved_bytes == 0 {
            "none (add crashkernel= to the kernel command line; kdump estimate says how much)".to_string()
        } else {
            mib(report.reserved_bytes)
        }
    );
    println!(
        "capture kernel:  {}",
        if report.capture_kernel_loaded {
            format!(
                "loaded{}",
                report.loaded_with.as_ref().map(|h| format!(" with {h}, by kdump setup")).unwrap_or_default()
            )
        } else {
            "NOT loaded (run kdump setup)".to_string()
        }
    );
    if let Some(h) = &report.hotplug {
        println!("hotplug:         {h}");
    }
    if let Some(e) = &report.config_error {
        println!("config:          {e}");
    }
    let Some(t) = &report.target else { return Ok(()) };
    match (t.kind, t.present) {
        ("ssh", _) => {
            println!("target:          {} (kdump check-target checks it; the dumps are on that server)", t.name)
        }
        ("s3", _) => {
            println!(
                "target:          {} (kdump check-target checks it; kdump fleet --config lists the crashes)",
                t.name
            )
        }
        (_, Some(true)) => println!("target:          {} present ({})", t.name, t.node.as_deref().unwrap_or("?")),
        _ => println!("target:          {} ABSENT", t.name),
    }
    if t.kind != "disk" {
        return Ok(());
    }
    match (&t.dumps_dir, &t.dumps) {
        (Some(dir), Some(list)) => {
            println!("dumps in {dir}: {}", list.len());
            for s in list.iter().rev().take(5) {
                println!("  {}", s.line());
            }
        }
        (Some(dir), None) => println!("dumps:           none yet ({dir} does not exist)"),
        _ => println!("dumps:           the target is not mounted here: kdump list --dir DIR"),
    }
    Ok(())
}

fn status_report(config_path: &Path) -> anyhow::Result<Status> {
    let root = SysRoot::host();
    let machine = collect_machine_info(&root).context("cannot read the machine description")?;
    let config = load_config(config_path);
    // How `kdump setup` loaded it, if its stamp is from this boot.
    let boot_id = root.read("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let loaded_with = config.as_ref().ok().and_then(|(cfg, _)| {
        let stamp = std::fs::read_to_string(loaded_stamp_path(cfg)).ok()?;
        let mut lines = stamp.lines();
        let this_boot = lines.next()?.split(' ').next() == Some(boot_id.trim());
        let how = lines.find_map(|l| l.strip_prefix(LOADED_WITH))?;
        this_boot.then(|| how.to_string())
    });
    let loaded = machine.kexec.crash_loaded;
    let mut report = Status {
        reserved_bytes: machine.crash_reserved(),
        capture_kernel_loaded: loaded,
        loaded_with: if loaded { loaded_with } else { None },
        hotplug: if loaded { Some(hotplug_line(&kdump_sys::crash_hotplug(&root)?)) } else { None },
        config_error: None,
        target: None,
    };
    let cfg = match config {
        Ok((c, _)) => c,
        Err(e) => {
            report.config_error = Some(format!("{e:#}"));
            return Ok(report);
        }
    };
    let remote =
        |kind, name: String| TargetStatus { kind, name, present: None, node: None, dumps_dir: None, dumps: None };
    report.target = Some(match cfg.destination()? {
        Destination::Ssh(ssh) => remote("ssh", ssh.to_string()),
        Destination::S3(s3) => remote("s3", s3.to_string()),
        Destination::Nfs(nfs) => remote("nfs", nfs.to_string()),
        Destination::Disk(spec) => {
            let node = find_target(&root, &spec).map(|(node, _)| node.display().to_string());
            let dir = mounted_crash_dir(&root, &cfg);
            let dumps = match &dir {
                Some(d) if d.is_dir() => Some(summaries(d)?),
                _ => None,
            };
            TargetStatus {
                kind: "disk",
                name: spec.to_string(),
                present: Some(node.is_some()),
                node,
                dumps_dir: dir.map(|d| d.display().to_string()),
                dumps,
            }
        }
    });
    Ok(report)
}

/// Whether the loaded capture kernel follows CPU/memory hotplug by itself, or needs the
/// reload the udev rule (packaging/98-kdump-hotplug.rules) does.
fn hotplug_line(hp: &kdump_sys::CrashHotplug) -> String {
    let kinds = |v: bool| {
        let kinds: Vec<&str> =
            [("CPU", hp.cpu), ("memory", hp.memory)].iter().filter(|(_, f)| *f == Some(v)).map(|(k, _)| *k).collect();
        kinds.join(" and ")
    };
    if !hp.reload_needed() {
        format!("updated by the kernel on {} hotplug (crash hotplug)", kinds(true))
    } else if hp.cpu.is_none() && hp.memory.is_none() {
        "no crash hotplug in this kernel: reloaded on CPU/memory hotplug by kdump reload --if-needed (udev rule)"
            .to_string()
    } else {
        format!(
            "NOT updated by the kernel on {} hotplug: reloaded by kdump reload --if-needed (udev rule)",
            kinds(false)
        )
    }
}

fn list(config_path: &Path, dir: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let (cfg, _) = load_config(config_path)?;
            match cfg.destination()? {
                Destination::Ssh(ssh) => bail!(
                    "the dumps are on the ssh server {ssh}: list them there (a name ending in .incomplete is a dump \
                     that did not finish), or copy them here and give --dir DIR"
                ),
                Destination::S3(s3) => {
                    bail!("the dumps are in the S3 bucket {s3}: kdump fleet --config {} list", config_path.display())
                }
                Destination::Nfs(nfs) => bail!(
                    "the dumps are on the NFS export {nfs}: mount it and give --dir MOUNTPOINT (a directory \
                     without vmcore, or with vmcore.incomplete, is a dump that did not finish)"
                ),
                Destination::Disk(_) => {}
            }
            mounted_crash_dir(&SysRoot::host(), &cfg).context(
                "the configured target is not mounted on this system: mount it, or give --dir <mountpoint>/<path>",
            )?
        }
    };
    let list = summaries(&dir)?;
    if json {
        serde_json::to_writer_pretty(std::io::stdout().lock(), &list)?;
        println!();
        return Ok(());
    }
    if list.is_empty() {
        println!("no dumps in {}", dir.display());
    }
    for s in &list {
        println!("{}", s.line());
    }
    Ok(())
}

/// The target that holds the most memory while the dump goes out (one is used at a time).
fn sink_memory(cfg: &Config) -> anyhow::Result<kdump_service::estimate::SinkMemory> {
    use kdump_service::estimate::SinkMemory;
    let kinds: Vec<SinkMemory> = cfg
        .destinations()?
        .into_iter()
        .map(|(_, d)| match d {
            // The kernel's NFS client writes through the page cache, as to a disk.
            Destination::Disk(_) | Destination::Nfs(_) => SinkMemory::Disk,
            Destination::Ssh(_) => SinkMemory::Ssh,
            Destination::S3(_) => SinkMemory::S3,
        })
        .collect();
    Ok([SinkMemory::S3, SinkMemory::Ssh].into_iter().find(|k| kinds.contains(k)).unwrap_or(SinkMemory::Disk))
}

/// What `kdump estimate --json` prints (docs/JSON.md).
#[derive(Debug, serde::Serialize)]
struct EstimateReport {
    ram_bytes: u64,
    max_pfn: u64,
    estimate: kdump_service::estimate::Estimate,
    reserved_bytes: u64,
    enough: bool,
}

fn estimate(config_path: &Path, json: bool) -> anyhow::Result<()> {
    let (cfg, text) = load_config(config_path)?;
    let root = SysRoot::host();
    let built = build(&cfg, &text, &root, false)?;
    let raw = std::fs::read(&built.kernel).with_context(|| format!("cannot read {}", built.kernel.display()))?;
    let raw = kdump_loader::image::decompress(&raw)?.unwrap_or(raw);
    let image = KernelImage::parse(&raw)?.header();
    let machine = collect_machine_info(&root).context("cannot read the machine description")?;
    let max_pfn = machine.system_ram.iter().map(|r| r.end / 4096 + 1).max().unwrap_or(0);
    let e = kdump_service::estimate::estimate(&kdump_service::estimate::EstimateInput {
        kernel_init_size: u64::from(image.init_size),
        initramfs_len: built.initramfs.bytes.len() as u64,
        max_pfn,
        page_size: 4096,
        threads: u64::from(cfg.dump.threads),
        sink: sink_memory(&cfg)?,
    });
    let reserved = machine.crash_reserved();
    if json {
        let report = EstimateReport {
            ram_bytes: machine.ram_total(),
            max_pfn,
            reserved_bytes: reserved,
            enough: reserved >= e.total,
            estimate: e,
        };
        serde_json::to_writer_pretty(std::io::stdout().lock(), &report)?;
        println!();
        return Ok(());
    }
    println!("crashkernel estimate for {} of RAM (max PFN {max_pfn:#x}):", mib(machine.ram_total()));
    print!("{}", e.render());
    if reserved == 0 {
        println!("now reserved: none");
    } else if reserved < e.total {
        println!("now reserved: {} — TOO SMALL: use crashkernel={}M", mib(reserved), e.crashkernel_mib);
    } else {
        println!("now reserved: {} — enough", mib(reserved));
    }
    Ok(())
}

fn test(yes: bool) -> anyhow::Result<()> {
    if !yes {
        bail!("kdump test crashes this machine on purpose: run it as `kdump test --yes-crash-this-machine`");
    }
    let root = SysRoot::host();
    let loaded = kdump_sys::kexec_loaded(&root, true).context("cannot read /sys/kernel/kexec_crash_loaded")?;
    if !loaded {
        bail!("no capture kernel is loaded: run kdump setup first (the crash would save nothing)");
    }
    println!("kdump test: crashing the machine now (sysrq c)");
    let err = power::crash_now();
    Err(err).context("cannot trigger the crash through /proc/sysrq-trigger")
}

fn extract(device: &Path, dest: &Path, force: bool) -> anyhow::Result<()> {
    if dest.exists() && !force {
        bail!("{} exists: use -f to overwrite it", dest.display());
    }
    let input = File::open(device).with_context(|| format!("cannot open {}", device.display()))?;
    let out = File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut w = std::io::BufWriter::new(out);
    let len = kdump_dumpfile::rebuild_flattened(std::io::BufReader::with_capacity(1 << 20, input), &mut w)
        .with_context(|| format!("{} holds no complete flattened dump", device.display()))?;
    let out = w.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    println!("kdump extract: {} bytes from {} into {}", len, device.display(), dest.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kdump_dumpfile::{FlatWriter, WriteAt};

    /// Every object key in `v`, with its parent's (`target.kind`).
    fn keys(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                    out.push(path.clone());
                    keys(child, &path, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| keys(c, at, out)),
            _ => {}
        }
    }

    #[test]
    fn docs_json_md_names_every_field_of_status_list_and_estimate() {
        let doc = include_str!("../../../docs/JSON.md");
        let dump = CrashDirSummary::from_files("h-2026-12-01-10:00:00", &[("vmcore".into(), 5)]);
        let status = Status {
            reserved_bytes: 1,
            capture_kernel_loaded: true,
            loaded_with: Some("kexec_file_load".into()),
            hotplug: None,
            config_error: None,
            target: Some(TargetStatus {
                kind: "disk",
                name: "LABEL=crash".into(),
                present: Some(true),
                node: Some("/dev/vdb".into()),
                dumps_dir: Some("/var/crash".into()),
                dumps: Some(vec![dump.clone()]),
            }),
        };
        let e = kdump_service::estimate::estimate(&kdump_service::estimate::EstimateInput {
            kernel_init_size: 1 << 20,
            initramfs_len: 1 << 20,
            max_pfn: 1 << 18,
            page_size: 4096,
            threads: 1,
            sink: kdump_service::estimate::SinkMemory::S3,
        });
        let mut all = Vec::new();
        keys(&serde_json::to_value(&status).unwrap(), "", &mut all);
        keys(&serde_json::to_value(vec![dump]).unwrap(), "", &mut all);
        let report = EstimateReport { ram_bytes: 1, max_pfn: 1, estimate: e, reserved_bytes: 0, enough: false };
        keys(&serde_json::to_value(&report).unwrap(), "", &mut all);
        for k in all {
            // Nested rows are documented by their full path, or (list entries) by name.
            let last = k.rsplit('.').next().unwrap();
            let documented = [format!("`{k}`"), format!("`{k}."), format!("`{last}`")].iter().any(|n| doc.contains(n));
            assert!(documented, "docs/JSON.md does not name {k}");
        }
    }

    #[test]
    fn extract_rebuilds_a_stream_followed_by_old_device_contents() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FlatWriter::new(Vec::new()).unwrap();
        w.write_at(4096, b"second").unwrap();
        w.write_at(0, b"first").unwrap();
        let mut device = w.finish().unwrap();
        device.extend(std::iter::repeat_n(0xAAu8, 1 << 16)); // the rest of the raw device
        let dev = dir.path().join("device");
        std::fs::write(&dev, &device).unwrap();
        let dest = dir.path().join("vmcore");
        extract(&dev, &dest, false).unwrap();
        let out = std::fs::read(&dest).unwrap();
        assert_eq!(out.len(), 4096 + 6);
        assert_eq!(&out[..5], b"first");
        assert_eq!(&out[4096..], b"second");
        assert!(extract(&dev, &dest, false).unwrap_err().to_string().contains("-f"), "no silent overwrite");
        std::fs::write(&dev, vec![0u8; 8192]).unwrap();
        let err = format!("{:#}", extract(&dev, &dir.path().join("x"), false).unwrap_err());
        assert!(err.contains("holds no complete flattened dump"), "{err}");
    }

    #[test]
    fn modules_are_decompressed_by_their_suffix() {
        let plain = b"\x7fELF module bytes ".repeat(4);
        // python3: lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32), as the kernel's xz --check=crc32.
        let xz: &[u8] = &[
            0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x0, 0x0, 0x1, 0x69, 0x22, 0xde, 0x36, 0x2, 0x0, 0x21, 0x1, 0x16, 0x0, 0x0,
            0x0, 0x74, 0x2f, 0xe5, 0xa3, 0xe0, 0x0, 0x47, 0x0, 0x1a, 0x5d, 0x0, 0x3f, 0x91, 0x45, 0x84, 0x69, 0x4d,
            0x97, 0x1d, 0x12, 0xf2, 0x65, 0xff, 0x65, 0xfb, 0xc0, 0x90, 0xb3, 0x11, 0xce, 0xfa, 0xd, 0x5a, 0x54, 0xd0,
            0x0, 0x0, 0x0, 0x0, 0x0, 0x63, 0x97, 0x93, 0x8d, 0x0, 0x1, 0x32, 0x48, 0xf8, 0x28, 0xf1, 0xb5, 0x90, 0x42,
            0x99, 0xd, 0x1, 0x0, 0x0, 0x0, 0x0, 0x1, 0x59, 0x5a,
        ];
        assert_eq!(decompress_module("m.ko.xz", xz.to_vec()).unwrap(), plain);
        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        assert_eq!(decompress_module("m.ko.zst", zst).unwrap(), plain);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        assert_eq!(decompress_module("m.ko.gz", gz.finish().unwrap()).unwrap(), plain);
        assert_eq!(decompress_module("m.ko", plain.clone()).unwrap(), plain);
        assert!(decompress_module("m.ko.xz", b"not xz".to_vec()).is_err());
    }

    #[test]
    fn hotplug_line_says_when_a_reload_is_needed() {
        let hp = kdump_sys::CrashHotplug { elfcorehdr_size: Some(1), cpu: Some(true), memory: Some(false) };
        assert_eq!(
            hotplug_line(&hp),
            "NOT updated by the kernel on memory hotplug: reloaded by kdump reload --if-needed (udev rule)"
        );
        let hp = kdump_sys::CrashHotplug { memory: Some(true), ..hp };
        assert_eq!(hotplug_line(&hp), "updated by the kernel on CPU and memory hotplug (crash hotplug)");
        assert!(hotplug_line(&kdump_sys::CrashHotplug::default()).starts_with("no crash hotplug in this kernel"));
    }

    #[test]
    fn list_summarises_crash_directories() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("web1-2026-11-26-05:41:46");
        let b = dir.path().join("web1-2026-11-27-01:00:00");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(dir.path().join("lost+found")).unwrap();
        std::fs::write(a.join("vmcore"), vec![0u8; 1 << 20]).unwrap();
        std::fs::write(a.join("dmesg.txt"), "x").unwrap();
        std::fs::write(b.join("vmcore.incomplete"), "x").unwrap();
        std::fs::write(b.join("kdump.log"), "x").unwrap();
        let list = summaries(dir.path()).unwrap();
        assert_eq!(list.len(), 2, "lost+found is not a crash");
        assert!(list[0].complete && list[0].dmesg && list[0].vmcore_bytes == 1 << 20);
        assert!(list[1].incomplete && !list[1].complete);
    }

    #[test]
    fn device_path_targets_are_found_only_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        let dev = dir.path().join("disk.img");
        let mut img = vec![0u8; 4096];
        img[1024 + 0x38] = 0x53;
        img[1024 + 0x39] = 0xef;
        img[1024 + 0x78..1024 + 0x7d].copy_from_slice(b"crash");
        std::fs::write(&dev, &img).unwrap();
        let (node, id) = find_target(&root, &TargetSpec::Path(dev.clone())).unwrap();
        assert_eq!(node, dev);
        assert_eq!(id.unwrap().label, "crash");
        assert!(find_target(&root, &TargetSpec::Path(dir.path().join("nope"))).is_none());
        // No /sys/class/block under this root: labels resolve to nothing.
        assert!(find_target(&root, &TargetSpec::Label("crash".into())).is_none());
    }
}
