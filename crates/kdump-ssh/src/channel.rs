//! User authentication (RFC 4252, publickey) and one session channel running the `sftp`
//! subsystem (RFC 4254), with both sides' flow-control windows.

use crate::error::{Error, Result};
use crate::key::{ED25519, PrivateKey};
use crate::transport::{MSG_EXT_INFO, MSG_SERVICE_ACCEPT, MSG_SERVICE_REQUEST, Transport};
use crate::wire::{Put, Reader};

const MSG_GLOBAL_REQUEST: u8 = 80;
const MSG_REQUEST_FAILURE: u8 = 82;
const MSG_USERAUTH_REQUEST: u8 = 50;
const MSG_USERAUTH_FAILURE: u8 = 51;
const MSG_USERAUTH_SUCCESS: u8 = 52;
const MSG_USERAUTH_BANNER: u8 = 53;
const MSG_CHANNEL_OPEN: u8 = 90;
const MSG_CHANNEL_OPEN_CONFIRMATION: u8 = 91;
const MSG_CHANNEL_OPEN_FAILURE: u8 = 92;
const MSG_CHANNEL_WINDOW_ADJUST: u8 = 93;
const MSG_CHANNEL_DATA: u8 = 94;
const MSG_CHANNEL_EXTENDED_DATA: u8 = 95;
const MSG_CHANNEL_EOF: u8 = 96;
const MSG_CHANNEL_CLOSE: u8 = 97;
const MSG_CHANNEL_REQUEST: u8 = 98;
const MSG_CHANNEL_SUCCESS: u8 = 99;
const MSG_CHANNEL_FAILURE: u8 = 100;

/// Our receive window: replies to writes are small, so 1 MiB is plenty.
const LOCAL_WINDOW: u32 = 1 << 20;
/// Largest data packet we accept and send.
const MAX_DATA: u32 = 32 * 1024;

/// Authenticates as `user` with `key`.
pub(crate) fn authenticate(t: &mut Transport, user: &str, key: &PrivateKey) -> Result<()> {
    t.activity = "during authentication".into();
    let mut req = vec![MSG_SERVICE_REQUEST];
    req.put_string(b"ssh-userauth");
    t.send(&req)?;
    loop {
        let p = t.recv()?;
        match p[0] {
            MSG_SERVICE_ACCEPT => break,
            MSG_EXT_INFO => continue,
            other => {
                return Err(Error::Protocol(format!(
                    "{} answered the auth service request with message {other}",
                    t.host
                )));
            }
        }
    }
    let blob = key.public_blob();
    let mut signed = Vec::new();
    signed.put_string(t.session_id());
    let mut body = vec![MSG_USERAUTH_REQUEST];
    body.put_string(user.as_bytes());
    body.put_string(b"ssh-connection");
    body.put_string(b"publickey");
    body.put_bool(true);
    body.put_string(ED25519.as_bytes());
    body.put_string(&blob);
    signed.extend_from_slice(&body);
    body.put_string(&key.sign(&signed));
    t.send(&body)?;
    loop {
        let p = t.recv()?;
        match p[0] {
            MSG_USERAUTH_SUCCESS => return Ok(()),
            MSG_USERAUTH_BANNER | MSG_EXT_INFO => continue,
            MSG_USERAUTH_FAILURE => {
                let methods = Reader::new(&p[1..], "USERAUTH_FAILURE").text().unwrap_or_default();
                return Err(Error::AuthRefused {
                    user: user.to_string(),
                    host: t.host.clone(),
                    fingerprint: key.fingerprint(),
                    methods,
                });
            }
            other => return Err(Error::Protocol(format!("{} answered authentication with message {other}", t.host))),
        }
    }
}

/// A session channel with the sftp subsystem: a byte stream both ways.
pub(crate) struct SftpChannel {
    pub(crate) t: Transport,
    remote_id: u32,
    remote_window: u64,
    remote_max: u32,
    local_window: u32,
    inbox: Vec<u8>,
    /// Bytes of `inbox` already consumed.
    read_pos: usize,
    closed: bool,
}

impl SftpChannel {
    pub(crate) fn open(mut t: Transport) -> Result<Self> {
        t.activity = "opening the sftp channel".into();
        let mut open = vec![MSG_CHANNEL_OPEN];
        open.put_string(b"session");
        open.put_u32(0);
        open.put_u32(LOCAL_WINDOW);
        open.put_u32(MAX_DATA);
        t.send(&open)?;
        let (remote_id, remote_window, remote_max) = loop {
            let p = t.recv()?;
            let mut r = Reader::new(&p[1..], "CHANNEL_OPEN reply");
            match p[0] {
                MSG_CHANNEL_OPEN_CONFIRMATION => {
                    r.u32()?;
                    break (r.u32()?, r.u32()? as u64, r.u32()?);
                }
                MSG_CHANNEL_OPEN_FAILURE => {
                    r.u32()?;
                    let code = r.u32()?;
                    let text = r.text()?;
                    return Err(Error::Protocol(format!(
                        "{} refused a session channel ({code}: {text}); check sshd_config (MaxSessions, ForceCommand, restrictions on the key)",
                        t.host
                    )));
                }
                _ => Self::answer_global(&mut t, &p)?,
            }
        };
        let mut ch = SftpChannel {
            t,
            remote_id,
            remote_window,
            remote_max: remote_max.clamp(1024, MAX_DATA),
            local_window: LOCAL_WINDOW,
            inbox: Vec::new(),
            read_pos: 0,
            closed: false,
        };
        let mut req = vec![MSG_CHANNEL_REQUEST];
        req.put_u32(ch.remote_id);
        req.put_string(b"subsystem");
        req.put_bool(true);
        req.put_string(b"sftp");
        ch.t.send(&req)?;
        loop {
            let p = ch.t.recv()?;
            match p[0] {
                MSG_CHANNEL_SUCCESS => break,
                MSG_CHANNEL_FAILURE => {
                    return Err(Error::Protocol(format!(
                        "{} has no sftp subsystem; add `Subsystem sftp internal-sftp` to its sshd_config",
                        ch.t.host
                    )));
                }
                _ => ch.handle(&p)?,
            }
        }
        Ok(ch)
    }

