//! The ssh target of kdump: a small blocking SSH client that writes a crash directory to a
//! server over SFTP.
//!
//! - **Host keys are pinned**: the server's ssh-ed25519 key must be in an OpenSSH
//!   `known_hosts` file ([`KnownHosts`]); an unknown or changed key is refused with its
//!   fingerprint and the fix. There is no one to answer a prompt in a capture kernel.
//! - **Auth** with an unencrypted ed25519 key in OpenSSH format ([`PrivateKey`];
//!   `kdump ssh-key` makes one).
//! - **A crash directory** ([`RemoteCrashDir`]) is written as `NAME.incomplete` and renamed to
//!   `NAME` only when everything in it is complete and fsynced, as on a local disk.
//!   [`RemoteFile`] implements [`kdump_dumpfile::WriteAt`], so the kdump-compressed file is
//!   written in place at its offsets: no flattened stream and no `-R` step afterwards.
//! - [`check()`] answers `kdump check-target`: reachability, host key, authentication, write
//!   permission and free space, each problem with its fix.
//!
//! The protocol subset (curve25519-sha256, ssh-ed25519, aes256-gcm@openssh.com, SFTP v3 with
//! OpenSSH's extensions) is in every OpenSSH since 6.5. It is built on pure-Rust primitives
//! (no OpenSSL, no async runtime) so the static capture binary stays small.
//!
//! This crate does network I/O itself (std's `TcpStream`); it reads no files: the binary
//! reads the key and known_hosts and hands over their text.
#![forbid(unsafe_code)]

mod channel;
pub mod check;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod key;
mod known_hosts;
mod sftp;
mod transport;
mod url;
mod wire;

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use check::{CheckItem, CheckReport, check};
pub use error::{Error, Result};
pub use key::{ED25519, PrivateKey, fingerprint};
pub use known_hosts::{KnownHosts, Verdict, host_name};
pub use sftp::{FsSpace, PIPELINE_BYTES, RemoteFile};
pub use url::SshUrl;

use crate::channel::SftpChannel;
use crate::sftp::Sftp;
use crate::transport::Transport;

/// Suffix of a crash directory that is still being written.
pub const INCOMPLETE: &str = ".incomplete";

/// How to reach and trust a server.
#[derive(Debug)]
pub struct SshTarget {
    /// Where.
    pub url: SshUrl,
    /// Our identity.
    pub key: PrivateKey,
    /// The pinned host keys.
    pub known_hosts: KnownHosts,
    /// The known_hosts file's path, for messages.
    pub known_hosts_path: String,
    /// Bound on connecting and on waiting for any single answer.
    pub timeout: Duration,
    /// Connect to this address instead of resolving the URL's host: a capture kernel has no
    /// resolver (`kdump setup` can resolve the name beforehand). The host key is still looked
    /// up under the URL's host name.
    pub address: Option<IpAddr>,
}

impl SshTarget {
    /// A target with the default timeout (30 s).
    pub fn new(url: SshUrl, key: PrivateKey, known_hosts: KnownHosts, known_hosts_path: &str) -> Self {
        SshTarget {
            url,
            key,
            known_hosts,
            known_hosts_path: known_hosts_path.to_string(),
            timeout: Duration::from_secs(30),
            address: None,
        }
    }

    /// Connects, verifies the host key, authenticates and starts SFTP.
    pub fn connect(&self) -> Result<Connection> {
        let t = self.handshake()?;
        self.session(t)
    }

