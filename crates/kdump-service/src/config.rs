//! `/etc/kdump.toml`: the one file a user edits. Every key has a default;
//! [`DEFAULTS_TOML`] documents them all (printed by `kdump config --defaults`).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use kdump_net::{Ipv4Net, MacAddr};

use serde::{Deserialize, Serialize};

/// Where the config lives on the running system and in the capture initramfs.
pub const CONFIG_PATH: &str = "/etc/kdump.toml";

/// The documented defaults: a valid config file equal to [`Config::default`]
/// except for `target.device`, which has no default.
pub const DEFAULTS_TOML: &str = r#"# /etc/kdump.toml: every key with its default. Only target.device (or target.url) is required.

# What the capture kernel does after saving the dump: "reboot", "poweroff" or "halt".
final_action = "reboot"
# What it does when the dump cannot be saved:
#   "retry-stricter"  retry once at dump level 31, then keep whatever was saved, then final_action
#   "save-log"        keep whatever was saved (the kernel log, info.json, kdump.log), then final_action
#   "reboot" | "poweroff" | "halt"   do that at once
failure_action = "save-log"

[target]
# The filesystem (or raw device) that receives dumps: a device path ("/dev/nvme0n1p2"),
# "UUID=<filesystem uuid>" or "LABEL=<filesystem label>" (ext2/3/4, XFS and btrfs superblocks are read).
# No default: kdump setup refuses to run without it.
# device = "LABEL=crash"
# Or a server that receives dumps over ssh (SFTP) instead of a local device: exactly one of device
# and url. The host should be an IPv4 address (the capture kernel has no resolver); a name needs
# address below. It needs the network (below). Each crash gets PATH/<host>-<UTC time>/, written as
# <host>-<UTC time>.incomplete/ and renamed when complete.
# url = "ssh://kdump@192.0.2.10/var/crash"
# The address to connect to when the url names a host ("" when the url holds an address); the host
# key is still looked up in known_hosts under the url's name.
address = ""
# The unencrypted ed25519 key the capture kernel logs in with (`kdump ssh-key` makes one and prints
# the line to add to the server's authorized_keys).
ssh_key = "/root/.ssh/kdump_id_ed25519"
# OpenSSH known_hosts holding the server's ssh-ed25519 host key (`ssh-keyscan -t ed25519 HOST`):
# an unknown or changed key is refused. kdump setup copies both files into the capture initramfs.
known_hosts = "/root/.ssh/known_hosts"
# Or an S3-compatible bucket (AWS S3, Ceph RGW, MinIO, SeaweedFS, Garage): url = "s3://BUCKET/PREFIX".
# It needs the network (below). Each crash gets PREFIX/<host>/<UTC time>/ (dmesg.txt, info.json,
# kdump.log first, then vmcore, uploaded in parts while it is written) and an entry under
# PREFIX/.index/ that `kdump fleet` lists; a dump that cannot be finished leaves
# vmcore.incomplete (the reason), never a vmcore.
# url = "s3://crashes/fleet"
# The S3 endpoint: "http://A.B.C.D[:PORT]" or "https://NAME[:PORT]" (then set address above too:
# the capture kernel has no resolver).
endpoint = ""
# The region requests are signed for (SigV4).
region = "us-east-1"
# true: virtual-host requests (BUCKET.HOST); false: path-style (HOST/BUCKET), what most servers take.
virtual_host = false
# A file with the access key id on its first line and the secret on its second; kdump setup copies
# it into the capture initramfs (0600). Give the key write access to the prefix only.
credentials = "/etc/kdump/s3-credentials"
# For an https endpoint signed by a private CA: its certificate (PEM); "" trusts the built-in roots.
ca = ""
# Or an NFS export, mounted by the capture kernel's own NFS client: url = "nfs://HOST[:PORT]/EXPORT/PATH"
# (PORT: 2049 by default). The directory is mounted and each crash gets <host>-<UTC time>/ in it,
# as on a local disk. It needs the network (below). The mount is soft (timeo = 10 s, 3 retries), so a
# server that dies makes the dump fail instead of hanging the capture kernel; the server must be
# reachable within wait_seconds. NFSv4 needs only the one port; NFSv3 also asks the server's
# rpcbind for its mount port unless mount_port names it (and is mounted with nolock).
# url = "nfs://192.0.2.10/srv/crash"
# "4.1", "4.2", "4.0" or "3". 4.1 by default: with 4.2 the client also uses READ_PLUS and ALLOCATE,
# which some servers answer wrongly (NFS-Ganesha 4.3: Debian 13's client then fails writes with EIO).
nfs_version = "4.1"
# NFSv3: the port of the server's mountd (0: ask its rpcbind on port 111).
mount_port = 0
# Directory on that filesystem; each crash gets <path>/<host>-<UTC time>/ (vmcore, dmesg.txt, info.json, kdump.log).
path = "/var/crash"
# Filesystem type to mount: "ext4", "ext3", "ext2", "xfs", "btrfs", or "auto" (from the superblock).
fstype = "auto"
# true: device is a raw block device; the dump is written to it as a flattened stream
# (no log or info files), and `kdump extract DEVICE DEST` rebuilds a normal file after reboot.
raw = false
# Seconds the capture kernel waits for the device to appear.
wait_seconds = 30

# Where the dump goes when the target above fails (a server down or refusing, a disk absent or
# full), tried in order: [[fallback]] tables, each with the keys of [target]. The first that
# works gets the dump; failure_action runs only when every one failed. None by default.
# [[fallback]]
# device = "UUID=0a1b2c3d-0000-4000-8000-000000000001"
# path = "/var/crash"

[dump]
# Dump level (makedumpfile -d bitmask, 0-31): 1 zero pages, 2 cache without private, 4 all
# cache, 8 user memory, 16 free pages are left out. 31 keeps only kernel memory, what a crash
# needs, as every distribution does by default; 1 keeps everything but zero pages.
level = 31
# Page compression: "none", "zlib", "lzo", "snappy" or "zstd" (lzo and zlib are readable by every makedumpfile).
codec = "lzo"
# Compression threads in the capture kernel (it boots with nr_cpus=1).
threads = 1

[capture]
# The capture kernel. "" means /boot/vmlinuz-<release of the running kernel>. A bzImage (also a
# compressed one) or an ELF vmlinux; what kexec_file_load refuses is loaded with kexec_load.
kernel = ""
# Where kdump setup writes the capture initramfs it builds.
initramfs = "/var/lib/kdump/initramfs.img"
# The capture kernel's command line. "" means the console= words of the running kernel's command line
# and panic=10 (a capture kernel that panics reboots instead of hanging).
# kdump always adds "irqpoll nr_cpus=1 reset_devices" (and the kernel adds elfcorehdr=).
cmdline = ""
# More words for the capture kernel's command line.
append = ""
# Kernel modules to load in the capture kernel besides the ones the target needs (found in sysfs).
modules = []
# Where modules.dep and the modules are. "" means /lib/modules/<release of the capture kernel>
# (its setup header names it; the running kernel's release when it does not).
modules_dir = ""

