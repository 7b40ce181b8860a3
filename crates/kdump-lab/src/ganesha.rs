//! NFS-Ganesha, a real user-space NFS server, for the NFS target's tests: one read-write
//! export without root squash, no grace period, no locking. The test reaches it from a guest
//! through `guestfwd` relays ([`Ganesha::relay_prefix`]); nothing else can.
//!
//! - [`Ganesha::start`]: NFSv4 only, on a free port of 127.0.0.1 (one port, no rpcbind).
//! - [`Ganesha::start_v3`]: NFSv3 and NFSv4, in network, mount and PID namespaces the test
//!   creates, with an rpcbind of its own there (Ganesha will not serve NFSv3 unregistered):
//!   NFS on port 2049 and MOUNT on 20048 of that namespace's loopback, which nothing on the
//!   host can reach. Everything in it dies with the server.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;

/// NFS's port in a namespace of the server's own.
pub const NFS_PORT: u16 = 2049;
/// NFSv3's MOUNT port in a namespace of the server's own.
pub const MOUNT_PORT: u16 = 20048;

/// A running `ganesha.nfsd`; stopped when dropped.
#[derive(Debug)]
pub struct Ganesha {
    child: Child,
    port: u16,
    /// With NFSv3, in namespaces of its own: the process whose network namespace it is.
    namespace: Option<u32>,
    export: PathBuf,
    log: PathBuf,
}

impl Ganesha {
    /// Starts an NFSv4 server in `dir` (config, log, state), exporting `dir/export` as
    /// `pseudo` on a free port of 127.0.0.1.
    pub fn start(dir: &Path, pseudo: &str) -> Result<Self, LabError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| LabError::Setup(format!("no free port for nfs-ganesha: {e}")))?
            .port();
        let (export, log, conf) = prepare(dir, pseudo, port, false)?;
        let child = spawn(Command::new("ganesha.nfsd").args(daemon_args(&log, &conf, dir)))?;
        let mut server = Self { child, port, namespace: None, export, log };
        server.wait_until(|| TcpStream::connect(("127.0.0.1", port)).is_ok())?;
        Ok(server)
    }

    /// Starts an NFSv3 and NFSv4 server in `dir` inside new network, mount and PID
    /// namespaces with its own rpcbind (see the module docs). NFSv3 mounts `export()` by its
    /// path; NFSv4 sees it as `pseudo`.
    pub fn start_v3(dir: &Path, pseudo: &str) -> Result<Self, LabError> {
        let (export, log, conf) = prepare(dir, pseudo, NFS_PORT, true)?;
        let daemon: Vec<String> =
            daemon_args(&log, &conf, dir).iter().map(|a| format!("'{}'", a.to_string_lossy())).collect();
        // PID 1 of the new PID namespace is ganesha: when it dies, rpcbind dies with it.
        let script = format!(
            "mount -t tmpfs tmpfs /run && ip link set lo up && rpcbind -w && exec ganesha.nfsd {}",
            daemon.join(" ")
        );
        let child = spawn(Command::new("unshare").args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            &script,
        ]))?;
        let namespace = Some(child.id());
        let mut server = Self { child, port: NFS_PORT, namespace, export, log };
        server.wait_until(|| {
            std::fs::read_to_string(server_log_path(dir)).is_ok_and(|l| l.contains("NFS SERVER INITIALIZED"))
        })?;
        Ok(server)
    }

    fn wait_until(&mut self, ready: impl Fn() -> bool) -> Result<(), LabError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LabError::Setup(format!("ganesha.nfsd exited ({status}): {}", self.log_text())));
            }
            if Instant::now() > deadline {
                return Err(LabError::Setup(format!("ganesha.nfsd was not ready in 30 s: {}", self.log_text())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The NFS port, on 127.0.0.1 of the host or of the server's namespace.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What a relay command starts with to reach the server's 127.0.0.1: nothing on the
    /// host, `nsenter` into the server's network namespace for [`Ganesha::start_v3`].
    pub fn relay_prefix(&self) -> String {
        match self.namespace {
            Some(pid) => format!("nsenter --net=/proc/{pid}/ns/net "),
            None => String::new(),
        }
    }

    /// The exported directory on this machine.
    pub fn export(&self) -> &Path {
        &self.export
    }

    /// The server's log, for a failure message.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_log_path(dir: &Path) -> PathBuf {
    dir.join("ganesha.log")
}

/// A fresh `dir` with the export, recovery directory and config: (export, log, config).
fn prepare(dir: &Path, pseudo: &str, port: u16, v3: bool) -> Result<(PathBuf, PathBuf, PathBuf), LabError> {
    let setup = |e: std::io::Error| LabError::Setup(format!("nfs-ganesha in {}: {e}", dir.display()));
    let _ = std::fs::remove_dir_all(dir);
    let export = dir.join("export");
    let recovery = dir.join("recovery");
    std::fs::create_dir_all(&export).map_err(setup)?;
    std::fs::create_dir_all(&recovery).map_err(setup)?;
    // In its own namespace it binds everything there is (its loopback): Ganesha cannot
    // resolve an address where no interface but lo has one.
    let (protocols, listen) = if v3 {
        ("3, 4", format!("    MNT_Port = {MOUNT_PORT};\n    Enable_UDP = false;\n"))
    } else {
        ("4", "    Bind_addr = 127.0.0.1;\n".to_string())
    };
    let config = format!(
        r#"NFS_CORE_PARAM {{
    Protocols = {protocols};
    NFS_Port = {port};
{listen}    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSV4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = {recovery};
}}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{
    Export_Id = 1;
    Path = {export};
    Pseudo = {pseudo};
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = {protocols};
    Transports = TCP;
    SecType = sys;
    FSAL {{ Name = VFS; }}
}}
"#,
        recovery = recovery.display(),
        export = export.display(),
    );
    let conf = dir.join("ganesha.conf");
    std::fs::write(&conf, config).map_err(setup)?;
    Ok((export, server_log_path(dir), conf))
}

fn daemon_args(log: &Path, conf: &Path, dir: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "-F".into(),
        "-N".into(),
        "NIV_EVENT".into(),
        "-L".into(),
        log.into(),
        "-f".into(),
        conf.into(),
        "-p".into(),
        dir.join("ganesha.pid").into(),
    ]
}

fn spawn(cmd: &mut Command) -> Result<Child, LabError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| LabError::Setup(format!("{cmd:?}: {e} (scripts/deps.sh installs nfs-ganesha)")))
}
