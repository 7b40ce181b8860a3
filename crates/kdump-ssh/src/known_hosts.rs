//! OpenSSH `known_hosts`: which host keys are pinned for a host (sshd(8) "SSH_KNOWN_HOSTS FILE
//! FORMAT"). The file is untrusted text: lines that do not parse are skipped, as ssh does,
//! and nothing here panics.

use sha1::{Digest, Sha1};

use crate::key::{ED25519, fingerprint};
use crate::wire::base64_decode;

/// A parsed known_hosts file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key_type: String,
    key_blob: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    /// `@cert-authority`: kdump does not use certificates, so these never pin a key.
    CertAuthority,
}

#[derive(Debug, Clone)]
enum Hosts {
    /// `|1|salt|hash`: HMAC-SHA1(salt, name).
    Hashed { salt: Vec<u8>, hash: [u8; 20] },
    /// Comma-separated patterns with `*`, `?` and `!` negation.
    Patterns(Vec<String>),
}

/// What known_hosts says about a host's offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is pinned for the host (at this line).
    Trusted {
        /// 1-based line.
        line: usize,
    },
    /// The host has an ssh-ed25519 key pinned, and it is another one.
    Mismatch {
        /// 1-based line of the pinned key.
        line: usize,
    },
    /// The key is marked `@revoked`.
    Revoked {
        /// 1-based line.
        line: usize,
    },
    /// No ssh-ed25519 key is pinned for the host; `other_types` lists the key types that are.
    Unknown {
        /// Key types pinned for the host that kdump does not verify.
        other_types: Vec<String>,
    },
}

/// The name known_hosts uses for a host: `host` on port 22, else `[host]:port` (an IPv6
/// address too: `::1`, `[::1]:2222`).
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 { host.to_ascii_lowercase() } else { format!("[{}]:{port}", host.to_ascii_lowercase()) }
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha1::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Shell-style match of `*` and `?`, iterative (no recursion blow-up on hostile patterns).
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p].eq_ignore_ascii_case(&name[n])) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => hmac_sha1(salt, name.as_bytes()) == *hash,
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for p in patterns {
                    if let Some(negated) = p.strip_prefix('!') {
                        if wildcard(negated.as_bytes(), name.as_bytes()) {
                            return false;
                        }
                    } else if wildcard(p.as_bytes(), name.as_bytes()) {
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        let salt = base64_decode(salt)?;
        let hash: [u8; 20] = base64_decode(hash)?.try_into().ok()?;
        return Some(Hosts::Hashed { salt, hash });
    }
    if field.starts_with('|') {
        return None;
    }
    Some(Hosts::Patterns(field.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect()))
}

fn parse_line(line: &str) -> Option<(Marker, Hosts, String, Vec<u8>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let hosts = parse_hosts(first)?;
    let key_type = fields.next()?.to_string();
    let key_blob = base64_decode(fields.next()?)?;
    Some((marker, hosts, key_type, key_blob))
}