# The network the capture kernel brings up before saving (for network targets). No [network]
# table: none, unless a target is a server: then kdump setup writes into the capture initramfs
# this machine's path to it as it is when setup runs (the interface, its address as a static one,
# the gateway of the route). With one, interface and either dhcp = true or address are required.
# [network]
# The interface, by its permanent MAC (`ethtool -P`): names can differ in the capture kernel.
# interface = "52:54:00:12:34:56"
# Take the address, prefix and gateway from a DHCP server...
# dhcp = false
# ...or set them: the address with its prefix length, and the gateway to destinations off that
# subnet ("" for none: only the subnet is reachable).
# address = "10.0.2.15/24"
# gateway = ""
# Seconds to wait for a carrier after bringing the link up, and for a DHCP lease.
# carrier_wait_seconds = 15
# dhcp_wait_seconds = 30
# "HOST:PORT" (IPv4) the capture kernel connects to once the network is up, sending one line and
# logging the first line it gets back (an ssh server answers with its version): a check that the
# dump server is reachable. "" for none.
# probe = ""
"#;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// After a saved dump.
    pub final_action: Action,
    /// When the dump could not be saved.
    pub failure_action: FailureAction,
    /// Where dumps go.
    pub target: Target,
    /// Where they go when `target` fails, tried in order (`[[fallback]]` tables, the keys of `[target]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<Target>,
    /// How they are saved.
    pub dump: DumpSettings,
    /// The capture kernel.
    pub capture: Capture,
    /// The capture kernel's network, when it needs one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// The interface's permanent MAC.
    pub interface: String,
    /// Configure by DHCP.
    pub dhcp: bool,
    /// A static `A.B.C.D/N`, or "".
    pub address: String,
    /// The static gateway, or "".
    pub gateway: String,
    /// Seconds to wait for a carrier.
    pub carrier_wait_seconds: u32,
    /// Seconds to wait for a DHCP lease.
    pub dhcp_wait_seconds: u32,
    /// `HOST:PORT` to check reachability of, or "".
    pub probe: String,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            interface: String::new(),
            dhcp: false,
            address: String::new(),
            gateway: String::new(),
            carrier_wait_seconds: 15,
            dhcp_wait_seconds: 30,
            probe: String::new(),
        }
    }
}

/// How the capture kernel gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// From a DHCP server.
    Dhcp,
    /// Set in the config.
    Static {
        /// Address and prefix.
        net: Ipv4Net,
        /// The default gateway.
        gateway: Option<Ipv4Addr>,
    },
}

impl Network {
    /// This table as TOML, with its `[network]` header (to append to a config that has none).
    pub fn to_table(&self) -> String {
        format!("[network]\n{}", toml::to_string(self).unwrap_or_default())
    }

    /// The interface's MAC.
    pub fn mac(&self) -> Result<MacAddr, ConfigError> {
        if self.interface.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "network.interface is not set: write the permanent MAC of the NIC the capture kernel uses, \
                 e.g. interface = \"52:54:00:12:34:56\" (ethtool -P IFACE shows it)"
                    .into(),
            ));
        }
        self.interface.parse().map_err(|e| ConfigError::Invalid(format!("network.interface: {e}")))
    }

    /// DHCP or the static address, checked.
    pub fn addressing(&self) -> Result<Addressing, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        match (self.dhcp, self.address.trim().is_empty()) {
            (true, false) => invalid("network: dhcp = true and an address are both set: choose one".into()),
            (false, true) => invalid("network: set dhcp = true, or a static address = \"A.B.C.D/N\"".into()),
            (true, true) if !self.gateway.trim().is_empty() => {
                invalid("network.gateway is for a static address; with dhcp = true the server names it".into())
            }
            (true, true) => Ok(Addressing::Dhcp),
            (false, false) => {
                let net: Ipv4Net =
                    self.address.parse().map_err(|e| ConfigError::Invalid(format!("network.address: {e}")))?;
                let gateway =
                    match self.gateway.trim() {
                        "" => None,
                        g => Some(g.parse::<Ipv4Addr>().map_err(|_| {
                            ConfigError::Invalid(format!("network.gateway {g:?} is not an IPv4 address"))
                        })?),
                    };
                if let Some(g) = gateway
                    && !net.contains(g)
                {
                    return invalid(format!("network.gateway {g} is not on the subnet of network.address {net}"));
                }
                Ok(Addressing::Static { net, gateway })
            }
        }
    }

    /// The probe address, when set.
    pub fn probe(&self) -> Result<Option<SocketAddrV4>, ConfigError> {
        match self.probe.trim() {
            "" => Ok(None),
            p => p.parse().map(Some).map_err(|_| {
                ConfigError::Invalid(format!("network.probe {p:?} is not an IPv4 HOST:PORT, e.g. \"10.0.2.100:22\""))
            }),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.mac()?;
        self.addressing()?;
        self.probe()?;
        for (key, v) in
            [("carrier_wait_seconds", self.carrier_wait_seconds), ("dhcp_wait_seconds", self.dhcp_wait_seconds)]
        {
            if v > 600 {
                return Err(ConfigError::Invalid(format!("network.{key} {v} is more than ten minutes")));
            }
        }
        Ok(())
    }
}

/// `[target]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Target {
    /// `/dev/...`, `UUID=...` or `LABEL=...`.
    pub device: Option<String>,
    /// `ssh://user@host[:port]/path`.
    pub url: Option<String>,
    /// The address of a url's host name, or "".
    pub address: String,
    /// The ssh user key.
    pub ssh_key: String,
    /// The pinned host keys.
    pub known_hosts: String,
    /// The S3 endpoint URL.
    pub endpoint: String,
    /// The S3 region.
    pub region: String,
    /// Virtual-host S3 requests instead of path-style.
    pub virtual_host: bool,
    /// The S3 key pair's file.
    pub credentials: String,
    /// The S3 endpoint's private CA (PEM file), or "".
    pub ca: String,
    /// The NFS protocol version: "4.1", "4.2", "4.0" or "3".
    pub nfs_version: String,
    /// NFSv3: the server's mountd port (0: ask its rpcbind).
    pub mount_port: u16,
    /// Directory on the filesystem.
    pub path: String,
    /// Filesystem type, or `auto`.
    pub fstype: String,
    /// A raw block device receiving the flattened stream.
    pub raw: bool,
    /// Seconds to wait for the device.
    pub wait_seconds: u32,
}

