//! ed25519 keys: the user's private key (OpenSSH `openssh-key-v1`, unencrypted), public key
//! blobs, fingerprints and `authorized_keys` lines.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::wire::{Put, Reader, base64_decode, base64_encode};

/// The only key type kdump uses, for host and user keys.
pub const ED25519: &str = "ssh-ed25519";

const MAGIC: &[u8] = b"openssh-key-v1\0";
const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const END: &str = "-----END OPENSSH PRIVATE KEY-----";

/// `SHA256:<base64>` of a public key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64_encode(&Sha256::digest(blob), false))
}

/// The wire blob of an ed25519 public key: string "ssh-ed25519", string key.
pub(crate) fn ed25519_blob(public: &[u8; 32]) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_string(ED25519.as_bytes());
    b.put_string(public);
    b
}

/// An ed25519 private key for user authentication.
pub struct PrivateKey {
    signing: SigningKey,
    comment: String,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("PrivateKey").field("fingerprint", &self.fingerprint()).field("comment", &self.comment).finish()
    }
}

fn key_err(reason: impl Into<String>) -> Error {
    Error::Key {
        reason: reason.into(),
        fix: "make a new key with `kdump ssh-key --out FILE` and authorize its public line on the server",
    }
}

impl PrivateKey {
    /// A new random key.
    pub fn generate(comment: &str) -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| key_err(format!("no random numbers: {e}")))?;
        Ok(PrivateKey { signing: SigningKey::from_bytes(&seed), comment: comment.to_string() })
    }

    /// Parses an OpenSSH private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn from_openssh(text: &str) -> Result<Self> {
        let body = text.trim().strip_prefix(BEGIN).and_then(|t| t.strip_suffix(END)).ok_or_else(|| {
            if text.contains("BEGIN RSA PRIVATE KEY")
                || text.contains("BEGIN EC PRIVATE KEY")
                || text.contains("BEGIN PRIVATE KEY")
            {
                key_err("this is a PEM key (RSA/ECDSA); kdump uses ed25519 keys in OpenSSH format")
            } else {
                key_err("not an OpenSSH private key (no BEGIN/END OPENSSH PRIVATE KEY lines)")
            }
        })?;
        let b64: String = body.split_whitespace().collect();
        let raw = base64_decode(&b64).ok_or_else(|| key_err("the key's base64 is corrupt"))?;
        Self::from_binary(&raw)
    }

    fn from_binary(raw: &[u8]) -> Result<Self> {
        let Some(rest) = raw.strip_prefix(MAGIC) else {
            return Err(key_err("missing the openssh-key-v1 magic"));
        };
        let mut r = Reader::new(rest, "private key");
        let cipher = r.string()?;
        let kdf = r.string()?;
        let _kdf_options = r.string()?;
        if cipher != b"none" || kdf != b"none" {
            return Err(Error::Key {
                reason: format!("the key is encrypted with a passphrase ({})", String::from_utf8_lossy(cipher)),
                fix: "the capture kernel cannot ask for a passphrase: remove it with `ssh-keygen -p -N '' -f FILE`, or make a new key with `kdump ssh-key`",
            });
        }
        if r.u32()? != 1 {
            return Err(key_err("the file holds more than one key"));
        }
        let public_blob = r.string()?;
        let mut p = Reader::new(r.string()?, "private key section");
        if p.u32()? != p.u32()? {
            return Err(key_err("the check numbers differ (a corrupt or wrongly decrypted key)"));
        }
        let kind = p.string()?;
        if kind != ED25519.as_bytes() {
            return Err(key_err(format!("the key is {}, kdump uses ssh-ed25519", String::from_utf8_lossy(kind))));
        }
        let public: [u8; 32] = p.string()?.try_into().map_err(|_| key_err("the public key is not 32 bytes"))?;
        let secret = p.string()?;
        if secret.len() != 64 || secret[32..] != public {
            return Err(key_err("the private key is not 64 bytes of seed and public key"));
        }
        let comment = p.text()?;
        let seed: [u8; 32] = secret[..32].try_into().map_err(|_| key_err("short seed"))?;
        let signing = SigningKey::from_bytes(&seed);
        if signing.verifying_key().to_bytes() != public || public_blob != ed25519_blob(&public) {
            return Err(key_err("the public key does not belong to the private key"));
        }
        Ok(PrivateKey { signing, comment })
    }

    /// The OpenSSH private key file text, as `ssh-keygen -t ed25519 -N ''` writes it.
    pub fn to_openssh(&self) -> Result<String> {
        let public = self.public_bytes();
        let mut check = [0u8; 4];
        getrandom::fill(&mut check).map_err(|e| key_err(format!("no random numbers: {e}")))?;
        let mut private = Vec::new();
        private.extend_from_slice(&check);
        private.extend_from_slice(&check);
        private.put_string(ED25519.as_bytes());
        private.put_string(&public);
        let mut secret = self.signing.to_bytes().to_vec();
        secret.extend_from_slice(&public);
        private.put_string(&secret);
        private.put_string(self.comment.as_bytes());
        let mut pad = 1u8;
        while private.len() % 8 != 0 {
            private.push(pad);
            pad += 1;
        }
        let mut raw = MAGIC.to_vec();
        raw.put_string(b"none");
        raw.put_string(b"none");
        raw.put_string(b"");
        raw.put_u32(1);
        raw.put_string(&ed25519_blob(&public));
        raw.put_string(&private);
        let b64 = base64_encode(&raw, true);
        let mut out = format!("{BEGIN}\n");
        for line in b64.as_bytes().chunks(70) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
        Ok(out)
    }

    fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key's wire blob.
    pub fn public_blob(&self) -> Vec<u8> {
        ed25519_blob(&self.public_bytes())
    }

    /// The line for `authorized_keys` (and the `.pub` file).
    pub fn authorized_keys_line(&self) -> String {
        let mut line = format!("{ED25519} {}", base64_encode(&self.public_blob(), true));
        if !self.comment.is_empty() {
            line.push(' ');
            line.push_str(&self.comment);
        }
        line
    }

    /// `SHA256:…` of the public key.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_blob())
    }

    /// An SSH signature blob (string "ssh-ed25519", string sig) over `data`.
    pub(crate) fn sign(&self, data: &[u8]) -> Vec<u8> {
        let sig = self.signing.sign(data);
        let mut b = Vec::new();
        b.put_string(ED25519.as_bytes());
        b.put_string(&sig.to_bytes());
        b
    }
}