    /// [`Self::connect`], tried up to `attempts` times `delay` apart while the failure is
    /// transient ([`Error::is_transient`]: a network still coming up, a server restarting);
    /// `on_retry(attempt, error)` is told of each failure that will be retried, for the console.
    pub fn connect_retrying(
        &self,
        attempts: u32,
        delay: Duration,
        mut on_retry: impl FnMut(u32, &Error),
    ) -> Result<Connection> {
        let mut attempt = 1;
        loop {
            match self.connect() {
                Err(e) if e.is_transient() && attempt < attempts => {
                    on_retry(attempt, &e);
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// TCP connection and key exchange, host key verified.
    fn handshake(&self) -> Result<Transport> {
        let stream = self.tcp()?;
        let t = Transport::handshake(Box::new(stream), &self.url.host)?;
        self.verify_host_key(t.host_key())?;
        Ok(t)
    }

    fn tcp(&self) -> Result<TcpStream> {
        let (host, port) = (&self.url.host, self.url.port);
        let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let connect_err = |source| Error::Connect { addr: addr.clone(), source };
        let addrs: Vec<SocketAddr> = match self.address {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => (host.as_str(), port).to_socket_addrs().map_err(connect_err)?.collect(),
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    s.set_nodelay(true).map_err(connect_err)?;
                    s.set_read_timeout(Some(self.timeout)).map_err(connect_err)?;
                    s.set_write_timeout(Some(self.timeout)).map_err(connect_err)?;
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(connect_err(last))
    }

    fn verify_host_key(&self, offered: &[u8]) -> Result<()> {
        let name = host_name(&self.url.host, self.url.port);
        let fp = fingerprint(offered);
        let known_hosts = self.known_hosts_path.clone();
        match self.known_hosts.verify(&name, offered) {
            Verdict::Trusted { .. } => Ok(()),
            Verdict::Mismatch { line } => {
                Err(Error::HostKeyMismatch { host: name, fingerprint: fp, known_hosts, line })
            }
            Verdict::Revoked { line } => Err(Error::HostKeyRevoked { host: name, fingerprint: fp, known_hosts, line }),
            Verdict::Unknown { other_types } => Err(Error::HostKeyUnknown {
                host: name,
                fingerprint: fp,
                others: if other_types.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (known_hosts pins only {} keys for it, which kdump does not verify)",
                        other_types.join(", ")
                    )
                },
                keyscan: if self.url.port == 22 {
                    self.url.host.clone()
                } else {
                    format!("-p {} {}", self.url.port, self.url.host)
                },
                known_hosts,
            }),
        }
    }

    fn session(&self, mut t: Transport) -> Result<Connection> {
        channel::authenticate(&mut t, &self.url.user, &self.key)?;
        self.session_after_auth(t)
    }

    fn session_after_auth(&self, t: Transport) -> Result<Connection> {
        let sftp = Sftp::start(SftpChannel::open(t)?, self.timeout)?;
        Ok(Connection { sftp, base: self.url.path.clone() })
    }
}

/// An authenticated SFTP session to the target.
pub struct Connection {
    sftp: Sftp,
    base: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("host", &self.sftp.host()).field("base", &self.base).finish()
    }
}

impl Connection {
    /// The target directory (the URL's path).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Free space where the target directory is (or would be: its nearest existing parent).
    pub fn free_space(&mut self) -> Result<FsSpace> {
        let mut path = self.base.clone();
        loop {
            if self.sftp.is_dir(&path)?.is_some() || path == "/" || !path.contains('/') {
                return self.sftp.statvfs(&path);
            }
            path = match path.rfind('/') {
                Some(0) => "/".into(),
                Some(i) => path[..i].to_string(),
                None => ".".into(),
            };
        }
    }

    /// Creates `BASE/NAME.incomplete` (and BASE, like `mkdir -p`); refuses an existing one.
    pub fn create_crash_dir(&mut self, name: &str) -> Result<RemoteCrashDir<'_>> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::Protocol(format!("bad crash directory name {name:?}")));
        }
        self.sftp.set_activity(format!("creating the crash directory {name} in {}", self.base));
        self.sftp.mkdir_all(&self.base)?;
        let final_path = join(&self.base, name);
        let path = format!("{final_path}{INCOMPLETE}");
        let host = self.sftp.host().to_string();
        let exists = |path: String| Error::Sftp {
            host: host.clone(),
            op: "mkdir",
            path,
            code: 4,
            message: "it already exists (an earlier dump of the same name); crash directories are never reused".into(),
        };
        // The final rename would fail on it after the whole transfer: refuse now.
        if self.sftp.is_dir(&final_path)?.is_some() {
            return Err(exists(final_path));
        }
        if let Err(s) = self.sftp.mkdir(&path)? {
            if self.sftp.is_dir(&path)?.is_some() {
                return Err(exists(path));
            }
            return Err(self.sftp.error("mkdir", &path, s));
        }
        Ok(RemoteCrashDir { conn: self, path, final_path })
    }

    /// Creates and removes a file in the target directory: proof that a dump can be written.
    pub fn probe_write(&mut self) -> Result<()> {
        self.sftp.set_activity("testing write permission".into());
        self.sftp.mkdir_all(&self.base)?;
        let path = join(&self.base, &format!(".kdump-check-{}", std::process::id()));
        let handle = self.sftp.create(&path, false)?;
        let mut f = RemoteFile::new(&mut self.sftp, handle, path.clone());
        f.write_at_typed(0, b"kdump write test\n")?;
        f.finish()?;
        self.sftp.remove(&path)
    }

    /// Closes the session.
    pub fn close(self) -> Result<()> {
        self.sftp.close()
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') { format!("{dir}{name}") } else { format!("{dir}/{name}") }
}

/// A crash directory being written on the server, `NAME.incomplete` until [`Self::complete`].
pub struct RemoteCrashDir<'a> {
    conn: &'a mut Connection,
    path: String,
    final_path: String,
}

impl std::fmt::Debug for RemoteCrashDir<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCrashDir").field("path", &self.path).finish()
    }
}

impl RemoteCrashDir<'_> {
    /// The remote path being written (ends in `.incomplete`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The remote path once complete.
    pub fn final_path(&self) -> &str {
        &self.final_path
    }

    /// Creates `NAME` in the directory (0600) for writing at offsets; call
    /// [`RemoteFile::finish`] when done.
    pub fn create_file(&mut self, name: &str) -> Result<RemoteFile<'_>> {
        let path = join(&self.path, name);
        self.conn.sftp.set_activity(format!("writing {path}"));
        let handle = self.conn.sftp.create(&path, true)?;
        Ok(RemoteFile::new(&mut self.conn.sftp, handle, path))
    }

    /// Writes a whole small file.
    pub fn write_file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut f = self.create_file(name)?;
        f.write_at_typed(0, data)?;
        f.finish()
    }

    /// Renames `NAME.incomplete` to `NAME`: from now on the dump looks complete.
    pub fn complete(self) -> Result<String> {
        self.conn.sftp.set_activity(format!("renaming {} to {}", self.path, self.final_path));
        self.conn.sftp.rename(&self.path, &self.final_path)?;
        Ok(self.final_path)
    }
}

#[cfg(test)]
mod tests {
    /// The save pipeline writes from its own thread: the file handle must be able to go there.
    #[test]
    fn handles_can_move_to_a_writer_thread() {
        fn send<T: Send>() {}
        send::<super::RemoteFile<'static>>();
        send::<super::RemoteCrashDir<'static>>();
        send::<super::Connection>();
    }
}