/// `[dump]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DumpSettings {
    /// makedumpfile dump level.
    pub level: u32,
    /// Page compression.
    pub codec: Codec,
    /// Encoder threads.
    pub threads: u32,
}

/// `[capture]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capture {
    /// Kernel image ("" = /boot/vmlinuz-<release>).
    pub kernel: String,
    /// Where the built initramfs is written.
    pub initramfs: String,
    /// Command line ("" = the running kernel's console= words).
    pub cmdline: String,
    /// Extra command-line words.
    pub append: String,
    /// Extra modules.
    pub modules: Vec<String>,
    /// Module directory ("" = /lib/modules/<release>).
    pub modules_dir: String,
}

/// What the capture kernel does at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// reboot(2) RESTART.
    Reboot,
    /// reboot(2) POWER_OFF.
    Poweroff,
    /// reboot(2) HALT.
    Halt,
}

/// What the capture kernel does when the dump fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Retry once at dump level 31, then as `save-log`.
    RetryStricter,
    /// Keep what was saved, then `final_action`.
    SaveLog,
    /// Reboot at once.
    Reboot,
    /// Power off at once.
    Poweroff,
    /// Halt at once.
    Halt,
}

/// Page compression of the saved dump: the dump-file crate's codec.
pub use kdump_dumpfile::Codec;

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Reboot => "reboot",
            Action::Poweroff => "poweroff",
            Action::Halt => "halt",
        })
    }
}

impl fmt::Display for FailureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureAction::RetryStricter => "retry-stricter",
            FailureAction::SaveLog => "save-log",
            FailureAction::Reboot => "reboot",
            FailureAction::Poweroff => "poweroff",
            FailureAction::Halt => "halt",
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            final_action: Action::Reboot,
            failure_action: FailureAction::SaveLog,
            target: Target::default(),
            fallback: Vec::new(),
            dump: DumpSettings::default(),
            capture: Capture::default(),
            network: None,
        }
    }
}

impl Default for Target {
    fn default() -> Self {
        Self {
            device: None,
            url: None,
            address: String::new(),
            ssh_key: "/root/.ssh/kdump_id_ed25519".into(),
            known_hosts: "/root/.ssh/known_hosts".into(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            virtual_host: false,
            credentials: "/etc/kdump/s3-credentials".into(),
            ca: String::new(),
            nfs_version: "4.1".into(),
            mount_port: 0,
            path: "/var/crash".into(),
            fstype: "auto".into(),
            raw: false,
            wait_seconds: 30,
        }
    }
}

impl Target {
    /// Where dumps go: `target.device` or `target.url`, exactly one, checked.
    pub fn destination(&self) -> Result<Destination, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let url = match (&self.device, &self.url) {
            (Some(_), Some(_)) => {
                return invalid(
                    "target.device and target.url are both set: a dump goes to one target, choose one".into(),
                );
            }
            (None, None) => {
                return invalid(
                    "target.device is not set: name the filesystem that receives dumps, e.g. \
                     [target] device = \"LABEL=crash\", or a server: url = \"ssh://user@IP/path\" \
                     (see kdump config --defaults)"
                        .into(),
                );
            }
            (Some(device), None) => return TargetSpec::parse(device).map(Destination::Disk),
            (None, Some(url)) => url,
        };
        if let Some(rest) = url.strip_prefix("nfs://") {
            return self.nfs_destination(url, rest).map(Destination::Nfs);
        }
        if url.starts_with("s3://") {
            return self.s3_destination(url).map(Destination::S3);
        }
        let url = kdump_ssh::SshUrl::parse(url).map_err(|e| ConfigError::Invalid(format!("target.url: {e}")))?;
        let address = self.connect_address(&url.host, "target.url", "the host key stays looked up under the name")?;
        for (key, v) in [("ssh_key", &self.ssh_key), ("known_hosts", &self.known_hosts)] {
            if !v.starts_with('/') {
                return invalid(format!("target.{key} {v:?} must be an absolute path"));
            }
        }
        Ok(Destination::Ssh(SshDestination {
            url,
            address,
            key_file: self.ssh_key.clone(),
            known_hosts_file: self.known_hosts.clone(),
        }))
    }

    /// `target.url = "s3://…"` with the S3 keys.
    fn nfs_destination(&self, url: &str, rest: &str) -> Result<NfsDestination, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let Some((authority, path)) = rest.split_once('/') else {
            return invalid(format!("target.url {url:?} names no export: write nfs://HOST[:PORT]/EXPORT/PATH"));
        };
        let path = format!("/{path}");
        if path.split('/').any(|c| c == "..") || path.contains(',') || path.chars().any(char::is_whitespace) {
            return invalid(format!("target.url {url:?}: the export path must not contain .., commas or spaces"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(port) if port > 0 => (h, port),
                _ => return invalid(format!("target.url {url:?}: {p:?} is not a port")),
            },
            None => (authority, NFS_PORT),
        };
        if host.is_empty() {
            return invalid(format!("target.url {url:?} names no server"));
        }
        let address = self.connect_address(host, "target.url", "the url keeps the name")?;
        let version = match self.nfs_version.trim() {
            "3" => NfsVersion::V3,
            "4" | "4.0" => NfsVersion::V4(0),
            "4.1" => NfsVersion::V4(1),
            "4.2" => NfsVersion::V4(2),
            v => return invalid(format!("target.nfs_version {v:?} is not one of 4.2, 4.1, 4.0, 3")),
        };
        if self.mount_port != 0 && version != NfsVersion::V3 {
            return invalid(format!(
                "target.mount_port is for NFSv3 (NFSv{version} needs only the server's port {port}): remove it"
            ));
        }
        Ok(NfsDestination {
            host: host.to_string(),
            address,
            port,
            path,
            version,
            mount_port: (self.mount_port != 0).then_some(self.mount_port),
        })
    }