    /// Refuses a global request (e.g. OpenSSH's hostkeys-00) that wants a reply.
    fn answer_global(t: &mut Transport, p: &[u8]) -> Result<()> {
        if p[0] == MSG_GLOBAL_REQUEST {
            let mut r = Reader::new(&p[1..], "GLOBAL_REQUEST");
            r.string()?;
            if r.bool()? {
                t.send(&[MSG_REQUEST_FAILURE])?;
            }
        }
        Ok(())
    }

    /// Handles one connection-layer message that is not a reply we wait for.
    fn handle(&mut self, p: &[u8]) -> Result<()> {
        let mut r = Reader::new(&p[1..], "channel message");
        match p[0] {
            MSG_CHANNEL_WINDOW_ADJUST => {
                r.u32()?;
                self.remote_window = (self.remote_window + r.u32()? as u64).min(u32::MAX as u64);
            }
            MSG_CHANNEL_DATA => {
                r.u32()?;
                let data = r.string()?;
                let n = data.len() as u32;
                if n > self.local_window {
                    return Err(Error::Protocol(format!("{} overran the channel window", self.t.host)));
                }
                self.local_window -= n;
                if self.read_pos == self.inbox.len() || self.read_pos >= 64 * 1024 {
                    self.inbox.drain(..self.read_pos);
                    self.read_pos = 0;
                }
                self.inbox.extend_from_slice(data);
            }
            // sftp-server's stderr: nothing kdump acts on, but it uses the window.
            MSG_CHANNEL_EXTENDED_DATA => {
                r.u32()?;
                r.u32()?;
                let n = r.string()?.len() as u32;
                if n > self.local_window {
                    return Err(Error::Protocol(format!("{} overran the channel window", self.t.host)));
                }
                self.local_window -= n;
            }
            MSG_CHANNEL_EOF | MSG_CHANNEL_CLOSE => self.closed = true,
            MSG_CHANNEL_REQUEST => {
                r.u32()?;
                r.string()?;
                if r.bool()? {
                    let mut f = vec![MSG_CHANNEL_FAILURE];
                    f.put_u32(self.remote_id);
                    self.t.send(&f)?;
                }
            }
            _ => Self::answer_global(&mut self.t, p)?,
        }
        Ok(())
    }

    /// Reads and handles one message from the server (first returning the window of what was
    /// read: waiting with a closed window for a server that waits for us would deadlock).
    fn pump(&mut self) -> Result<()> {
        self.open_window()?;
        if self.closed {
            return Err(Error::ConnectionLost {
                host: self.t.host.clone(),
                during: self.t.activity.clone(),
                cause: "the server closed the sftp channel".into(),
            });
        }
        let p = self.t.recv()?;
        self.handle(&p)
    }

    /// Sends `data` on the channel as the server's window allows.
    pub(crate) fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            while self.remote_window == 0 {
                self.pump()?;
            }
            let n = data.len().min(self.remote_window as usize).min(self.remote_max as usize);
            let mut p = Vec::with_capacity(n + 16);
            p.put_u8(MSG_CHANNEL_DATA);
            p.put_u32(self.remote_id);
            p.put_string(&data[..n]);
            self.t.send(&p)?;
            self.remote_window -= n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// Fills `buf` from the channel's data, reading messages as needed.
    pub(crate) fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        while self.inbox.len() - self.read_pos < buf.len() {
            self.pump()?;
        }
        buf.copy_from_slice(&self.inbox[self.read_pos..self.read_pos + buf.len()]);
        self.read_pos += buf.len();
        Ok(())
    }

    /// Gives the server back the window of data consumed, so what it may send never exceeds
    /// what is unread plus LOCAL_WINDOW: a server cannot make us buffer without bound.
    fn open_window(&mut self) -> Result<()> {
        let unread = (self.inbox.len() - self.read_pos) as u32;
        let free = LOCAL_WINDOW - self.local_window - unread.min(LOCAL_WINDOW - self.local_window);
        if free >= LOCAL_WINDOW / 2 {
            let mut adj = vec![MSG_CHANNEL_WINDOW_ADJUST];
            adj.put_u32(self.remote_id);
            adj.put_u32(free);
            self.t.send(&adj)?;
            self.local_window += free;
        }
        Ok(())
    }

    /// Closes the channel and the connection politely.
    pub(crate) fn close(mut self) -> Result<()> {
        let mut c = vec![MSG_CHANNEL_CLOSE];
        c.put_u32(self.remote_id);
        self.t.send(&c)?;
        let mut d = vec![crate::transport::MSG_DISCONNECT];
        d.put_u32(11); // SSH_DISCONNECT_BY_APPLICATION
        d.put_string(b"done");
        d.put_string(b"");
        self.t.send(&d)?;
        self.t.flush()
    }
}
