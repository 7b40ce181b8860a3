//! The S3 target on the running machine and in the capture kernel: the client a config's
//! `target.url = "s3://…"` makes, what `kdump setup` checks and copies into the capture
//! initramfs, `kdump check-target`, and publishing a crash (small files, then the fleet index
//! entry) as both the capture kernel and `kdump fleet add` do. The client is `kdump-s3`; the
//! config's rules and the bucket's layout are in `kdump-service`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use kdump_s3::{Addressing, Client, ClientConfig, Credentials, RetryPolicy, S3Error, S3Url};
use kdump_service::S3Destination;
use kdump_service::fleet::CrashRef;
use kdump_service::initramfs::{S3_CA, S3_CREDENTIALS, S3Files};

/// How long the running machine's check waits for the server.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Each read or write of a request in the capture kernel may wait this long (a silent server
/// costs this per attempt).
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for `s3` with the credentials file's text (named `credentials_name` in messages).
pub fn client(
    s3: &S3Destination,
    credentials: &str,
    credentials_name: &str,
    ca_pem: Option<Vec<u8>>,
    timeout: Duration,
) -> anyhow::Result<Client> {
    let credentials = Credentials::parse(credentials).map_err(|e| {
        anyhow::anyhow!(
            "target.credentials {credentials_name}: {e} (the access key id on the first line, the secret on the second)"
        )
    })?;
    Ok(Client::new(ClientConfig {
        endpoint: s3.endpoint.clone(),
        ca_pem,
        region: s3.region.clone(),
        bucket: s3.url.bucket.clone(),
        addressing: if s3.virtual_host { Addressing::VirtualHost } else { Addressing::Path },
        credentials,
        timeout,
        address: Some(IpAddr::V4(s3.address)),
    })?)
}

/// Reads the credentials (and CA) the config names.
pub fn load(s3: &S3Destination, timeout: Duration) -> anyhow::Result<(Client, S3Files)> {
    let credentials = std::fs::read_to_string(&s3.credentials_file).with_context(|| {
        format!(
            "cannot read target.credentials {} (write the access key id on its first line and the secret on its \
             second, mode 0600)",
            s3.credentials_file
        )
    })?;
    let ca = match &s3.ca_file {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("cannot read target.ca {f}"))?),
        None => None,
    };
    let client = client(s3, &credentials, &s3.credentials_file, ca.clone(), timeout)?;
    Ok((client, S3Files { credentials, ca }))
}

/// The key `kdump check-target` writes, reads back and removes.
fn probe_key(s3: &S3Destination) -> String {
    s3.url.key(".kdump-check-target")
}

/// Whether the failure is the server being away (worth only a warning at boot).
fn unreachable(e: &S3Error) -> bool {
    matches!(e, S3Error::ConnectionRefused { .. } | S3Error::Timeout { .. } | S3Error::Network { .. })
}

/// What `kdump setup` does for an S3 target: the files for the initramfs, and report lines.
/// Refuses unreadable credentials and a server that answers but refuses them; only warns when
/// the server cannot be reached now.
pub fn for_setup(s3: &S3Destination, report: &mut Vec<String>) -> anyhow::Result<S3Files> {
    let (client, files) = load(s3, CHECK_TIMEOUT)?;
    report.push(format!("target: {s3}, credentials {}", s3.credentials_file));
    match client.check_writable(&probe_key(s3)) {
        Ok(()) => report.push("target: check-target passed (bucket reachable and writable)".into()),
        Err(e) if unreachable(&e) => report.push(format!(
            "target: WARNING: cannot reach the S3 server from here now ({e}); the capture kernel will try; run kdump \
             check-target once it is up"
        )),
        Err(e) => bail!("the S3 target {s3} fails its check (kdump check-target): {e}"),
    }
    Ok(files)
}

/// `kdump check-target` for an S3 target: each step with its outcome; an error when one fails.
pub fn check_target(s3: &S3Destination) -> anyhow::Result<()> {
    let (client, _) = load(s3, CHECK_TIMEOUT)?;
    println!("target:     {s3}");
    println!("ok          credentials {} read", s3.credentials_file);
    let key = probe_key(s3);
    match client.check_writable(&key) {
        Ok(()) => {
            println!(
                "ok          reachable, credentials accepted, bucket {} writable ({key} written, read, removed)",
                s3.url.bucket
            );
            Ok(())
        }
        Err(e) => {
            println!("PROBLEM     {e}");
            bail!("the S3 target {s3} is not ready: fix the PROBLEM line above")
        }
    }
}