    fn s3_destination(&self, url: &str) -> Result<S3Destination, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let parsed = kdump_s3::S3Url::parse(url).map_err(|e| ConfigError::Invalid(format!("target.url: {e}")))?;
        let t = self;
        if t.endpoint.is_empty() {
            return invalid(format!(
                "target.url {url:?} needs target.endpoint = \"http://A.B.C.D:PORT\" (or https://…): the S3 server"
            ));
        }
        let endpoint =
            kdump_s3::parse_endpoint(&t.endpoint).map_err(|e| ConfigError::Invalid(format!("target.endpoint: {e}")))?;
        let address = self.connect_address(&endpoint.host_port.host, "target.endpoint", "TLS still checks the name")?;
        if t.region.is_empty() || t.region.contains(['/', ' ']) {
            return invalid(format!("target.region {:?} is not a region name (e.g. us-east-1)", t.region));
        }
        if !t.credentials.starts_with('/') {
            return invalid(format!("target.credentials {:?} must be an absolute path", t.credentials));
        }
        if !t.ca.is_empty() && (!t.ca.starts_with('/') || !t.endpoint.starts_with("https://")) {
            return invalid(format!("target.ca {:?}: an absolute path, for an https:// endpoint only", t.ca));
        }
        Ok(S3Destination {
            url: parsed,
            endpoint: t.endpoint.trim_end_matches('/').to_string(),
            address,
            region: t.region.clone(),
            virtual_host: t.virtual_host,
            credentials_file: t.credentials.clone(),
            ca_file: (!t.ca.is_empty()).then(|| t.ca.clone()),
        })
    }

    /// The IPv4 address the capture kernel connects to for `host` (named by `key`): `host`
    /// itself, or `target.address` when `host` is a name (`kept` says what the name is still for).
    fn connect_address(&self, host: &str, key: &str, kept: &str) -> Result<Ipv4Addr, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        match (host.parse::<Ipv4Addr>(), self.address.trim()) {
            (Ok(ip), "") => Ok(ip),
            (Ok(_), a) => {
                invalid(format!("target.address {a:?} is set but {key} already names the address {host}: remove one"))
            }
            (Err(_), "") if host.contains(':') => {
                invalid(format!("{key}: {host} is an IPv6 address; the capture kernel's network is IPv4 only"))
            }
            (Err(_), "") => invalid(format!(
                "{key} names the host {host:?} but the capture kernel has no resolver: write its IPv4 address \
                 in {key}, or set target.address = \"A.B.C.D\" ({kept})"
            )),
            (Err(_), a) => a
                .parse::<Ipv4Addr>()
                .map_err(|_| ConfigError::Invalid(format!("target.address {a:?} is not an IPv4 address"))),
        }
    }

    /// The rules of one target. (A server target without `[network]` is fine: `kdump setup`
    /// takes this machine's route to it.)
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        match self.destination()? {
            Destination::Disk(spec) if self.raw && !matches!(spec, TargetSpec::Path(_)) => {
                return invalid(
                    "target.raw = true needs a device path (/dev/NAME): a raw device has no UUID or label".into(),
                );
            }
            Destination::Disk(_) => {}
            Destination::Ssh(_) | Destination::S3(_) | Destination::Nfs(_) if self.raw => {
                return invalid("target.raw = true is for a local device; target.url is a server".into());
            }
            // The url carries its own directory: target.path is for local filesystems.
            Destination::Ssh(_) | Destination::S3(_) | Destination::Nfs(_) => {}
        }
        if !self.path.starts_with('/') || self.path.split('/').any(|c| c == "..") {
            return invalid(format!("target.path {:?} must be absolute and must not contain ..", self.path));
        }
        if !FSTYPES.contains(&self.fstype.as_str()) {
            return invalid(format!("target.fstype {:?} is not one of {}", self.fstype, FSTYPES.join(", ")));
        }
        if self.wait_seconds > 3600 {
            return invalid(format!("target.wait_seconds {} is more than an hour", self.wait_seconds));
        }
        Ok(())
    }
}

/// An error of the `i`-th target (0: `[target]`), naming its `[[fallback]]`.
fn in_fallback(i: usize, e: ConfigError) -> ConfigError {
    match (i, e) {
        (0, e) => e,
        (i, ConfigError::Invalid(m)) => ConfigError::Invalid(format!("[[fallback]] {i}: {m}")),
        (_, e) => e,
    }
}

impl Default for DumpSettings {
    fn default() -> Self {
        Self { level: 31, codec: Codec::Lzo, threads: 1 }
    }
}

impl Default for Capture {
    fn default() -> Self {
        Self {
            kernel: String::new(),
            initramfs: "/var/lib/kdump/initramfs.img".into(),
            cmdline: String::new(),
            append: String::new(),
            modules: Vec::new(),
            modules_dir: String::new(),
        }
    }
}

/// How the target device is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A device node path.
    Path(PathBuf),
    /// A filesystem UUID (lowercase, with dashes as printed by blkid).
    Uuid(String),
    /// A filesystem label.
    Label(String),
}

impl TargetSpec {
    /// Whether a filesystem with identity `id` is this target (a path names a device, not a
    /// filesystem: never by identity). UUIDs compare without their dashes.
    pub fn matches(&self, id: &crate::superblock::FsIdentity) -> bool {
        match self {
            TargetSpec::Uuid(u) => id.uuid.replace('-', "") == u.replace('-', ""),
            TargetSpec::Label(l) => &id.label == l,
            TargetSpec::Path(_) => false,
        }
    }

    /// Parses `/dev/...`, `UUID=...` or `LABEL=...`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        if let Some(u) = s.strip_prefix("UUID=") {
            let u = u.trim_matches('"').to_ascii_lowercase();
            if u.is_empty() || !u.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(ConfigError::Invalid(format!("target.device: {s:?} is not a filesystem UUID")));
            }
            Ok(TargetSpec::Uuid(u))
        } else if let Some(l) = s.strip_prefix("LABEL=") {
            let l = l.trim_matches('"');
            if l.is_empty() {
                return Err(ConfigError::Invalid("target.device: LABEL= needs a label".into()));
            }
            Ok(TargetSpec::Label(l.to_string()))
        } else if s.starts_with('/') {
            Ok(TargetSpec::Path(PathBuf::from(s)))
        } else {
            Err(ConfigError::Invalid(format!(
                "target.device: {s:?} is not a device: write /dev/NAME, UUID=<uuid> or LABEL=<label>"
            )))
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Path(p) => write!(f, "{}", p.display()),
            TargetSpec::Uuid(u) => write!(f, "UUID={u}"),
            TargetSpec::Label(l) => write!(f, "LABEL={l}"),
        }
    }
}

/// Where a dump goes: exactly one of `target.device` and `target.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local filesystem or raw device.
    Disk(TargetSpec),
    /// A server reached over ssh.
    Ssh(SshDestination),
    /// An S3-compatible bucket.
    S3(S3Destination),
    /// A directory of an NFS export.
    Nfs(NfsDestination),
}

/// NFS's own port, what `nfs://HOST/…` means.
pub const NFS_PORT: u16 = 2049;

