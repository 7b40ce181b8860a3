//! The SSH transport (RFC 4253): version exchange, curve25519-sha256 key exchange with an
//! ssh-ed25519 host key, aes256-gcm@openssh.com packets, strict kex (the Terrapin fix) and
//! key re-exchange when the server asks for one (OpenSSH does after a cipher-dependent volume).
//!
//! One algorithm of each kind keeps this small: every OpenSSH since 6.5 (2014) has them.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::key::{ED25519, verify_ed25519};
use crate::wire::{Put, Reader};

pub(crate) const MSG_DISCONNECT: u8 = 1;
const MSG_IGNORE: u8 = 2;
const MSG_UNIMPLEMENTED: u8 = 3;
const MSG_DEBUG: u8 = 4;
pub(crate) const MSG_SERVICE_REQUEST: u8 = 5;
pub(crate) const MSG_SERVICE_ACCEPT: u8 = 6;
pub(crate) const MSG_EXT_INFO: u8 = 7;
const MSG_KEXINIT: u8 = 20;
const MSG_NEWKEYS: u8 = 21;
const MSG_KEX_ECDH_INIT: u8 = 30;
const MSG_KEX_ECDH_REPLY: u8 = 31;

const VERSION: &str = "SSH-2.0-kdump_0.1";
const KEX: &str = "curve25519-sha256";
const KEX_ALIAS: &str = "curve25519-sha256@libssh.org";
const STRICT_C: &str = "kex-strict-c-v00@openssh.com";
const STRICT_S: &str = "kex-strict-s-v00@openssh.com";
const CIPHER: &str = "aes256-gcm@openssh.com";
/// Largest packet accepted: RFC 4253 requires 35000; OpenSSH sends up to 256 KiB.
const MAX_PACKET: usize = 256 * 1024 + 64;

/// The byte stream under the transport: a TCP connection, or bytes in memory for fuzzing.
pub(crate) trait Link: Read + Write + Send {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Link for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
}

/// One direction's aes256-gcm@openssh.com state (RFC 5647 with OpenSSH's framing).
struct Gcm {
    cipher: Aes256Gcm,
    fixed: [u8; 4],
    counter: u64,
}

impl Gcm {
    fn new(key: &[u8], iv: &[u8]) -> Self {
        let cipher = Aes256Gcm::new_from_slice(&key[..32]).expect("a 32-byte key");
        let mut fixed = [0u8; 4];
        fixed.copy_from_slice(&iv[..4]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&iv[4..12]);
        Gcm { cipher, fixed, counter: u64::from_be_bytes(counter) }
    }

    fn nonce(&mut self) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.fixed);
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        n
    }
}

/// An encrypted, authenticated SSH connection to one server.
pub(crate) struct Transport {
    stream: BufReader<Box<dyn Link>>,
    /// Encrypted packets not yet written: sent in one `write` before the next read.
    out: Vec<u8>,
    send_seq: u32,
    recv_seq: u32,
    send_gcm: Option<Gcm>,
    recv_gcm: Option<Gcm>,
    server_version: Vec<u8>,
    session_id: Vec<u8>,
    host_key: Vec<u8>,
    strict: bool,
    /// Host for errors.
    pub(crate) host: String,
    /// What the connection is doing, for "connection lost while …".
    pub(crate) activity: String,
    /// Why the stream failed, once it did: a lost connection stays lost, so what comes after
    /// (closing a file, writing a log) fails at once instead of waiting out a timeout each.
    failed: Option<(String, String)>,
}

struct KexInit {
    payload: Vec<u8>,
    lists: Vec<String>,
    first_follows: bool,
}

fn parse_kexinit(payload: Vec<u8>) -> Result<KexInit> {
    let mut r = Reader::new(&payload, "KEXINIT");
    r.u8()?;
    r.bytes(16)?;
    let mut lists = Vec::new();
    for _ in 0..10 {
        lists.push(r.text()?);
    }
    let first_follows = r.bool()?;
    Ok(KexInit { payload, lists, first_follows })
}

fn offers(list: &str, name: &str) -> bool {
    list.split(',').any(|n| n == name)
}

/// HASH(K || H || letter || session_id), extended as RFC 4253 §7.2 says.
fn derive(k: &[u8], h: &[u8], letter: u8, session_id: &[u8], len: usize) -> Vec<u8> {
    let mut out = Sha256::new()
        .chain_update(k)
        .chain_update(h)
        .chain_update([letter])
        .chain_update(session_id)
        .finalize()
        .to_vec();
    while out.len() < len {
        let more = Sha256::new().chain_update(k).chain_update(h).chain_update(&out).finalize();
        out.extend_from_slice(&more);
    }
    out.truncate(len);
    out
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::Protocol(format!("no random numbers: {e}")))?;
    Ok(b)
}

