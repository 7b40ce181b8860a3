//! SFTP version 3 (draft-ietf-secsh-filexfer-02) with OpenSSH's extensions: the operations a
//! crash directory needs, and writes at offsets pipelined up to a bound.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use crate::channel::SftpChannel;
use crate::error::{Error, Result};
use crate::wire::{Put, Reader};

const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_WRITE: u8 = 6;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_STAT: u8 = 17;
const FXP_RENAME: u8 = 18;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_ATTRS: u8 = 105;
const FXP_EXTENDED: u8 = 200;
const FXP_EXTENDED_REPLY: u8 = 201;

const FX_OK: u32 = 0;
const FX_NO_SUCH_FILE: u32 = 2;
const FX_PERMISSION_DENIED: u32 = 3;
const FX_FAILURE: u32 = 4;

const PF_WRITE: u32 = 0x02;
const PF_CREAT: u32 = 0x08;
const PF_TRUNC: u32 = 0x10;
const PF_EXCL: u32 = 0x20;
const ATTR_PERMISSIONS: u32 = 0x04;

/// Bound on the server's fsync of a whole dump.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Largest reply accepted (OpenSSH's own limit is 256 KiB).
const MAX_REPLY: usize = 256 * 1024;
/// Bytes per WRITE request: what OpenSSH's sftp client sends.
pub(crate) const WRITE_CHUNK: usize = 32 * 1024;
/// WRITE requests in flight: 64 × 32 KiB = 2 MiB, OpenSSH's session window.
pub(crate) const MAX_OUTSTANDING: usize = 64;
/// The most file data a [`RemoteFile`] has sent and not yet had acknowledged.
pub const PIPELINE_BYTES: u64 = (WRITE_CHUNK * MAX_OUTSTANDING) as u64;

/// What a remote file system reports (statvfs@openssh.com).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Bytes available to the ssh user.
    pub available: u64,
    /// Size of the file system.
    pub total: u64,
}

/// A reply: its type and body after the request id.
struct Reply {
    kind: u8,
    id: u32,
    body: Vec<u8>,
}

/// A failed status: code and message.
#[derive(Debug)]
pub(crate) struct Status {
    pub(crate) code: u32,
    pub(crate) message: String,
}

/// An SFTP session.
pub(crate) struct Sftp {
    ch: SftpChannel,
    /// The bound on waiting for a reply (restored after an fsync).
    timeout: Duration,
    next_id: u32,
    extensions: Vec<String>,
}

fn status_of(reply: &Reply) -> Result<Status> {
    let mut r = Reader::new(&reply.body, "SFTP status");
    let code = r.u32()?;
    let message = r.text().unwrap_or_default();
    Ok(Status { code, message })
}

impl Sftp {
    pub(crate) fn start(mut ch: SftpChannel, timeout: Duration) -> Result<Sftp> {
        ch.t.activity = "starting sftp".into();
        let mut init = Vec::new();
        init.put_u32(5);
        init.put_u8(FXP_INIT);
        init.put_u32(3);
        ch.write(&init)?;
        let mut head = [0u8; 4];
        ch.read_exact(&mut head)?;
        let len = u32::from_be_bytes(head) as usize;
        if !(5..=MAX_REPLY).contains(&len) {
            return Err(Error::Protocol(format!("the sftp server on {} sent a reply of bad length {len}", ch.t.host)));
        }
        let mut body = vec![0u8; len];
        ch.read_exact(&mut body)?;
        let mut r = Reader::new(&body, "SFTP version");
        if r.u8()? != FXP_VERSION || r.u32()? < 3 {
            return Err(Error::Protocol(format!("the sftp server on {} does not speak SFTP version 3", ch.t.host)));
        }
        let mut extensions = Vec::new();
        while !r.is_empty() {
            extensions.push(r.text()?);
            r.string()?;
        }
        Ok(Sftp { ch, timeout, next_id: 1, extensions })
    }

    pub(crate) fn host(&self) -> &str {
        &self.ch.t.host
    }

    pub(crate) fn set_activity(&mut self, what: String) {
        self.ch.t.activity = what;
    }