/// The client from the files in the capture initramfs under `root`.
pub fn from_initramfs(s3: &S3Destination, root: &Path) -> anyhow::Result<Client> {
    let path = root.join(S3_CREDENTIALS);
    let credentials = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (kdump setup puts target.credentials there)", path.display()))?;
    let ca = match &s3.ca_file {
        Some(f) => Some(
            std::fs::read(root.join(S3_CA))
                .with_context(|| format!("cannot read /{S3_CA} (kdump setup puts target.ca {f} there)"))?,
        ),
        None => None,
    };
    client(s3, &credentials, &format!("/{S3_CREDENTIALS} (a copy of {})", s3.credentials_file), ca, CAPTURE_TIMEOUT)
}

/// `YYYY-MM-DD HH:MM:SS UTC` (info.json) → `YYYY-MM-DD-HH:MM:SS` (keys).
fn key_time(text: &str) -> Option<String> {
    let t = text.strip_suffix(" UTC")?;
    (t.len() == 19).then(|| t.replacen(' ', "-", 1))
}

/// The crash's place in the fleet, from its `info.json`; `None` when it lacks a signature or
/// time (an `info.json` from an older kdump, or none at all).
pub fn crash_ref(info_json: &[u8]) -> Option<CrashRef> {
    let v: serde_json::Value = serde_json::from_slice(info_json).ok()?;
    let s = |p: &str| v.pointer(p).and_then(|v| v.as_str()).map(str::to_string);
    let signature = s("/signature/id")?;
    let time = s("/crash_time").as_deref().and_then(key_time)?;
    Some(CrashRef::new(
        &signature,
        &time,
        &s("/kernel/nodename").unwrap_or_default(),
        &s("/kernel/release").unwrap_or_default(),
    ))
}

/// The crash's place when its report could not be made: host and time (Unix seconds) of the
/// crash, signature and release unknown.
pub fn unidentified(host: &str, when: i64) -> CrashRef {
    let (y, mo, d, h, mi, s) = kdump_service::naming::civil(when);
    CrashRef::new("unknown", &format!("{y:04}-{mo:02}-{d:02}-{h:02}:{mi:02}:{s:02}"), host, "unknown")
}

/// Uploads a crash's small files (name and bytes), then its index entry, each retried by
/// `retry`; returns its folder key.
pub fn publish_small(
    client: &Client,
    url: &S3Url,
    crash: &CrashRef,
    files: &[(&str, &[u8])],
    retry: RetryPolicy,
) -> anyhow::Result<String> {
    let folder = crash.folder(&url.prefix);
    for (name, body) in files {
        let key = format!("{folder}/{name}");
        retry.run(|| client.put_object(&key, body)).with_context(|| format!("cannot upload {key}"))?;
    }
    let index = crash.index_key(&url.prefix);
    retry.run(|| client.put_object(&index, b"")).with_context(|| format!("cannot write the index entry {index}"))?;
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_is_placed_by_its_report_or_by_host_and_time() {
        let info = br#"{"crash_time": "2026-12-01 10:20:30 UTC", "signature": {"id": "d837c7b44c6b3a2d"},
                        "kernel": {"nodename": "web 7", "release": "6.1.0-41-cloud-amd64"}}"#;
        let c = crash_ref(info).unwrap();
        assert_eq!(c.folder("fleet"), "fleet/web_7/2026-12-01-10:20:30");
        assert_eq!(
            c.index_key("fleet"),
            "fleet/.index/d837c7b44c6b3a2d/2026-12-01-10:20:30/web_7/6.1.0-41-cloud-amd64"
        );
        assert_eq!(crash_ref(b"{\"crash_time\": \"2026-12-01 10:20:30 UTC\"}"), None);
        assert_eq!(crash_ref(b"not json"), None);
        assert_eq!(unidentified("db", 0).index_key(""), ".index/unknown/1970-01-01-00:00:00/db/unknown");
    }
}