impl Transport {
    /// Exchanges versions and keys over a connected socket. The host key is then
    /// [`Transport::host_key`]: the caller must verify it before authenticating.
    pub(crate) fn handshake(stream: Box<dyn Link>, host: &str) -> Result<Transport> {
        let mut t = Transport {
            stream: BufReader::with_capacity(64 * 1024, stream),
            out: Vec::new(),
            send_seq: 0,
            recv_seq: 0,
            send_gcm: None,
            recv_gcm: None,
            server_version: Vec::new(),
            session_id: Vec::new(),
            host_key: Vec::new(),
            strict: false,
            host: host.to_string(),
            activity: "during the ssh handshake".into(),
            failed: None,
        };
        t.out.extend_from_slice(VERSION.as_bytes());
        t.out.extend_from_slice(b"\r\n");
        t.flush()?;
        t.server_version = t.read_version()?;
        t.kex(None)?;
        Ok(t)
    }

    fn lost(&self, e: io::Error) -> Error {
        let cause = match e.kind() {
            io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "no answer within the timeout".to_string(),
            _ => e.to_string(),
        };
        Error::ConnectionLost { host: self.host.clone(), during: self.activity.clone(), cause }
    }

    fn read_version(&mut self) -> Result<Vec<u8>> {
        // Servers may send other lines first (RFC 4253 §4.2).
        for _ in 0..64 {
            let mut line = Vec::new();
            let n = (&mut self.stream).take(256).read_until(b'\n', &mut line).map_err(|e| self.lost(e))?;
            if n == 0 {
                return Err(self.lost(io::ErrorKind::UnexpectedEof.into()));
            }
            while line.last().is_some_and(|&c| c == b'\n' || c == b'\r') {
                line.pop();
            }
            if line.starts_with(b"SSH-") {
                if !(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-")) {
                    return Err(Error::Protocol(format!(
                        "{} speaks {}, not SSH 2",
                        self.host,
                        String::from_utf8_lossy(&line)
                    )));
                }
                return Ok(line);
            }
        }
        Err(Error::Protocol(format!("{} sent no SSH version line: is it an ssh server?", self.host)))
    }

