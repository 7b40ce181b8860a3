//! NFS-Ganesha, a real user-space NFS server, on 127.0.0.1 for the NFS target's tests: NFSv4
//! only (one port, no rpcbind: Ganesha's NFSv3 refuses to start without one), one read-write
//! export without root squash, no grace period, no locking.
//! The test reaches it from a guest through a `guestfwd` relay; nothing else can.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;

/// A running `ganesha.nfsd`; stopped when dropped.
#[derive(Debug)]
pub struct Ganesha {
    child: Child,
    port: u16,
    export: PathBuf,
    log: PathBuf,
}

impl Ganesha {
    /// Starts an NFSv4 server in `dir` (config, log, state), exporting `dir/export` as
    /// `pseudo` on a free port of 127.0.0.1.
    pub fn start(dir: &Path, pseudo: &str) -> Result<Self, LabError> {
        let setup = |e: std::io::Error| LabError::Setup(format!("nfs-ganesha in {}: {e}", dir.display()));
        let _ = std::fs::remove_dir_all(dir);
        let export = dir.join("export");
        let recovery = dir.join("recovery");
        std::fs::create_dir_all(&export).map_err(setup)?;
        std::fs::create_dir_all(&recovery).map_err(setup)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(setup)?.port();
        let config = format!(
            r#"NFS_CORE_PARAM {{
    Protocols = 4;
    NFS_Port = {port};
    Bind_addr = 127.0.0.1;
    Enable_NLM = false;
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
    Protocols = 4;
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
        let log = dir.join("ganesha.log");
        let child = Command::new("ganesha.nfsd")
            .args(["-F", "-N", "NIV_EVENT", "-L"])
            .arg(&log)
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("ganesha.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LabError::Setup(format!("ganesha.nfsd: {e} (scripts/deps.sh installs nfs-ganesha)")))?;
        let mut server = Self { child, port, export, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(LabError::Setup(format!("ganesha.nfsd exited ({status}): {}", server.log_text())));
            }
            if Instant::now() > deadline {
                return Err(LabError::Setup(format!("ganesha.nfsd did not listen in 30 s: {}", server.log_text())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
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