/// The NFS protocol a target is mounted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NfsVersion {
    /// NFSv3: the MOUNT protocol first (its port from `target.mount_port` or the server's
    /// rpcbind), no locking.
    V3,
    /// NFSv4 with this minor version: one connection to the server's port.
    V4(u8),
}

impl fmt::Display for NfsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NfsVersion::V3 => write!(f, "3"),
            NfsVersion::V4(minor) => write!(f, "4.{minor}"),
        }
    }
}

/// `target.url = "nfs://…"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsDestination {
    /// The server as the url names it.
    pub host: String,
    /// What to connect to: the url's address, or `target.address` for a name.
    pub address: Ipv4Addr,
    /// The server's NFS port.
    pub port: u16,
    /// The exported directory to mount.
    pub path: String,
    /// The protocol.
    pub version: NfsVersion,
    /// NFSv3: mountd's port, when given (else the server's rpcbind is asked).
    pub mount_port: Option<u16>,
}

/// `timeo` of the capture kernel's NFS mount, in tenths of a second: a soft mount gives up on a
/// request after `timeo` × (`retrans` + 1) rather than hang the capture kernel.
pub const NFS_TIMEO_DECISECONDS: u32 = 100;
/// `retrans` of the capture kernel's NFS mount.
pub const NFS_RETRANS: u32 = 3;

impl NfsDestination {
    /// The filesystem type `mount(2)` takes.
    pub fn fstype(&self) -> &'static str {
        match self.version {
            NfsVersion::V3 => "nfs",
            NfsVersion::V4(_) => "nfs4",
        }
    }

    /// The `mount(2)` source: `ADDRESS:/path`.
    pub fn source(&self) -> String {
        format!("{}:{}", self.address, self.path)
    }

    /// The kernel NFS client's mount options (the text `mount(2)` takes as data, as mount.nfs
    /// would pass it): TCP, explicit ports (no rpcbind lookup unless NFSv3 has no mount
    /// port), soft with bounded retries, no locking daemon for NFSv3.
    pub fn mount_options(&self) -> String {
        let mut o = format!(
            "vers={},addr={},port={},proto=tcp,soft,timeo={NFS_TIMEO_DECISECONDS},retrans={NFS_RETRANS},sec=sys",
            self.version, self.address, self.port
        );
        if self.version == NfsVersion::V3 {
            o.push_str(",nolock,mountproto=tcp,mountvers=3");
            if let Some(p) = self.mount_port {
                o.push_str(&format!(",mountport={p},mountaddr={}", self.address));
            }
        }
        o
    }

    /// The modules the kernel's NFS client needs (their dependencies come from modules.dep).
    pub fn modules(&self) -> &'static [&'static str] {
        match self.version {
            NfsVersion::V3 => &["nfs", "nfsv3"],
            NfsVersion::V4(_) => &["nfs", "nfsv4"],
        }
    }

    /// `nfs://host[:port]/path`.
    pub fn url_text(&self) -> String {
        let port = if self.port == NFS_PORT { String::new() } else { format!(":{}", self.port) };
        format!("nfs://{}{port}{}", self.host, self.path)
    }
}

impl fmt::Display for NfsDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (NFSv{})", self.url_text(), self.version)?;
        if self.host.parse::<Ipv4Addr>().is_err() {
            write!(f, " at {}", self.address)?;
        }
        Ok(())
    }
}

/// `target.url = "s3://…"` with its endpoint and key file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Destination {
    /// Bucket and key prefix.
    pub url: kdump_s3::S3Url,
    /// `target.endpoint`: `http(s)://host[:port]`.
    pub endpoint: String,
    /// What to connect to: the endpoint's address, or `target.address` for a name.
    pub address: Ipv4Addr,
    /// `target.region`.
    pub region: String,
    /// `target.virtual_host`.
    pub virtual_host: bool,
    /// `target.credentials`.
    pub credentials_file: String,
    /// `target.ca`, when set.
    pub ca_file: Option<String>,
}

impl S3Destination {
    /// `s3://bucket/prefix`.
    pub fn url_text(&self) -> String {
        if self.url.prefix.is_empty() {
            format!("s3://{}", self.url.bucket)
        } else {
            format!("s3://{}/{}", self.url.bucket, self.url.prefix)
        }
    }
}

impl fmt::Display for S3Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.url_text(), self.endpoint)?;
        let host = kdump_s3::parse_endpoint(&self.endpoint).map(|e| e.host_port.host).unwrap_or_default();
        if host.parse::<Ipv4Addr>().is_err() {
            write!(f, " ({})", self.address)?;
        }
        Ok(())
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Disk(spec) => write!(f, "{spec}"),
            Destination::Ssh(ssh) => write!(f, "{ssh}"),
            Destination::S3(s3) => write!(f, "{s3}"),
            Destination::Nfs(nfs) => write!(f, "{nfs}"),
        }
    }
}

impl Destination {
    /// Whether the dump leaves the machine over its network (ssh, S3 or NFS).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Destination::Disk(_))
    }
}

/// `target.url = "ssh://…"` with its key files, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDestination {
    /// User, host, port and directory.
    pub url: kdump_ssh::SshUrl,
    /// What to connect to: the url's address, or `target.address` for a name.
    pub address: Ipv4Addr,
    /// `target.ssh_key`.
    pub key_file: String,
    /// `target.known_hosts`.
    pub known_hosts_file: String,
}

impl fmt::Display for SshDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url)?;
        if self.url.host.parse::<Ipv4Addr>().is_err() {
            write!(f, " (at {})", self.address)?;
        }
        Ok(())
    }
}

/// A config that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or unknown keys / wrong types.
    #[error("{0}")]
    Syntax(String),
    /// Well-formed but unusable.
    #[error("{0}")]
    Invalid(String),
}

/// Filesystem types the capture init can mount.
pub const FSTYPES: &[&str] = &["auto", "ext4", "ext3", "ext2", "xfs", "btrfs"];

impl Config {
    /// Parses and validates a config file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The target device, parsed. Fails when it is not set (also for an ssh target).
    pub fn target_spec(&self) -> Result<TargetSpec, ConfigError> {
        match self.destination()? {
            Destination::Disk(spec) => Ok(spec),
            Destination::Ssh(ssh) => Err(ConfigError::Invalid(format!(
                "the target is the ssh server {ssh}, not a local device (target.url is set)"
            ))),
            Destination::S3(s3) => Err(ConfigError::Invalid(format!(
                "the target is the S3 bucket {s3}, not a local device (target.url is set)"
            ))),
            Destination::Nfs(nfs) => Err(ConfigError::Invalid(format!(
                "the target is the NFS export {nfs}, not a local device (target.url is set)"
            ))),
        }
    }

