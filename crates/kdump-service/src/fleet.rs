//! A fleet's crashes in one bucket: where each crash's files go, the index that lets a fleet of
//! thousands be listed with a few LIST requests, and what `kdump fleet` makes of it (crashes
//! grouped by signature, per day, an HTML page). Pure: the caller lists and fetches.
//!
//! Layout under the bucket's prefix:
//! - `<host>/<time>/{dmesg.txt,info.json,kdump.log,vmcore}`: one crash (`time` is
//!   `YYYY-MM-DD-HH:MM:SS`, UTC);
//! - `.index/<signature>/<time>/<host>/<release>`: an empty object per crash, so that listing
//!   `.index/` (1,000 keys a request) gives every crash's signature, time, host and kernel
//!   without reading a single `info.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

/// The index's folder under the prefix.
pub const INDEX: &str = ".index";

/// One crash as the index names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CrashRef {
    /// Its signature id (`kdump_kernel::signature`).
    pub signature: String,
    /// UTC, `YYYY-MM-DD-HH:MM:SS`.
    pub time: String,
    /// The crashed host's name.
    pub host: String,
    /// The crashed kernel's release.
    pub release: String,
}

/// Why a name cannot go into a key.
fn key_safe(part: &str) -> String {
    let safe: String = part
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '+') { c } else { '_' })
        .collect();
    if safe.is_empty() { "unknown".to_string() } else { safe }
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() { rest.to_string() } else { format!("{}/{rest}", prefix.trim_end_matches('/')) }
}

impl CrashRef {
    /// A crash; names are made safe for keys (anything but letters, digits and `.-_:+` → `_`),
    /// a host with no name (`(none)`, empty) is `localhost`, as in local crash directories.
    pub fn new(signature: &str, time: &str, host: &str, release: &str) -> Self {
        Self {
            signature: key_safe(signature),
            time: key_safe(time),
            host: key_safe(&crate::naming::safe_host(host)),
            release: key_safe(release),
        }
    }

    /// `<prefix>/<host>/<time>`: the crash's folder.
    pub fn folder(&self, prefix: &str) -> String {
        join(prefix, &format!("{}/{}", self.host, self.time))
    }

    /// Its index key.
    pub fn index_key(&self, prefix: &str) -> String {
        join(prefix, &format!("{INDEX}/{}/{}/{}/{}", self.signature, self.time, self.host, self.release))
    }

    /// The day of the crash, `YYYY-MM-DD`.
    pub fn day(&self) -> &str {
        self.time.get(..10).unwrap_or(&self.time)
    }

    /// Reads an index key (as listed); `None` for a key that is not one.
    pub fn from_index_key(prefix: &str, key: &str) -> Option<Self> {
        let index = join(prefix, INDEX);
        let rest = key.strip_prefix(&index)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (signature, time, host, release) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [signature, time, host, release].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Self::new(signature, time, host, release))
    }
}

/// What the fleet knows of one signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureSummary {
    /// The signature id.
    pub signature: String,
    /// Its readable title (from one crash's `info.json`), when fetched.
    pub title: Option<String>,
    /// Crashes with it.
    pub count: usize,
    /// Distinct hosts.
    pub hosts: BTreeSet<String>,
    /// Distinct kernel releases.
    pub releases: BTreeSet<String>,
    /// The first crash's time.
    pub first_seen: String,
    /// The last crash's time.
    pub last_seen: String,
    /// The last crash's folder name, `<host>/<time>` (for `kdump fleet fetch`).
    pub latest: String,
}

/// Crashes grouped by signature, most frequent first (then most recent).
pub fn summarize(crashes: &[CrashRef]) -> Vec<SignatureSummary> {
    let mut by: BTreeMap<&str, SignatureSummary> = BTreeMap::new();
    for c in crashes {
        let s = by.entry(&c.signature).or_insert_with(|| SignatureSummary {
            signature: c.signature.clone(),
            title: None,
            count: 0,
            hosts: BTreeSet::new(),
            releases: BTreeSet::new(),
            first_seen: c.time.clone(),
            last_seen: c.time.clone(),
            latest: format!("{}/{}", c.host, c.time),
        });
        s.count += 1;
        s.hosts.insert(c.host.clone());
        s.releases.insert(c.release.clone());
        if c.time < s.first_seen {
            s.first_seen = c.time.clone();
        }
        if c.time >= s.last_seen {
            s.last_seen = c.time.clone();
            s.latest = format!("{}/{}", c.host, c.time);
        }
    }
    let mut out: Vec<SignatureSummary> = by.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| b.last_seen.cmp(&a.last_seen)));
    out
}