impl KnownHosts {
    /// Parses known_hosts text; lines that are not entries are skipped.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| {
                let (marker, hosts, key_type, key_blob) = parse_line(l)?;
                Some(Entry { line: i + 1, marker, hosts, key_type, key_blob })
            })
            .collect();
        KnownHosts { entries }
    }

    /// Number of entries parsed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry parsed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Judges the ssh-ed25519 key blob `offered` by `name` (see [`host_name`]).
    pub fn verify(&self, name: &str, offered: &[u8]) -> Verdict {
        // A revocation wins over any pin, wherever it is (as in ssh).
        if let Some(e) = self.entries.iter().find(|e| e.marker == Marker::Revoked && e.key_blob == offered) {
            return Verdict::Revoked { line: e.line };
        }
        let pins = || self.entries.iter().filter(|e| e.marker == Marker::None && e.hosts.matches(name));
        if let Some(e) = pins().find(|e| e.key_type == ED25519 && e.key_blob == offered) {
            return Verdict::Trusted { line: e.line };
        }
        if let Some(e) = pins().find(|e| e.key_type == ED25519) {
            return Verdict::Mismatch { line: e.line };
        }
        let mut other_types: Vec<String> = pins().map(|e| e.key_type.clone()).collect();
        other_types.sort();
        other_types.dedup();
        Verdict::Unknown { other_types }
    }

    /// Fingerprints of the keys pinned for `name`, for reports.
    pub fn pinned(&self, name: &str) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|e| e.marker == Marker::None && e.hosts.matches(name))
            .map(|e| (e.key_type.clone(), fingerprint(&e.key_blob)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::base64_encode;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIHD3ZRQLsQ/Kpq5elLfS6C9y/yr/wrKEoNaWiHx3olkU";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIMuygYh77PfNK8Y4HCA4e7gbtWqVDsUE1wOVOUuC3ZLG";

    fn blob(b64: &str) -> Vec<u8> {
        base64_decode(b64).unwrap()
    }

    #[test]
    fn plain_entries_with_ports_and_patterns() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n\nbackup.example,10.0.0.5 ssh-ed25519 {KEY_A} root@backup\n\
             [127.0.0.1]:2222 ssh-ed25519 {KEY_B}\n*.lab,!bad.lab ssh-ed25519 {KEY_A}\n"
        ));
        assert_eq!(kh.len(), 3);
        assert_eq!(kh.verify("backup.example", &blob(KEY_A)), Verdict::Trusted { line: 3 });
        assert_eq!(kh.verify("10.0.0.5", &blob(KEY_A)), Verdict::Trusted { line: 3 });
        assert_eq!(kh.verify("10.0.0.5", &blob(KEY_B)), Verdict::Mismatch { line: 3 });
        assert_eq!(kh.verify(&host_name("127.0.0.1", 2222), &blob(KEY_B)), Verdict::Trusted { line: 4 });
        // Port 22's entry does not pin port 2222 and the other way round.
        assert_eq!(kh.verify("127.0.0.1", &blob(KEY_B)), Verdict::Unknown { other_types: vec![] });
        assert_eq!(kh.verify("x.lab", &blob(KEY_A)), Verdict::Trusted { line: 5 });
        assert_eq!(kh.verify("bad.lab", &blob(KEY_A)), Verdict::Unknown { other_types: vec![] });
        assert_eq!(kh.verify("BACKUP.example", &blob(KEY_A)), Verdict::Trusted { line: 3 });
        assert_eq!(host_name("::1", 2222), "[::1]:2222");
        assert_eq!(host_name("::1", 22), "::1");
    }

    #[test]
    fn hashed_entries_as_ssh_keygen_h_writes_them() {
        // `ssh-keygen -H` of "[127.0.0.1]:2222": salt and HMAC-SHA1 of the name.
        let salt = [7u8; 20];
        let hash = hmac_sha1(&salt, b"[127.0.0.1]:2222");
        let line = format!("|1|{}|{} ssh-ed25519 {KEY_A}", base64_encode(&salt, true), base64_encode(&hash, true));
        let kh = KnownHosts::parse(&line);
        assert_eq!(kh.verify("[127.0.0.1]:2222", &blob(KEY_A)), Verdict::Trusted { line: 1 });
        assert_eq!(kh.verify("127.0.0.1", &blob(KEY_A)), Verdict::Unknown { other_types: vec![] });
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?").
        let h = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(h[..4], [0xef, 0xfc, 0xdf, 0x6a]);
        assert_eq!(h[16..], [0x25, 0x9a, 0x7c, 0x79]);
    }

    #[test]
    fn hashed_lines_made_by_ssh_keygen() {
        // `ssh-keygen -H` of "[127.0.0.1]:2222 …" and "backup.example …".
        let kh = KnownHosts::parse(&format!(
            "|1|ZcPjRMa6ldDcfLQPxorxtfF4bU4=|sv3aU5XMlra6rf1jHJBkCS8a0AY= ssh-ed25519 {KEY_A}\n\
             |1|nvmw5yPXkyzI7OGCX62uG1URa0Y=|yw90kfrK9V4l5LHDu6Eov/sR6Hw= ssh-ed25519 {KEY_A}\n"
        ));
        assert_eq!(kh.verify(&host_name("127.0.0.1", 2222), &blob(KEY_A)), Verdict::Trusted { line: 1 });
        assert_eq!(kh.verify(&host_name("Backup.Example", 22), &blob(KEY_A)), Verdict::Trusted { line: 2 });
        assert_eq!(kh.verify(&host_name("backup.example", 22), &blob(KEY_B)), Verdict::Mismatch { line: 2 });
        assert_eq!(kh.verify(&host_name("127.0.0.1", 22), &blob(KEY_A)), Verdict::Unknown { other_types: vec![] });
    }

    #[test]
    fn revoked_and_other_types() {
        let kh = KnownHosts::parse(&format!(
            "srv ecdsa-sha2-nistp256 AAAAE2VjZHNh\nsrv ssh-rsa AAAAB3NzaC1yc2E=\n@revoked * ssh-ed25519 {KEY_B}\n\
             @cert-authority srv ssh-ed25519 {KEY_A}\n"
        ));
        assert_eq!(
            kh.verify("srv", &blob(KEY_A)),
            Verdict::Unknown { other_types: vec!["ecdsa-sha2-nistp256".into(), "ssh-rsa".into()] }
        );
        assert_eq!(kh.verify("srv", &blob(KEY_B)), Verdict::Revoked { line: 3 });
    }

    #[test]
    fn garbage_lines_are_skipped_without_panic() {
        let text =
            "|1|\n|1|!!|??? ssh-ed25519 AAAA\n@bogus x y z\nhost\nhost ssh-ed25519\nhost ssh-ed25519 !!!\n\u{feff}\0\n";
        let kh = KnownHosts::parse(text);
        assert!(kh.is_empty());
        assert!(!wildcard(b"a*a*a*a*a*a*a*a*b", &[b'a'; 200]));
        assert!(wildcard(b"*a?c*", b"xxabcyy"));
    }
}