    pub(crate) fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|e| e == name)
    }

    /// Sends a request; returns its id.
    fn send(&mut self, kind: u8, body: &[u8]) -> Result<u32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut p = Vec::with_capacity(body.len() + 9);
        p.put_u32(body.len() as u32 + 5);
        p.put_u8(kind);
        p.put_u32(id);
        p.extend_from_slice(body);
        self.ch.write(&p)?;
        Ok(id)
    }

    fn recv(&mut self) -> Result<Reply> {
        let mut head = [0u8; 4];
        self.ch.read_exact(&mut head)?;
        let len = u32::from_be_bytes(head) as usize;
        if !(5..=MAX_REPLY).contains(&len) {
            return Err(Error::Protocol(format!(
                "the sftp server on {} sent a reply of bad length {len}",
                self.host()
            )));
        }
        let mut body = vec![0u8; len];
        self.ch.read_exact(&mut body)?;
        let kind = body[0];
        let id = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
        body.drain(..5);
        Ok(Reply { kind, id, body })
    }

    /// One request, one reply.
    fn call(&mut self, kind: u8, body: &[u8]) -> Result<Reply> {
        let id = self.send(kind, body)?;
        let reply = self.recv()?;
        if reply.id != id {
            return Err(Error::Protocol(format!(
                "the sftp server on {} answered request {} instead of {id}",
                self.host(),
                reply.id
            )));
        }
        Ok(reply)
    }

    /// The error for a failed status of `op` on `path`.
    pub(crate) fn error(&mut self, op: &'static str, path: &str, s: Status) -> Error {
        let host = self.host().to_string();
        match s.code {
            FX_PERMISSION_DENIED => Error::PermissionDenied { host, op, path: path.to_string(), message: s.message },
            // SFTP v3 has no "no space" code: OpenSSH reports ENOSPC as a plain failure, so ask
            // the file system (the failed write itself says nothing more).
            FX_FAILURE => match self.statvfs(path) {
                Ok(space) if space.available < WRITE_CHUNK as u64 * MAX_OUTSTANDING as u64 => {
                    Error::DiskFull { host, op, path: path.to_string(), available: space.available }
                }
                _ => Error::Sftp { host, op, path: path.to_string(), code: s.code, message: s.message },
            },
            code => Error::Sftp { host, op, path: path.to_string(), code, message: s.message },
        }
    }

    /// A call answered by a status: Ok on SSH_FX_OK, the status otherwise.
    fn call_status(&mut self, kind: u8, body: &[u8]) -> Result<Result<(), Status>> {
        let reply = self.call(kind, body)?;
        if reply.kind != FXP_STATUS {
            return Err(Error::Protocol(format!(
                "the sftp server on {} sent reply type {} for a status",
                self.host(),
                reply.kind
            )));
        }
        let s = status_of(&reply)?;
        Ok(if s.code == FX_OK { Ok(()) } else { Err(s) })
    }

    /// Whether `path` is a directory; None when it does not exist.
    pub(crate) fn is_dir(&mut self, path: &str) -> Result<Option<bool>> {
        let mut b = Vec::new();
        b.put_string(path.as_bytes());
        let reply = self.call(FXP_STAT, &b)?;
        match reply.kind {
            FXP_ATTRS => {
                let mut r = Reader::new(&reply.body, "SFTP attrs");
                let flags = r.u32()?;
                if flags & 0x1 != 0 {
                    r.u64()?; // size
                }
                if flags & 0x2 != 0 {
                    r.u64()?; // uid, gid
                }
                if flags & ATTR_PERMISSIONS == 0 {
                    return Ok(Some(false));
                }
                Ok(Some(r.u32()? & 0o170000 == 0o040000))
            }
            FXP_STATUS => {
                let s = status_of(&reply)?;
                if s.code == FX_NO_SUCH_FILE { Ok(None) } else { Err(self.error("stat", path, s)) }
            }
            k => Err(Error::Protocol(format!("the sftp server on {} sent reply type {k} for STAT", self.host()))),
        }
    }

    /// Creates a directory (mode 0700: dumps hold memory contents).
    pub(crate) fn mkdir(&mut self, path: &str) -> Result<Result<(), Status>> {
        let mut b = Vec::new();
        b.put_string(path.as_bytes());
        b.put_u32(ATTR_PERMISSIONS);
        b.put_u32(0o700);
        self.call_status(FXP_MKDIR, &b)
    }

    /// `mkdir -p`.
    pub(crate) fn mkdir_all(&mut self, path: &str) -> Result<()> {
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if prefix.is_empty() && !path.starts_with('/') {
                prefix.push_str(part);
            } else {
                prefix.push('/');
                prefix.push_str(part);
            }
            if self.is_dir(&prefix)? == Some(true) {
                continue;
            }
            if let Err(s) = self.mkdir(&prefix)? {
                // Someone else may have made it meanwhile.
                if self.is_dir(&prefix)? != Some(true) {
                    return Err(self.error("mkdir", &prefix, s));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, path: &str) -> Result<()> {
        let mut b = Vec::new();
        b.put_string(path.as_bytes());
        self.call_status(FXP_REMOVE, &b)?.map_err(|s| self.error("remove", path, s))
    }

    /// Renames with POSIX semantics where the server has them (OpenSSH's posix-rename).
    pub(crate) fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let mut b = Vec::new();
        let r = if self.has_extension("posix-rename@openssh.com") {
            b.put_string(b"posix-rename@openssh.com");
            b.put_string(from.as_bytes());
            b.put_string(to.as_bytes());
            self.call_status(FXP_EXTENDED, &b)?
        } else {
            b.put_string(from.as_bytes());
            b.put_string(to.as_bytes());
            self.call_status(FXP_RENAME, &b)?
        };
        r.map_err(|s| self.error("rename", from, s))
    }

    /// Free space of the file system holding `path` (statvfs@openssh.com).
    pub(crate) fn statvfs(&mut self, path: &str) -> Result<FsSpace> {
        if !self.has_extension("statvfs@openssh.com") {
            return Err(Error::Sftp {
                host: self.host().to_string(),
                op: "statvfs",
                path: path.to_string(),
                code: 8,
                message: "the server lacks the statvfs@openssh.com extension".into(),
            });
        }
        let mut b = Vec::new();
        b.put_string(b"statvfs@openssh.com");
        b.put_string(path.as_bytes());
        let reply = self.call(FXP_EXTENDED, &b)?;
        match reply.kind {
            FXP_EXTENDED_REPLY => {
                let mut r = Reader::new(&reply.body, "statvfs reply");
                let _bsize = r.u64()?;
                let frsize = r.u64()?;
                let blocks = r.u64()?;
                let _bfree = r.u64()?;
                let bavail = r.u64()?;
                Ok(FsSpace { available: bavail.saturating_mul(frsize), total: blocks.saturating_mul(frsize) })
            }
            FXP_STATUS => {
                let s = status_of(&reply)?;
                Err(Error::Sftp {
                    host: self.host().to_string(),
                    op: "statvfs",
                    path: path.to_string(),
                    code: s.code,
                    message: s.message,
                })
            }
            k => Err(Error::Protocol(format!("the sftp server on {} sent reply type {k} for statvfs", self.host()))),
        }
    }

    /// Opens `path` for writing, mode 0600; `exclusive` refuses an existing file.
    pub(crate) fn create(&mut self, path: &str, exclusive: bool) -> Result<Vec<u8>> {
        let mut b = Vec::new();
        b.put_string(path.as_bytes());
        b.put_u32(PF_WRITE | PF_CREAT | if exclusive { PF_EXCL } else { PF_TRUNC });
        b.put_u32(ATTR_PERMISSIONS);
        b.put_u32(0o600);
        let reply = self.call(FXP_OPEN, &b)?;
        match reply.kind {
            FXP_HANDLE => Ok(Reader::new(&reply.body, "SFTP handle").string()?.to_vec()),
            FXP_STATUS => {
                let s = status_of(&reply)?;
                Err(self.error("create", path, s))
            }
            k => Err(Error::Protocol(format!("the sftp server on {} sent reply type {k} for OPEN", self.host()))),
        }
    }

    fn fsync(&mut self, handle: &[u8], path: &str) -> Result<()> {
        if !self.has_extension("fsync@openssh.com") {
            return Ok(());
        }
        let mut b = Vec::new();
        b.put_string(b"fsync@openssh.com");
        b.put_string(handle);
        // Flushing gigabytes of page cache on the server can take minutes; silence for that
        // long is no sign of a dead connection.
        self.ch.t.set_read_timeout(Some(SYNC_TIMEOUT))?;
        let r = self.call_status(FXP_EXTENDED, &b);
        self.ch.t.set_read_timeout(Some(self.timeout))?;
        r?.map_err(|s| self.error("fsync", path, s))
    }

    fn close_handle(&mut self, handle: &[u8], path: &str) -> Result<()> {
        let mut b = Vec::new();
        b.put_string(handle);
        self.call_status(FXP_CLOSE, &b)?.map_err(|s| self.error("close", path, s))
    }

    /// Ends the session.
    pub(crate) fn close(self) -> Result<()> {
        self.ch.close()
    }
}

