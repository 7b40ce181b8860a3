//! `ssh://user@host[:port]/path`.

use crate::error::{Error, Result};

/// A parsed ssh target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUrl {
    /// Remote user.
    pub user: String,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port (22 unless given).
    pub port: u16,
    /// Absolute directory on the server for crash directories.
    pub path: String,
}

impl SshUrl {
    /// Parses `ssh://user@host[:port]/path`.
    pub fn parse(url: &str) -> Result<SshUrl> {
        let bad = |reason: &str| Error::Url { url: url.to_string(), reason: reason.to_string() };
        let rest = url.strip_prefix("ssh://").ok_or_else(|| bad("it does not start with ssh://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(bad("it has no path")),
        };
        let (user, hostport) = authority.rsplit_once('@').ok_or_else(|| bad("it names no user (user@host)"))?;
        if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c == ':') {
            return Err(bad("the user is empty or has spaces or a colon"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 address lacks its ]"))?;
            if !after.is_empty() && !after.starts_with(':') {
                return Err(bad("junk after the IPv6 address"));
            }
            (addr.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '[' || c == ']') {
            return Err(bad("the host is empty or has spaces"));
        }
        let port = match port {
            None => 22,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| bad("the port is not 1-65535"))?,
        };
        let path = path.trim_end_matches('/');
        if path.is_empty() || path.split('/').any(|c| c == "..") {
            return Err(bad("the path must be an absolute directory other than / without .."));
        }
        Ok(SshUrl { user: user.to_string(), host, port, path: path.to_string() })
    }
}

impl std::fmt::Display for SshUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "ssh://{}@[{}]", self.user, self.host)?;
        } else {
            write!(f, "ssh://{}@{}", self.user, self.host)?;
        }
        if self.port != 22 {
            write!(f, ":{}", self.port)?;
        }
        write!(f, "{}", self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_of_the_config() {
        let u = SshUrl::parse("ssh://root@backup.example/var/crash").unwrap();
        assert_eq!(
            (u.user.as_str(), u.host.as_str(), u.port, u.path.as_str()),
            ("root", "backup.example", 22, "/var/crash")
        );
        let u = SshUrl::parse("ssh://kdump@127.0.0.1:2222/srv/dumps/").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 2222, "/srv/dumps"));
        assert_eq!(u.to_string(), "ssh://kdump@127.0.0.1:2222/srv/dumps");
        let u = SshUrl::parse("ssh://a@[::1]:23/d").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 23));
        assert_eq!(u.to_string(), "ssh://a@[::1]:23/d");
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "nfs://h/x",
            "ssh://host/x",
            "ssh://u@host",
            "ssh://u@host/",
            "ssh://u@host:0/x",
            "ssh://u@host:99999/x",
            "ssh://u@:22/x",
            "ssh://u@h/a/../b",
            "ssh://@h/x",
            "ssh://u@[::1/x",
            "ssh://u@[::1]x/x",
            "ssh://u@[]/x",
        ] {
            let e = SshUrl::parse(bad).unwrap_err();
            assert!(e.to_string().contains("ssh://user@host"), "{bad}: {e}");
        }
    }
}
