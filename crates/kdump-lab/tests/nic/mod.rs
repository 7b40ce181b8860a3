//! The lab NIC's driver modules, for the tests that bring a network up (network.rs, ssh.rs).
//!
//! virtio_net and virtio_pci are modules in Debian's cloud kernel: the first kernel loads
//! them (from the kernel package, with a modules.dep made from their `depends=`), and
//! `kdump setup` must find the NIC by its MAC and put its driver modules, with their
//! dependencies, into the capture initramfs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use kdump_lab::{LabKernel, Nic, Scenario};

pub const MAC: &str = "52:54:00:6b:64:01";
/// The NIC's driver and its bus's (virtio_pci is a module up to Debian's 6.1 cloud kernel,
/// built in since 6.12), with what they need.
pub const NIC_MODULES: &[&str] = &["virtio_net", "virtio_pci"];

pub fn modinfo(ko: &[u8], key: &str) -> Option<String> {
    let pat = format!("\0{key}=");
    let at = ko.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let end = ko[at..].iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&ko[at..at + end]).into_owned())
}

/// A module file under `dir`: `NAME.ko`, or compressed as Debian ships them since 6.12.
pub fn find_module(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find_module(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|f| {
            let f = f.to_string_lossy();
            f == format!("{name}.ko") || f == format!("{name}.ko.xz") || f == format!("{name}.ko.zst")
        }) {
            return Some(path);
        }
    }
    None
}

/// A module file's ELF bytes.
pub fn decompressed(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out).unwrap();
            out
        }
        Some("zst") => zstd::decode_all(raw.as_slice()).unwrap(),
        _ => raw,
    }
}

/// The kernel's modules directory, `[usr/]lib/modules/<release>` of the unpacked package
/// (`boot/vmlinuz-<release>`, or `usr/lib/modules/<release>/vmlinuz` in newer packages).
pub fn modules_dir(kernel: LabKernel) -> std::path::PathBuf {
    let image = kernel.image().unwrap();
    let file = image.file_name().unwrap().to_string_lossy().into_owned();
    let release = match file.strip_prefix("vmlinuz-") {
        Some(r) => r.to_string(),
        None => image.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned(),
    };
    let candidates: Vec<std::path::PathBuf> = image
        .ancestors()
        .flat_map(|a| [a.join("lib/modules").join(&release), a.join("usr/lib/modules").join(&release)])
        .collect();
    candidates
        .into_iter()
        .find(|d| d.join("kernel").is_dir())
        .unwrap_or_else(|| panic!("no modules directory for {}", image.display()))
}

/// The NIC's modules of `kernel`, resolved as depmod would from their `depends=`.
pub struct NicModules {
    /// Guest files: /lab/modules (the modules as shipped, modules.dep, modules.builtin) and
    /// /lab/insmod (the same modules decompressed, for busybox insmod in the first kernel).
    pub files: Vec<(String, Vec<u8>)>,
    /// The decompressed modules in load order (dependencies first).
    pub insmod: Vec<String>,
    /// Every module name resolved.
    pub names: Vec<String>,
}

pub fn nic_modules(kernel: LabKernel) -> NicModules {
    let modules = modules_with(kernel, NIC_MODULES);
    assert!(modules.names.iter().any(|n| n == "net_failover"), "virtio_net needs net_failover");
    modules
}