    /// Where dumps go: `target.device` or `target.url`, exactly one, checked.
    pub fn destination(&self) -> Result<Destination, ConfigError> {
        self.target.destination()
    }

    /// `[target]`, then each `[[fallback]]`, in the order the capture kernel tries them.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        std::iter::once(&self.target).chain(&self.fallback)
    }

    /// Every target's destination, in order; an error names the `[[fallback]]` it is in.
    pub fn destinations(&self) -> Result<Vec<(&Target, Destination)>, ConfigError> {
        self.targets()
            .enumerate()
            .map(|(i, t)| t.destination().map(|d| (t, d)).map_err(|e| in_fallback(i, e)))
            .collect()
    }

    /// Every rule a config must follow, checked at once (the first problem is reported).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (i, t) in self.targets().enumerate() {
            t.validate().map_err(|e| in_fallback(i, e))?;
        }
        // The capture initramfs holds one ssh key pair and one S3 credentials file.
        let dests = self.destinations()?;
        let ssh: BTreeSet<(&str, &str)> = dests
            .iter()
            .filter_map(|(_, d)| match d {
                Destination::Ssh(s) => Some((s.key_file.as_str(), s.known_hosts_file.as_str())),
                _ => None,
            })
            .collect();
        let s3: BTreeSet<(&str, Option<&str>)> = dests
            .iter()
            .filter_map(|(_, d)| match d {
                Destination::S3(s) => Some((s.credentials_file.as_str(), s.ca_file.as_deref())),
                _ => None,
            })
            .collect();
        if ssh.len() > 1 || s3.len() > 1 {
            return invalid(
                "targets of one kind must share their key files (ssh_key and known_hosts; credentials and ca): \
                 the capture initramfs holds one of each"
                    .into(),
            );
        }
        if self.dump.level > 31 {
            return invalid(format!("dump.level {} is out of range: use 0 to 31", self.dump.level));
        }
        if self.dump.threads == 0 || self.dump.threads > 256 {
            return invalid(format!("dump.threads {} must be 1 to 256", self.dump.threads));
        }
        for m in &self.capture.modules {
            if m.is_empty() || m.contains('/') || m.contains(char::is_whitespace) {
                return invalid(format!("capture.modules: {m:?} is not a module name"));
            }
        }
        if self.capture.initramfs.is_empty() || !self.capture.initramfs.starts_with('/') {
            return invalid(format!("capture.initramfs {:?} must be an absolute path", self.capture.initramfs));
        }
        if let Some(net) = &self.network {
            net.validate()?;
        }
        Ok(())
    }

    /// The config as TOML (what goes into the capture initramfs).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// The capture kernel's command line when `capture.cmdline` is empty: the
