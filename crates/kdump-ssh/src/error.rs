//! Every way sending a dump over ssh can fail, each naming its cause and its fix.

use std::io;

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the ssh client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target URL is not `ssh://user@host[:port]/path`.
    #[error("bad ssh target {url:?}: {reason}; write it as ssh://user@host[:port]/absolute/path")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key is not usable.
    #[error("ssh private key: {reason}; {fix}")]
    Key {
        /// What is wrong.
        reason: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// No TCP connection to the server.
    #[error("cannot connect to {addr}: {source}; {}", connect_fix(source))]
    Connect {
        /// `host:port`.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// The host is not in known_hosts (or only with other key types).
    #[error(
        "host key of {host} is not known: the server offers ssh-ed25519 key {fingerprint}{others}; \
         refusing to send a dump to an unverified host. Fix: check the fingerprint with the \
         server's administrator (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server), \
         then add it with `ssh-keyscan -t ed25519 {keyscan} >> {known_hosts}`"
    )]
    HostKeyUnknown {
        /// The host as known_hosts names it (`host` or `[host]:port`).
        host: String,
        /// SHA256 fingerprint of the key the server offered.
        fingerprint: String,
        /// Note about entries of other key types, or empty.
        others: String,
        /// ssh-keyscan's arguments for the host: `[-p PORT] HOST`.
        keyscan: String,
        /// The known_hosts file.
        known_hosts: String,
    },
    /// known_hosts pins another key for this host: maybe an attack, maybe a reinstalled server.
    #[error(
        "HOST KEY MISMATCH for {host}: the server offers ssh-ed25519 key {fingerprint}, but \
         {known_hosts} line {line} pins another key; this is either a man-in-the-middle or a \
         server whose host key changed. Fix: verify the new key with the server's administrator, \
         then `ssh-keygen -R '{host}' -f {known_hosts}` and add the new key"
    )]
    HostKeyMismatch {
        /// The host as known_hosts names it.
        host: String,
        /// Fingerprint offered.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: String,
        /// Line of the pinned key (1-based).
        line: usize,
    },
    /// The host key is marked `@revoked`.
    #[error(
        "host key {fingerprint} of {host} is marked @revoked in {known_hosts} line {line}; refusing it. Fix: the server must get a new host key"
    )]
    HostKeyRevoked {
        /// The host.
        host: String,
        /// Fingerprint offered.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: String,
        /// Line of the revocation.
        line: usize,
    },
    /// The server refused our public key.
    #[error(
        "{user}@{host} refused key {fingerprint} (the server accepts: {methods}). Fix: append the \
         line printed by `kdump ssh-key` (the .pub file) to ~{user}/.ssh/authorized_keys on {host}, \
         mode 0600, owned by {user}"
    )]
    AuthRefused {
        /// Remote user.
        user: String,
        /// Host.
        host: String,
        /// Our key's fingerprint.
        fingerprint: String,
        /// Methods the server still offers.
        methods: String,
    },
    /// No algorithm both sides support.
    #[error(
        "{host} supports no {what} that kdump does ({ours}); the server offers: {theirs}. Fix: \
         enable {ours} in the server's sshd_config"
    )]
    NoCommonAlgorithm {
        /// Host.
        host: String,
        /// Kind of algorithm.
        what: &'static str,
        /// What we support.
        ours: &'static str,
        /// What the server offered.
        theirs: String,
    },
    /// A remote file operation was denied.
    #[error(
        "permission denied on {host}: {op} {path}: {message}. Fix: make {path}'s directory writable by the ssh user, or choose another path in target.url"
    )]
    PermissionDenied {
        /// Host.
        host: String,
        /// The operation.
        op: &'static str,
        /// Remote path.
        path: String,
        /// The server's message.
        message: String,
    },
    /// The remote file system is full.
    #[error(
        "the file system of {path} on {host} is full ({available} bytes free): {op} failed. Fix: free space there or point target.url at a bigger file system"
    )]
    DiskFull {
        /// Host.
        host: String,
        /// The operation.
        op: &'static str,
        /// Remote path.
        path: String,
        /// Free bytes the server reports.
        available: u64,
    },
    /// Any other SFTP failure.
    #[error("{op} {path} on {host} failed: {message} (SFTP status {code})")]
    Sftp {
        /// Host.
        host: String,
        /// The operation.
        op: &'static str,
        /// Remote path.
        path: String,
        /// SFTP status code.
        code: u32,
        /// The server's message.
        message: String,
    },
    /// The connection broke after it was set up.
    #[error(
        "connection to {host} lost {during}: {cause}. Fix: check the network and the server; the remote crash directory stays *.incomplete"
    )]
    ConnectionLost {
        /// Host.
        host: String,
        /// What was going on.
        during: String,
        /// The socket error or the server's reason.
        cause: String,
    },
    /// The server broke the protocol (or the bytes were corrupted).
    #[error("ssh protocol error: {0}")]
    Protocol(String),
}

fn connect_fix(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            "nothing listens there: start sshd on the server, or fix the port in target.url"
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            "no answer: check the address, the route and firewalls between this machine and the server"
        }
        io::ErrorKind::NotFound => "the host name does not resolve: use an IP address in target.url",
        _ => "check the address in target.url and the network",
    }
}

impl Error {
    /// Whether the connection broke after it was set up.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost { .. })
    }

    /// Whether trying again later may help: no connection, or a connection that broke (a
    /// network coming up, a server restarting). A refused host key or user key, a full disk
    /// or a denied path need a person, and retrying them only delays failure_action.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Connect { .. } | Error::ConnectionLost { .. })
    }
}
