//! Entry points for the fuzz targets (fuzz/): not part of the API.

use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use crate::transport::{Link, Transport};

/// A server that says `bytes` and swallows what it is told.
struct Replay(Cursor<Vec<u8>>);

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Link for Replay {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the client's handshake against a server that sends `server_bytes`: everything a
/// server (or anyone on the path) can make the client parse before keys are verified:
/// version lines, packet framing, KEXINIT, the key exchange reply and its signature.
pub fn handshake(server_bytes: &[u8]) {
    let _ = Transport::handshake(Box::new(Replay(Cursor::new(server_bytes.to_vec()))), "fuzz");
}

/// What an OpenSSH server sends up to NEWKEYS, framed as it frames it: a banner line, the
/// version, KEXINIT and a KEX_ECDH_REPLY (with a real host key and a signature that cannot
/// verify, as the client's ephemeral key is random), NEWKEYS. Seed of the handshake target.
pub fn server_transcript() -> Vec<u8> {
    use crate::wire::Put;
    let frame = |out: &mut Vec<u8>, payload: &[u8]| {
        let mut pad = 8 - (5 + payload.len()) % 8;
        if pad < 4 {
            pad += 8;
        }
        out.put_u32((1 + payload.len() + pad) as u32);
        out.put_u8(pad as u8);
        out.extend_from_slice(payload);
        out.resize(out.len() + pad, 0);
    };
    let mut out = b"a banner line\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec();
    let mut kexinit = vec![20u8];
    kexinit.extend_from_slice(&[7; 16]);
    for list in [
        "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,kex-strict-s-v00@openssh.com",
        "rsa-sha2-512,ssh-ed25519",
        "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com",
        "umac-64-etm@openssh.com,hmac-sha2-256",
        "umac-64-etm@openssh.com,hmac-sha2-256",
        "none,zlib@openssh.com",
        "none,zlib@openssh.com",
        "",
        "",
    ] {
        kexinit.put_string(list.as_bytes());
    }
    kexinit.put_bool(false);
    kexinit.put_u32(0);
    frame(&mut out, &kexinit);
    let host = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let mut reply = vec![31u8];
    reply.put_string(&crate::key::ed25519_blob(&host.verifying_key().to_bytes()));
    reply.put_string(&[9; 32]);
    let mut sig = Vec::new();
    sig.put_string(crate::key::ED25519.as_bytes());
    sig.put_string(&ed25519_dalek::Signer::sign(&host, b"not the exchange hash").to_bytes());
    reply.put_string(&sig);
    frame(&mut out, &reply);
    frame(&mut out, &[21]);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_transcript_gets_to_the_signature_check() {
        let t = super::server_transcript();
        let e =
            crate::transport::Transport::handshake(Box::new(super::Replay(std::io::Cursor::new(t.clone()))), "seed")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert!(e.contains("host key signature is invalid: verification failed"), "{e}");
        for n in 0..t.len() {
            super::handshake(&t[..n]);
        }
    }
}