/// running kernel's `console=` words (the capture kernel then logs where the
/// first one did) and `panic=10` (a capture kernel that panics reboots
/// instead of hanging an unattended machine).
pub fn default_capture_cmdline(running: &str) -> String {
    let mut words: Vec<&str> = running.split_whitespace().filter(|w| w.starts_with("console=")).collect();
    words.push("panic=10");
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_are_the_defaults() {
        let text = DEFAULTS_TOML.replace("# device = \"LABEL=crash\"", "device = \"LABEL=crash\"");
        let parsed = Config::parse(&text).unwrap();
        let mut expected = Config::default();
        expected.target.device = Some("LABEL=crash".into());
        assert_eq!(parsed, expected);
        // Every key is documented.
        let toml = expected.to_toml();
        for line in toml.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(DEFAULTS_TOML.contains(&format!("{key} = ")), "{key} is not documented");
        }
    }

    #[test]
    fn docs_config_md_shows_the_defaults() {
        let doc = include_str!("../../../docs/CONFIG.md");
        assert!(doc.contains(DEFAULTS_TOML), "docs/CONFIG.md is out of date: paste DEFAULTS_TOML into it");
    }

    #[test]
    fn minimal_config_and_target_forms() {
        let c = Config::parse("[target]\ndevice = \"UUID=0A1B-ff\"\n").unwrap();
        assert_eq!(c.target_spec().unwrap(), TargetSpec::Uuid("0a1b-ff".into()));
        assert_eq!(c.dump.codec, Codec::Lzo);
        assert_eq!(TargetSpec::parse("LABEL=crash").unwrap(), TargetSpec::Label("crash".into()));
        assert_eq!(TargetSpec::parse("/dev/sda1").unwrap(), TargetSpec::Path("/dev/sda1".into()));
        assert!(TargetSpec::parse("sda1").is_err());
        assert!(TargetSpec::parse("UUID=xyz").is_err());
    }

    #[test]
    fn refusals_name_the_key() {
        let err = |t: &str| Config::parse(t).unwrap_err().to_string();
        assert!(err("").contains("target.device is not set"));
        assert!(err("").contains("url = \"ssh://"));
        assert!(err("[target]\ndevice=\"/dev/x\"\n[dump]\nlevel=32\n").contains("dump.level"));
        assert!(err("[target]\ndevice=\"/dev/x\"\nfstype=\"ntfs\"\n").contains("target.fstype"));
        assert!(err("[target]\ndevice=\"LABEL=x\"\nraw=true\n").contains("target.raw"));
        assert!(err("[target]\ndevice=\"/dev/x\"\npath=\"crash\"\n").contains("target.path"));
        assert!(err("[target]\ndevice=\"/dev/x\"\n[dump]\ncodec=\"lz4\"\n").contains("codec"));
        assert!(err("[target]\ndevice=\"/dev/x\"\nbogus=1\n").contains("bogus"));
        assert!(err("final_action=\"explode\"\n[target]\ndevice=\"/dev/x\"\n").contains("explode"));
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = Config::default();
        c.target.device = Some("/dev/nvme0n1".into());
        c.failure_action = FailureAction::RetryStricter;
        c.capture.modules = vec!["virtio_blk".into()];
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn network_dhcp_static_and_refusals() {
        let base = "[target]\ndevice=\"/dev/x\"\n[network]\ninterface=\"52:54:00:12:34:56\"\n";
        let c = Config::parse(&format!("{base}dhcp=true\nprobe=\"10.0.2.100:22\"\n")).unwrap();
        let net = c.network.as_ref().unwrap();
        assert_eq!(net.addressing().unwrap(), Addressing::Dhcp);
        assert_eq!(net.mac().unwrap().to_string(), "52:54:00:12:34:56");
        assert_eq!(net.probe().unwrap(), Some("10.0.2.100:22".parse().unwrap()));
        assert_eq!((net.carrier_wait_seconds, net.dhcp_wait_seconds), (15, 30));
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
        let c = Config::parse(&format!("{base}address=\"10.0.2.15/24\"\ngateway=\"10.0.2.2\"\n")).unwrap();
        assert_eq!(
            c.network.unwrap().addressing().unwrap(),
            Addressing::Static { net: "10.0.2.15/24".parse().unwrap(), gateway: Some(Ipv4Addr::new(10, 0, 2, 2)) }
        );
        let err = |t: &str| Config::parse(&format!("{base}{t}")).unwrap_err().to_string();
        assert!(err("").contains("set dhcp = true, or a static address"));
        assert!(err("dhcp=true\naddress=\"10.0.2.15/24\"\n").contains("choose one"));
        assert!(err("dhcp=true\ngateway=\"10.0.2.2\"\n").contains("the server names it"));
        assert!(err("address=\"10.0.2.15\"\n").contains("network.address"));
        assert!(err("address=\"10.0.2.15/24\"\ngateway=\"10.0.3.1\"\n").contains("not on the subnet"));
        assert!(err("dhcp=true\nprobe=\"host:22\"\n").contains("network.probe"));
        assert!(err("dhcp=true\ndhcp_wait_seconds=9999\n").contains("dhcp_wait_seconds"));
        let no_mac = "[target]\ndevice=\"/dev/x\"\n[network]\ndhcp=true\n";
        assert!(Config::parse(no_mac).unwrap_err().to_string().contains("network.interface is not set"));
        let bad_mac = "[target]\ndevice=\"/dev/x\"\n[network]\ninterface=\"eth0\"\ndhcp=true\n";
        assert!(Config::parse(bad_mac).unwrap_err().to_string().contains("not a MAC address"));
    }

    #[test]
    fn ssh_target_forms_and_refusals_name_the_key() {
        let net = "[network]\ninterface=\"52:54:00:12:34:56\"\ndhcp=true\n";
        let c = Config::parse(&format!("[target]\nurl=\"ssh://kdump@10.0.2.100/srv/crash\"\n{net}")).unwrap();
        let Destination::Ssh(ssh) = c.destination().unwrap() else { panic!("not ssh") };
        assert_eq!((ssh.url.user.as_str(), ssh.url.port, ssh.url.path.as_str()), ("kdump", 22, "/srv/crash"));
        assert_eq!(ssh.address, Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(ssh.key_file, "/root/.ssh/kdump_id_ed25519");
        assert_eq!(ssh.known_hosts_file, "/root/.ssh/known_hosts");
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
        assert!(c.target_spec().unwrap_err().to_string().contains("not a local device"));
        // A name with its address.
        let named = format!("[target]\nurl=\"ssh://k@backup.example:2222/d\"\naddress=\"192.0.2.7\"\n{net}");
        let Destination::Ssh(ssh) = Config::parse(&named).unwrap().destination().unwrap() else { panic!() };
        assert_eq!((ssh.address, ssh.url.port), (Ipv4Addr::new(192, 0, 2, 7), 2222));
        assert_eq!(ssh.to_string(), "ssh://k@backup.example:2222/d (at 192.0.2.7)");

        let err = |t: &str| Config::parse(t).unwrap_err().to_string();
        let url = "url=\"ssh://k@10.0.2.100/d\"\n";
        assert!(err(&format!("[target]\ndevice=\"/dev/x\"\n{url}{net}")).contains("both set"));
        // No [network]: kdump setup takes the route to the server.
        assert_eq!(Config::parse(&format!("[target]\n{url}")).unwrap().network, None);
        assert!(err(&format!("[target]\nurl=\"ssh://k@backup.example/d\"\n{net}")).contains("target.address"));
        assert!(err(&format!("[target]\nurl=\"ssh://k@h/d\"\naddress=\"h2\"\n{net}")).contains("target.address"));
        assert!(err(&format!("[target]\n{url}address=\"10.0.0.1\"\n{net}")).contains("remove one"));
        assert!(err(&format!("[target]\nurl=\"ssh://k@[::1]/d\"\n{net}")).contains("IPv4 only"));
        assert!(err(&format!("[target]\nurl=\"ssh://10.0.2.100/d\"\n{net}")).contains("target.url"));
        assert!(err(&format!("[target]\n{url}ssh_key=\"id\"\n{net}")).contains("target.ssh_key"));
        assert!(err(&format!("[target]\n{url}known_hosts=\"kh\"\n{net}")).contains("target.known_hosts"));
        assert!(err(&format!("[target]\n{url}raw=true\n{net}")).contains("target.raw"));
    }

    #[test]
    fn nfs_target_forms_mount_options_and_refusals() {
        let net = "[network]\ninterface=\"52:54:00:12:34:56\"\ndhcp=true\n";
        let nfs = |extra: &str| -> Result<NfsDestination, String> {
            let c = Config::parse(&format!("[target]\n{extra}{net}")).map_err(|e| e.to_string())?;
            assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
            match c.destination().unwrap() {
                Destination::Nfs(n) => Ok(n),
                d => panic!("not nfs: {d}"),
            }
        };
        let v4 = nfs("url=\"nfs://10.0.2.100/srv/crash\"\n").unwrap();
        assert_eq!((v4.port, v4.path.as_str(), v4.version), (2049, "/srv/crash", NfsVersion::V4(1)));
        assert_eq!((v4.source(), v4.fstype()), ("10.0.2.100:/srv/crash".to_string(), "nfs4"));
        assert_eq!(v4.mount_options(), "vers=4.1,addr=10.0.2.100,port=2049,proto=tcp,soft,timeo=100,retrans=3,sec=sys");
        assert_eq!(v4.modules(), ["nfs", "nfsv4"]);
        assert_eq!(v4.to_string(), "nfs://10.0.2.100/srv/crash (NFSv4.1)");
        let v3 = nfs("url=\"nfs://nas:20049/export\"\naddress=\"192.0.2.7\"\nnfs_version=\"3\"\nmount_port=20048\n")
            .unwrap();
        assert_eq!((v3.fstype(), v3.modules()), ("nfs", &["nfs", "nfsv3"][..]));
        assert_eq!(
            v3.mount_options(),
            "vers=3,addr=192.0.2.7,port=20049,proto=tcp,soft,timeo=100,retrans=3,sec=sys,nolock,mountproto=tcp,\
             mountvers=3,mountport=20048,mountaddr=192.0.2.7"
        );
        assert_eq!(v3.to_string(), "nfs://nas:20049/export (NFSv3) at 192.0.2.7");
        assert_eq!(nfs("url=\"nfs://10.0.2.100/e\"\nnfs_version=\"4.0\"\n").unwrap().version, NfsVersion::V4(0));
        for (extra, why) in [
            ("url=\"nfs://10.0.2.100\"\n", "names no export"),
            ("url=\"nfs://10.0.2.100:x/e\"\n", "is not a port"),
            ("url=\"nfs://10.0.2.100/a/../b\"\n", "must not contain"),
            ("url=\"nfs://10.0.2.100/a,b\"\n", "must not contain"),
            ("url=\"nfs://nas/e\"\n", "target.address"),
            ("url=\"nfs://10.0.2.100/e\"\nnfs_version=\"5\"\n", "not one of 4.2"),
            ("url=\"nfs://10.0.2.100/e\"\nmount_port=20048\n", "mount_port is for NFSv3"),
            ("url=\"nfs://10.0.2.100/e\"\nraw=true\n", "target.raw"),
        ] {
            let e = nfs(extra).unwrap_err();
            assert!(e.contains(why), "{extra:?}: {e}");
        }
    }

    #[test]
    fn s3_target_forms_and_refusals_name_the_key() {
        let net = "[network]\ninterface=\"52:54:00:12:34:56\"\ndhcp=true\n";
        let base = "[target]\nurl=\"s3://crashes/fleet/eu\"\nendpoint=\"http://10.0.2.100:8333/\"\n";
        let c = Config::parse(&format!("{base}{net}")).unwrap();
        let Destination::S3(s3) = c.destination().unwrap() else { panic!("not s3") };
        assert_eq!((s3.url.bucket.as_str(), s3.url.prefix.as_str()), ("crashes", "fleet/eu"));
        assert_eq!((s3.endpoint.as_str(), s3.address), ("http://10.0.2.100:8333", Ipv4Addr::new(10, 0, 2, 100)));
        assert_eq!((s3.region.as_str(), s3.virtual_host, s3.ca_file.as_deref()), ("us-east-1", false, None));
        assert_eq!(s3.credentials_file, "/etc/kdump/s3-credentials");
        assert_eq!(s3.to_string(), "s3://crashes/fleet/eu at http://10.0.2.100:8333");
        assert!(c.destination().unwrap().is_remote());
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
        assert!(c.target_spec().unwrap_err().to_string().contains("the S3 bucket s3://crashes/fleet/eu"));
        // An https name with its address and private CA.
        let named = "[target]\nurl=\"s3://crashes\"\nendpoint=\"https://s3.example:9000\"\naddress=\"192.0.2.7\"\n\
                     ca=\"/etc/kdump/ca.pem\"\nvirtual_host=true\n";
        let Destination::S3(s3) = Config::parse(&format!("{named}{net}")).unwrap().destination().unwrap() else {
            panic!()
        };
        assert_eq!(s3.to_string(), "s3://crashes at https://s3.example:9000 (192.0.2.7)");
        assert_eq!((s3.ca_file.as_deref(), s3.virtual_host), (Some("/etc/kdump/ca.pem"), true));

        let err = |t: &str| Config::parse(t).unwrap_err().to_string();
        assert!(err(&format!("[target]\nurl=\"s3://crashes\"\n{net}")).contains("needs target.endpoint"));
        assert!(
            err(&format!("[target]\nurl=\"s3://Bad_Bucket\"\nendpoint=\"http://10.0.0.1\"\n{net}"))
                .contains("bucket name")
        );
        assert!(
            err(&format!("[target]\nurl=\"s3://crashes\"\nendpoint=\"ftp://10.0.0.1\"\n{net}"))
                .contains("target.endpoint")
        );
        assert!(
            err(&format!("[target]\nurl=\"s3://crashes\"\nendpoint=\"http://s3.example\"\n{net}"))
                .contains("set target.address")
        );
        assert!(err(&format!("{base}credentials=\"creds\"\n{net}")).contains("target.credentials"));
        assert!(err(&format!("{base}ca=\"/ca.pem\"\n{net}")).contains("https:// endpoint only"));
        assert!(err(&format!("{base}region=\"\"\n{net}")).contains("target.region"));
        assert!(Config::parse(base).is_ok(), "kdump setup fills [network] from the route");
    }

    #[test]
    fn fallbacks_are_targets_in_order_and_their_errors_say_which() {
        let text = "[target]\nurl = \"ssh://k@10.0.2.100/d\"\n[[fallback]]\ndevice = \"LABEL=crash\"\n\
                    [[fallback]]\ndevice = \"/dev/vdc\"\nraw = true\n[network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n";
        let c = Config::parse(text).unwrap();
        let names: Vec<String> = c.destinations().unwrap().iter().map(|(_, d)| d.to_string()).collect();
        assert_eq!(names, ["ssh://k@10.0.2.100/d", "LABEL=crash", "/dev/vdc"]);
        assert!(c.fallback[1].raw);
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c, "round trip");
        let err = Config::parse(&format!("{text}[[fallback]]\ndevice = \"LABEL=x\"\npath = \"rel\"\n")).unwrap_err();
        assert_eq!(err.to_string(), "[[fallback]] 3: target.path \"rel\" must be absolute and must not contain ..");
        let err = Config::parse("[target]\ndevice = \"LABEL=a\"\n[[fallback]]\nurl = \"s3://crashes\"\n").unwrap_err();
        assert!(err.to_string().starts_with("[[fallback]] 1: target.url"), "{err}");
    }

    #[test]
    fn a_network_table_written_by_setup_reads_back() {
        let net = Network {
            interface: "52:54:00:12:34:56".into(),
            address: "10.0.2.15/24".into(),
            gateway: "10.0.2.2".into(),
            ..Network::default()
        };
        let c = Config::parse(&format!("[target]\nurl = \"ssh://k@10.0.2.100/d\"\n{}", net.to_table())).unwrap();
        assert_eq!(c.network, Some(net));
    }

    #[test]
    fn documented_network_keys_are_the_defaults() {
        // The commented [network] table of DEFAULTS_TOML, uncommented, is Network::default().
        let table: String = DEFAULTS_TOML
            .lines()
            .skip_while(|l| *l != "# [network]")
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let doc: toml::Table = toml::from_str(&table).unwrap();
        let net: Network = doc["network"].clone().try_into().unwrap();
        let expected =
            Network { interface: "52:54:00:12:34:56".into(), address: "10.0.2.15/24".into(), ..Network::default() };
        assert_eq!(net, expected);
    }

    #[test]
    fn capture_cmdline_keeps_consoles() {
        assert_eq!(
            default_capture_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/sda1 console=tty0 console=ttyS0,115200 quiet"),
            "console=tty0 console=ttyS0,115200 panic=10"
        );
        assert_eq!(default_capture_cmdline("root=/dev/sda1"), "panic=10");
    }
}