/// A remote file being written: writes are sent at once and their replies collected later,
/// with at most 64 (of 32 KiB) in flight, so throughput does not wait on round trips.
/// A failed write is reported by a later call ([`kdump_dumpfile::WriteAt::write_at`], flush or
/// finish).
pub struct RemoteFile<'a> {
    sftp: &'a mut Sftp,
    handle: Vec<u8>,
    path: String,
    in_flight: VecDeque<u32>,
    /// The first failed write's status: turned into an error once nothing is in flight, as
    /// finding out why (statvfs) needs a request of its own.
    failed: Option<Status>,
    written: u64,
}

impl std::fmt::Debug for RemoteFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFile").field("path", &self.path).field("in_flight", &self.in_flight.len()).finish()
    }
}

impl<'a> RemoteFile<'a> {
    pub(crate) fn new(sftp: &'a mut Sftp, handle: Vec<u8>, path: String) -> Self {
        RemoteFile { sftp, handle, path, in_flight: VecDeque::new(), failed: None, written: 0 }
    }

    /// The remote path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes sent so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Collects one reply.
    fn collect_one(&mut self) -> Result<()> {
        let reply = self.sftp.recv()?;
        let Some(pos) = self.in_flight.iter().position(|&id| id == reply.id) else {
            return Err(Error::Protocol(format!(
                "the sftp server on {} answered unknown request {}",
                self.sftp.host(),
                reply.id
            )));
        };
        self.in_flight.remove(pos);
        if reply.kind != FXP_STATUS {
            return Err(Error::Protocol(format!(
                "the sftp server on {} sent reply type {} for WRITE",
                self.sftp.host(),
                reply.kind
            )));
        }
        let s = status_of(&reply)?;
        if s.code != FX_OK && self.failed.is_none() {
            self.failed = Some(s);
        }
        Ok(())
    }