/// Crashes per day and signature: `day → signature → count`.
pub fn per_day(crashes: &[CrashRef]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for c in crashes {
        *out.entry(c.day().to_string()).or_default().entry(c.signature.clone()).or_default() += 1;
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Colours of the chart's series, one per signature in summary order (then repeated).
const PALETTE: &[&str] = &["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// One static page: a table of signatures and a chart of crashes per day per signature
/// (stacked bars, inline SVG): no script, no server, readable offline.
pub fn html_report(summaries: &[SignatureSummary], crashes: &[CrashRef], generated: &str) -> String {
    let days = per_day(crashes);
    let colour: BTreeMap<&str, &str> =
        summaries.iter().enumerate().map(|(i, s)| (s.signature.as_str(), PALETTE[i % PALETTE.len()])).collect();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kdump fleet report</title>\n<style>\
         body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#eee}}\
         .sw{{display:inline-block;width:12px;height:12px;margin-right:6px}}</style></head><body>\n\
         <h1>kdump fleet report</h1>\n<p>{} crashes, {} signatures, {} hosts; generated {}</p>\n",
        crashes.len(),
        summaries.len(),
        crashes.iter().map(|c| c.host.as_str()).collect::<BTreeSet<_>>().len(),
        escape(generated)
    );
    // The chart: one stacked bar per day.
    let max = days.values().map(|m| m.values().sum::<usize>()).max().unwrap_or(1).max(1);
    let (bar, gap, height) = (24usize, 8usize, 200usize);
    // Room for the day labels, slanted below the bars.
    let width = days.len() * (bar + gap) + 120;
    let _ = write!(
        h,
        "<h2>Crashes per day</h2>\n<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{}\" role=\"img\" aria-label=\"crashes per day per signature\">\n",
        height + 110
    );
    let _ = writeln!(h, "<text x=\"0\" y=\"12\" font-size=\"11\">{max}</text>");
    for (i, (day, sigs)) in days.iter().enumerate() {
        let x = 40 + i * (bar + gap);
        let mut y = height + 20;
        for s in summaries {
            let Some(&n) = sigs.get(&s.signature) else { continue };
            let hgt = (n * height).div_ceil(max);
            y -= hgt;
            let _ = writeln!(
                h,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{hgt}\" fill=\"{}\"><title>{} {}: {n}</title></rect>",
                colour[s.signature.as_str()],
                escape(day),
                escape(&s.signature)
            );
        }
        let _ = writeln!(
            h,
            "<text x=\"{x}\" y=\"{}\" font-size=\"10\" transform=\"rotate(45 {x} {})\">{}</text>",
            height + 32,
            height + 32,
            escape(day)
        );
    }
    h.push_str(
        "</svg>\n<h2>Signatures</h2>\n<table id=\"signatures\">\n<tr><th>signature</th><th>title</th>\
                <th>crashes</th><th>hosts</th><th>kernels</th><th>first seen</th><th>last seen</th></tr>\n",
    );
    for s in summaries {
        let _ = writeln!(
            h,
            "<tr><td><span class=\"sw\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            colour[s.signature.as_str()],
            escape(&s.signature),
            escape(s.title.as_deref().unwrap_or("")),
            s.count,
            s.hosts.len(),
            escape(&s.releases.iter().cloned().collect::<Vec<_>>().join(", ")),
            escape(&s.first_seen),
            escape(&s.last_seen)
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(sig: &str, time: &str, host: &str, release: &str) -> CrashRef {
        CrashRef::new(sig, time, host, release)
    }

    #[test]
    fn index_keys_round_trip_and_foreign_keys_are_not_crashes() {
        let c = crash("0123456789abcdef", "2026-12-01-05:30:00", "web 7", "6.1.0-57-cloud-amd64");
        assert_eq!(c.host, "web_7", "made safe for a key");
        let key = c.index_key("fleet/prod");
        assert_eq!(key, "fleet/prod/.index/0123456789abcdef/2026-12-01-05:30:00/web_7/6.1.0-57-cloud-amd64");
        assert_eq!(CrashRef::from_index_key("fleet/prod", &key), Some(c.clone()));
        assert_eq!(c.folder("fleet/prod"), "fleet/prod/web_7/2026-12-01-05:30:00");
        assert_eq!(CrashRef::from_index_key("", &c.index_key("")), Some(c));
        for bad in [
            "fleet/prod/web_7/2026/info.json",
            "fleet/prod/.index/a/b/c",
            "fleet/prod/.index/a/b/c/d/e",
            "other/.index/a/b/c/d",
        ] {
            assert_eq!(CrashRef::from_index_key("fleet/prod", bad), None, "{bad}");
        }
    }

    #[test]
    fn crashes_group_by_signature_most_frequent_first() {
        let crashes = [
            crash("aaaa", "2026-11-30-10:00:00", "h1", "6.1"),
            crash("bbbb", "2026-11-30-11:00:00", "h2", "6.12"),
            crash("bbbb", "2026-12-01-09:00:00", "h3", "6.12"),
            crash("bbbb", "2026-11-29-08:00:00", "h2", "6.1"),
        ];
        let s = summarize(&crashes);
        assert_eq!(s.iter().map(|s| (s.signature.as_str(), s.count)).collect::<Vec<_>>(), [("bbbb", 3), ("aaaa", 1)]);
        assert_eq!(s[0].hosts.len(), 2);
        assert_eq!(s[0].releases.iter().cloned().collect::<Vec<_>>(), ["6.1", "6.12"]);
        assert_eq!((s[0].first_seen.as_str(), s[0].last_seen.as_str()), ("2026-11-29-08:00:00", "2026-12-01-09:00:00"));
        assert_eq!(s[0].latest, "h3/2026-12-01-09:00:00");
        let days = per_day(&crashes);
        assert_eq!(days["2026-11-30"]["aaaa"], 1);
        assert_eq!(days["2026-11-30"]["bbbb"], 1);
        assert_eq!(days.len(), 3);
        let html = html_report(&s, &crashes, "now");
        assert!(html.contains("<svg id=\"chart\"") && html.contains("<table id=\"signatures\">"));
        assert_eq!(html.matches("<rect ").count(), 4, "one bar segment per day and signature");
        assert!(html.contains("<td>3</td>"));
    }

    #[test]
    fn titles_are_escaped_in_the_page() {
        let mut s = summarize(&[crash("aaaa", "2026-11-30-10:00:00", "h1", "6.1")]);
        s[0].title = Some("BUG: <script>alert(1)</script> & co".into());
        let html = html_report(&s, &[crash("aaaa", "2026-11-30-10:00:00", "h1", "6.1")], "now");
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    }
}