/// Checks an ssh-ed25519 signature blob by the key in `key_blob` over `data`.
pub(crate) fn verify_ed25519(key_blob: &[u8], sig_blob: &[u8], data: &[u8]) -> Result<()> {
    let bad = |why: &str| Error::Protocol(format!("the server's host key signature is invalid: {why}"));
    let mut k = Reader::new(key_blob, "host key");
    if k.string()? != ED25519.as_bytes() {
        return Err(bad("not an ssh-ed25519 key"));
    }
    let public: [u8; 32] = k.string()?.try_into().map_err(|_| bad("key is not 32 bytes"))?;
    let mut s = Reader::new(sig_blob, "host key signature");
    if s.string()? != ED25519.as_bytes() {
        return Err(bad("not an ssh-ed25519 signature"));
    }
    let sig: [u8; 64] = s.string()?.try_into().map_err(|_| bad("signature is not 64 bytes"))?;
    let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not a valid curve point"))?;
    key.verify_strict(data, &ed25519_dalek::Signature::from_bytes(&sig)).map_err(|_| bad("verification failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -t ed25519 -N '' -C test` output (a throwaway key made for this test).
    const OPENSSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBw92UUC7EPyqauXpS30ugvcv8q/8KyhKDWloh8d6JZFAAAAJAS3KSYEtyk
mAAAAAtzc2gtZWQyNTUxOQAAACBw92UUC7EPyqauXpS30ugvcv8q/8KyhKDWloh8d6JZFA
AAAECx0LDYfKalcyEo9JVc3QGyVLykJubnHI75033aEXZRonD3ZRQLsQ/Kpq5elLfS6C9y
/yr/wrKEoNaWiHx3olkUAAAAB3Rlc3RrZXkBAgMEBQY=
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn a_generated_key_round_trips() {
        let k = PrivateKey::generate("root@test").unwrap();
        let text = k.to_openssh().unwrap();
        let back = PrivateKey::from_openssh(&text).unwrap();
        assert_eq!(back.authorized_keys_line(), k.authorized_keys_line());
        assert!(k.authorized_keys_line().starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));
        assert!(k.authorized_keys_line().ends_with(" root@test"));
        let sig = k.sign(b"data");
        verify_ed25519(&k.public_blob(), &sig, b"data").unwrap();
        assert!(verify_ed25519(&k.public_blob(), &sig, b"datb").is_err());
    }

    #[test]
    fn parses_an_ssh_keygen_key() {
        let k = PrivateKey::from_openssh(OPENSSH_KEY).unwrap();
        assert_eq!(k.comment, "testkey");
        // As `ssh-keygen -lf` prints it.
        assert_eq!(k.fingerprint(), "SHA256:QSd4nS1VhZWTRT8vOIfKKyWKsAgGcfj2eBmi9tcleHo");
        assert_eq!(
            k.authorized_keys_line(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHD3ZRQLsQ/Kpq5elLfS6C9y/yr/wrKEoNaWiHx3olkU testkey"
        );
    }

    #[test]
    fn refuses_bad_keys_with_a_fix() {
        let e = PrivateKey::from_openssh("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----")
            .unwrap_err();
        assert!(e.to_string().contains("ed25519"), "{e}");
        let e = PrivateKey::from_openssh("garbage").unwrap_err();
        assert!(e.to_string().contains("kdump ssh-key"), "{e}");
        // Every truncation of a valid key is refused, never a panic.
        let raw: String = OPENSSH_KEY.lines().filter(|l| !l.starts_with("-----")).collect();
        let raw = base64_decode(&raw).unwrap();
        for n in 0..raw.len() - 1 {
            assert!(PrivateKey::from_binary(&raw[..n]).is_err(), "{n}");
        }
    }
}