/// `roots` and every module they need, of `kernel`, resolved as depmod would from their
/// `depends=` (the guest files as for [`nic_modules`]).
pub fn modules_with(kernel: LabKernel, roots: &[&str]) -> NicModules {
    let base = modules_dir(kernel);
    let builtin_list = std::fs::read_to_string(base.join("modules.builtin")).unwrap();
    let builtin =
        |name: &str| builtin_list.lines().any(|l| l.rsplit('/').next().is_some_and(|f| f == format!("{name}.ko")));
    let mut found: BTreeMap<String, (String, Vec<String>, std::path::PathBuf)> = BTreeMap::new();
    let mut todo: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    while let Some(name) = todo.pop() {
        if found.contains_key(&name) || builtin(&name) {
            continue;
        }
        let path =
            find_module(&base.join("kernel"), &name).unwrap_or_else(|| panic!("{name}.ko not in {}", base.display()));
        let ko = decompressed(&path);
        let deps: Vec<String> = modinfo(&ko, "depends")
            .unwrap_or_default()
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| d.replace('-', "_"))
            .collect();
        todo.extend(deps.iter().cloned());
        let rel = path.strip_prefix(&base).unwrap().to_string_lossy().into_owned();
        found.insert(name, (rel, deps, path));
    }
    fn visit(n: &str, found: &BTreeMap<String, (String, Vec<String>, std::path::PathBuf)>, order: &mut Vec<String>) {
        if order.iter().any(|o| o == n) {
            return;
        }
        for d in &found[n].1 {
            visit(d, found, order);
        }
        order.push(n.to_string());
    }
    let mut order: Vec<String> = Vec::new();
    for n in found.keys() {
        visit(n, &found, &mut order);
    }
    let dep: String = found
        .values()
        .map(|(rel, deps, _)| {
            let paths: Vec<&str> = deps.iter().map(|d| found[d].0.as_str()).collect();
            format!("{rel}: {}\n", paths.join(" "))
        })
        .collect();
    let mut files = vec![
        ("lab/modules/modules.dep".to_string(), dep.into_bytes()),
        ("lab/modules/modules.builtin".to_string(), std::fs::read(base.join("modules.builtin")).unwrap()),
    ];
    for (name, (rel, _, path)) in &found {
        files.push((format!("lab/modules/{rel}"), std::fs::read(path).unwrap()));
        files.push((format!("lab/insmod/{name}.ko"), decompressed(path)));
    }
    NicModules {
        files,
        insmod: order.iter().map(|n| format!("/lab/insmod/{n}.ko")).collect(),
        names: found.into_keys().collect(),
    }
}

impl NicModules {
    /// The first kernel's shell lines that load these modules, find the lab NIC (as `$IF`)
    /// and give it 10.0.2.15/24: the path to the server that `kdump setup` then copies.
    pub fn static_address_lines(&self) -> String {
        let insmod: String = self.insmod.iter().map(|m| format!("insmod {m}\n")).collect();
        format!(
            "{insmod}for d in /sys/class/net/*; do [ \"$(cat $d/address)\" = \"{MAC}\" ] && IF=${{d##*/}}; done\n\
             ip link set $IF up && ip addr add 10.0.2.15/24 dev $IF\n"
        )
    }

    /// `scenario` with these modules' files in the guest.
    pub fn into_guest(self, mut scenario: Scenario) -> Scenario {
        for (path, data) in self.files {
            scenario = scenario.file(&path, data, 0o644);
        }
        scenario
    }
}

/// The lab NIC on QEMU's restricted user network, each connection the guest opens to
/// `server` handed to a `kdump-lab relay 127.0.0.1:PORT` process of its own.
pub fn relayed_nic(server: &str, port: u16) -> Nic {
    relays_nic(&[(server, relay_command("", port))])
}

/// The command QEMU runs for each guest connection: `kdump-lab relay 127.0.0.1:PORT`, after
/// `prefix` (an `nsenter` into a server's network namespace, or nothing).
pub fn relay_command(prefix: &str, port: u16) -> String {
    format!("{prefix}{} relay 127.0.0.1:{port}", env!("CARGO_BIN_EXE_kdump-lab"))
}

/// The lab NIC with several guest-side servers, each with its relay command.
pub fn relays_nic(relays: &[(&str, String)]) -> Nic {
    let commands = relays.iter().map(|(server, command)| (server.parse().unwrap(), command.clone())).collect();
    Nic { mac: MAC.into(), forwards: Vec::new(), commands, connected: true }
}