    /// Reports a failed write once. Later writes are still sent: a writer that fails may
    /// still mark its file incomplete in space that is already allocated.
    fn check(&mut self) -> Result<()> {
        if self.failed.is_none() {
            return Ok(());
        }
        while !self.in_flight.is_empty() {
            self.collect_one()?;
        }
        let Some(s) = self.failed.take() else { return Ok(()) };
        let path = self.path.clone();
        Err(self.sftp.error("write", &path, s))
    }

    /// Writes `data` at `offset` (errors typed).
    pub fn write_at_typed(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.check()?;
        for (i, chunk) in data.chunks(WRITE_CHUNK).enumerate() {
            while self.in_flight.len() >= MAX_OUTSTANDING {
                self.collect_one()?;
            }
            let mut b = Vec::with_capacity(chunk.len() + self.handle.len() + 16);
            b.put_string(&self.handle);
            b.put_u64(offset + (i * WRITE_CHUNK) as u64);
            b.put_string(chunk);
            let id = self.sftp.send(FXP_WRITE, &b)?;
            self.in_flight.push_back(id);
            self.written += chunk.len() as u64;
        }
        self.check()
    }

    /// Waits for every write in flight.
    pub fn wait_all(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.collect_one()?;
        }
        self.check()
    }

    /// Waits for every write, asks the server to fsync (fsync@openssh.com) and closes.
    pub fn finish(mut self) -> Result<()> {
        self.wait_all()?;
        let (handle, path) = (std::mem::take(&mut self.handle), self.path.clone());
        self.sftp.fsync(&handle, &path)?;
        self.sftp.close_handle(&handle, &path)
    }
}

fn to_io(e: Error) -> io::Error {
    let kind = match &e {
        Error::DiskFull { .. } => io::ErrorKind::StorageFull,
        Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
        Error::ConnectionLost { .. } => io::ErrorKind::ConnectionAborted,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl kdump_dumpfile::WriteAt for RemoteFile<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_at_typed(offset, data).map_err(to_io)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.wait_all().map_err(to_io)
    }
}