    /// Bounds the wait for any single read (None: no bound).
    pub(crate) fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        self.stream.get_ref().set_read_timeout(t).map_err(|e| self.lost(e))
    }

    /// The server's host key blob (string type, string key).
    pub(crate) fn host_key(&self) -> &[u8] {
        &self.host_key
    }

    pub(crate) fn session_id(&self) -> &[u8] {
        &self.session_id
    }

    /// Queues one packet; [`Transport::flush`] sends it.
    pub(crate) fn send(&mut self, payload: &[u8]) -> Result<()> {
        let block = if self.send_gcm.is_some() { 16 } else { 8 };
        // GCM leaves the length field out of the padded (encrypted) part.
        let framed = if self.send_gcm.is_some() { 1 + payload.len() } else { 5 + payload.len() };
        let mut pad = block - framed % block;
        if pad < 4 {
            pad += block;
        }
        let len = 1 + payload.len() + pad;
        let start = self.out.len();
        self.out.put_u32(len as u32);
        self.out.put_u8(pad as u8);
        self.out.extend_from_slice(payload);
        self.out.resize(self.out.len() + pad, 0);
        if let Some(gcm) = &mut self.send_gcm {
            let nonce = gcm.nonce();
            let (aad, body) = self.out[start..].split_at_mut(4);
            let tag = gcm
                .cipher
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, body)
                .map_err(|_| Error::Protocol("packet encryption failed".into()))?;
            self.out.extend_from_slice(&tag);
        }
        self.send_seq = self.send_seq.wrapping_add(1);
        if self.out.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every queued packet.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.check_alive()?;
        let r = self.stream.get_mut().write_all(&self.out);
        self.out.clear();
        r.map_err(|e| self.failed_with(e))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.check_alive()?;
        self.stream.read_exact(buf).map_err(|e| self.failed_with(e))
    }

    /// Remembers a failed read or write: the stream is unusable from here on.
    fn failed_with(&mut self, e: io::Error) -> Error {
        let err = self.lost(e);
        if let Error::ConnectionLost { during, cause, .. } = &err {
            self.failed = Some((during.clone(), cause.clone()));
        }
        err
    }

    /// The first failure again: it is what happened, whatever was tried after it.
    fn check_alive(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some((during, cause)) => {
                Err(Error::ConnectionLost { host: self.host.clone(), during: during.clone(), cause: cause.clone() })
            }
        }
    }

    /// The next packet's payload, whatever it is.
    fn recv_packet(&mut self) -> Result<Vec<u8>> {
        self.flush()?;
        let mut head = [0u8; 4];
        self.read_exact(&mut head)?;
        let len = u32::from_be_bytes(head) as usize;
        let block = if self.recv_gcm.is_some() { 16 } else { 8 };
        let framed = if self.recv_gcm.is_some() { len } else { len + 4 };
        if !(5..=MAX_PACKET).contains(&len) || framed % block != 0 {
            return Err(Error::Protocol(format!(
                "{} sent a packet of bad length {len} (corrupted stream?)",
                self.host
            )));
        }
        let tag_len = if self.recv_gcm.is_some() { 16 } else { 0 };
        let mut body = vec![0u8; len + tag_len];
        self.read_exact(&mut body)?;
        if let Some(gcm) = &mut self.recv_gcm {
            let nonce = gcm.nonce();
            let (data, tag) = body.split_at_mut(len);
            gcm.cipher
                .decrypt_in_place_detached(Nonce::from_slice(&nonce), &head, data, Tag::from_slice(tag))
                .map_err(|_| {
                    Error::Protocol(format!(
                        "a packet from {} failed authentication (corrupted or tampered with)",
                        self.host
                    ))
                })?;
            body.truncate(len);
        }
        self.recv_seq = self.recv_seq.wrapping_add(1);
        let pad = body[0] as usize;
        if pad < 4 || pad + 1 > len {
            return Err(Error::Protocol(format!("{} sent a packet with bad padding", self.host)));
        }
        body.truncate(len - pad);
        body.remove(0);
        if body.is_empty() {
            return Err(Error::Protocol(format!("{} sent an empty packet", self.host)));
        }
        Ok(body)
    }

    /// The next message for the layers above: transport messages are handled here, and a
    /// server's KEXINIT runs a key re-exchange first.
    pub(crate) fn recv(&mut self) -> Result<Vec<u8>> {
        loop {
            let p = self.recv_packet()?;
            match p[0] {
                MSG_IGNORE | MSG_DEBUG => {}
                MSG_DISCONNECT => {
                    let mut r = Reader::new(&p[1..], "DISCONNECT");
                    let code = r.u32().unwrap_or(0);
                    let text = r.text().unwrap_or_default();
                    return Err(Error::ConnectionLost {
                        host: self.host.clone(),
                        during: self.activity.clone(),
                        cause: format!("the server disconnected (reason {code}: {text})"),
                    });
                }
                MSG_UNIMPLEMENTED => {
                    return Err(Error::Protocol(format!("{} did not understand a message of kdump", self.host)));
                }
                MSG_KEXINIT => self.kex(Some(p))?,
                _ => return Ok(p),
            }
        }
    }

    fn kexinit_payload(&self) -> Result<Vec<u8>> {
        let mut p = vec![MSG_KEXINIT];
        p.extend_from_slice(&random::<16>()?);
        let kex = if self.session_id.is_empty() {
            format!("{KEX},{KEX_ALIAS},{STRICT_C}")
        } else {
            format!("{KEX},{KEX_ALIAS}")
        };
        for list in [&kex[..], ED25519, CIPHER, CIPHER, "hmac-sha2-256", "hmac-sha2-256", "none", "none", "", ""] {
            p.put_string(list.as_bytes());
        }
        p.put_bool(false);
        p.put_u32(0);
        Ok(p)
    }

    fn negotiate(&self, theirs: &KexInit) -> Result<()> {
        let need = |i: usize, what: &'static str, ours: &'static str, alias: Option<&str>| {
            let list = &theirs.lists[i];
            if offers(list, ours) || alias.is_some_and(|a| offers(list, a)) {
                Ok(())
            } else {
                Err(Error::NoCommonAlgorithm { host: self.host.clone(), what, ours, theirs: list.clone() })
            }
        };
        need(0, "key exchange", KEX, Some(KEX_ALIAS))?;
        need(1, "host key type", ED25519, None)?;
        need(2, "cipher (client to server)", CIPHER, None)?;
        need(3, "cipher (server to client)", CIPHER, None)?;
        need(6, "compression", "none", None)?;
        need(7, "compression", "none", None)
    }

    /// One key exchange: the first (`server_init` = None) or a re-exchange the server began.
    fn kex(&mut self, server_init: Option<Vec<u8>>) -> Result<()> {
        let initial = self.session_id.is_empty();
        let ours = self.kexinit_payload()?;
        self.send(&ours)?;
        let theirs = match server_init {
            Some(p) => p,
            None => loop {
                let p = self.recv_packet()?;
                match p[0] {
                    MSG_KEXINIT => break p,
                    MSG_IGNORE | MSG_DEBUG => continue,
                    other => {
                        return Err(Error::Protocol(format!("{} sent message {other} before its KEXINIT", self.host)));
                    }
                }
            },
        };
        let theirs = parse_kexinit(theirs)?;
        self.negotiate(&theirs)?;
        if initial {
            self.strict = offers(&theirs.lists[0], STRICT_S);
        }
        let guessed_right =
            theirs.lists[0].split(',').next() == Some(KEX) && theirs.lists[1].split(',').next() == Some(ED25519);
        let mut skip_one = theirs.first_follows && !guessed_right;

        let secret: [u8; 32] = random()?;
        let q_c = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        let mut init = vec![MSG_KEX_ECDH_INIT];
        init.put_string(&q_c);
        self.send(&init)?;

        let reply = loop {
            let p = self.recv_packet()?;
            if skip_one {
                skip_one = false;
                continue;
            }
            match p[0] {
                MSG_KEX_ECDH_REPLY => break p,
                MSG_IGNORE | MSG_DEBUG if !(self.strict && initial) => continue,
                other => {
                    return Err(Error::Protocol(format!("{} sent message {other} during key exchange", self.host)));
                }
            }
        };
        let mut r = Reader::new(&reply[1..], "KEX_ECDH_REPLY");
        let k_s = r.string()?.to_vec();
        let q_s: [u8; 32] = r
            .string()?
            .try_into()
            .map_err(|_| Error::Protocol("the server's curve25519 key is not 32 bytes".into()))?;
        let sig = r.string()?;
        let shared = x25519_dalek::x25519(secret, q_s);
        if shared == [0u8; 32] {
            return Err(Error::Protocol(format!("{} sent a weak curve25519 key", self.host)));
        }
        let mut k = Vec::new();
        k.put_mpint(&shared);

        let mut exchange = Vec::new();
        exchange.put_string(VERSION.as_bytes());
        exchange.put_string(&self.server_version);
        exchange.put_string(&ours);
        exchange.put_string(&theirs.payload);
        exchange.put_string(&k_s);
        exchange.put_string(&q_c);
        exchange.put_string(&q_s);
        exchange.extend_from_slice(&k);
        let h = Sha256::digest(&exchange).to_vec();
        verify_ed25519(&k_s, sig, &h)?;
        if initial {
            self.session_id = h.clone();
            self.host_key = k_s;
        } else if k_s != self.host_key {
            return Err(Error::Protocol(format!("{} changed its host key during a key re-exchange", self.host)));
        }

        self.send(&[MSG_NEWKEYS])?;
        let sid = self.session_id.clone();
        self.send_gcm = Some(Gcm::new(&derive(&k, &h, b'C', &sid, 32), &derive(&k, &h, b'A', &sid, 12)));
        if self.strict {
            self.send_seq = 0;
        }
        let p = self.recv_packet()?;
        if p[0] != MSG_NEWKEYS {
            return Err(Error::Protocol(format!("{} sent message {} instead of NEWKEYS", self.host, p[0])));
        }
        self.recv_gcm = Some(Gcm::new(&derive(&k, &h, b'D', &sid, 32), &derive(&k, &h, b'B', &sid, 12)));
        if self.strict {
            self.recv_seq = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_extends_by_rehashing() {
        let k = [0, 0, 0, 1, 5];
        let a = derive(&k, b"h", b'C', b"sid", 32);
        let long = derive(&k, b"h", b'C', b"sid", 64);
        assert_eq!(&long[..32], &a[..]);
        let k2: Vec<u8> = Sha256::new().chain_update(k).chain_update(b"h").chain_update(&a).finalize().to_vec();
        assert_eq!(&long[32..], &k2[..]);
    }

    #[test]
    fn gcm_nonce_counts_from_the_iv() {
        let mut g = Gcm::new(&[0u8; 32], &[1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert_eq!(g.nonce(), [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert_eq!(g.nonce(), [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 1, 0]);
    }
}
