//! Per-crash directory names and listings: `<host>-<UTC time>`, e.g.
//! `web1-2026-11-26-05:41:46`.

pub use kdump_dumpfile::utc::civil;

/// A host name safe as a path component: `/`, NUL, spaces and control
/// characters become `_`; empty or `(none)` becomes `localhost`.
pub fn safe_host(host: &str) -> String {
    let host = host.trim();
    if host.is_empty() || host == "(none)" {
        return "localhost".into();
    }
    let s: String =
        host.chars().map(|c| if c == '/' || c.is_control() || c.is_whitespace() { '_' } else { c }).take(64).collect();
    if s == "." || s == ".." { "localhost".into() } else { s }
}

/// The directory for one crash: `<host>-<YYYY-MM-DD-HH:MM:SS>` (UTC).
pub fn crash_dir_name(host: &str, utc_secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(utc_secs);
    format!("{}-{y:04}-{mo:02}-{d:02}-{h:02}:{mi:02}:{s:02}", safe_host(host))
}

/// A unique name: `name`, else `name.1`, `name.2`, … (the first for which `taken` is false).
pub fn unique(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_string();
    }
    (1..).map(|i| format!("{name}.{i}")).find(|n| !taken(n)).unwrap_or_default()
}

/// What a crash directory holds, from its file names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrashDirSummary {
    /// The directory name.
    pub name: String,
    /// `vmcore` is there (complete).
    pub complete: bool,
    /// `vmcore.incomplete` is there.
    pub incomplete: bool,
    /// Size of the vmcore (either name).
    pub vmcore_bytes: u64,
    /// `dmesg.txt` is there.
    pub dmesg: bool,
}

impl CrashDirSummary {
    /// Summarises a directory from (file name, size) pairs.
    pub fn from_files(name: &str, files: &[(String, u64)]) -> Self {
        let size = |n: &str| files.iter().find(|(f, _)| f == n).map(|(_, s)| *s);
        Self {
            name: name.to_string(),
            complete: size("vmcore").is_some(),
            incomplete: size("vmcore.incomplete").is_some(),
            vmcore_bytes: size("vmcore").or(size("vmcore.incomplete")).unwrap_or(0),
            dmesg: size("dmesg.txt").is_some(),
        }
    }

    /// One line for `kdump list`.
    pub fn line(&self) -> String {
        let state = if self.complete {
            "complete"
        } else if self.incomplete {
            "INCOMPLETE"
        } else {
            "no dump"
        };
        format!(
            "{:<40} {:>10.1} MiB  {state}{}",
            self.name,
            self.vmcore_bytes as f64 / (1 << 20) as f64,
            if self.dmesg { ", dmesg.txt" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(crash_dir_name("web1", 1_795_671_706), "web1-2026-11-26-05:41:46");
        assert_eq!(crash_dir_name("", 0), "localhost-1970-01-01-00:00:00");
        assert_eq!(crash_dir_name("a/b c", 951_782_400), "a_b_c-2000-02-29-00:00:00");
        assert_eq!(safe_host(".."), "localhost");
        assert_eq!(unique("x", |n| n == "x" || n == "x.1"), "x.2");
        assert_eq!(unique("y", |_| false), "y");
    }

    #[test]
    fn summaries() {
        let s = CrashDirSummary::from_files("h-1", &[("vmcore.incomplete".into(), 1 << 20), ("dmesg.txt".into(), 5)]);
        assert!(!s.complete && s.incomplete && s.dmesg);
        assert!(s.line().contains("INCOMPLETE"), "{}", s.line());
    }
}
