//! `kdump fleet`: every crash of a fleet in one S3 bucket, grouped by signature. The layout
//! and the grouping are `kdump_service::fleet`; this wires them to `kdump-s3` and prints.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kdump_s3::{Addressing, Client, ClientConfig, Credentials, MultipartConfig, MultipartSink, RetryPolicy, S3Url};
use kdump_service::fleet::{CrashRef, INDEX, SignatureSummary, html_report, summarize};

/// The bucket and how to reach it.
#[derive(Debug, Args)]
pub struct Bucket {
    /// Take the bucket, endpoint and credentials from this config's S3 target (target.url).
    #[arg(long, value_name = "FILE", global = true, conflicts_with_all = ["url", "endpoint", "credentials"])]
    config: Option<PathBuf>,
    /// The fleet's place: `s3://bucket/prefix`.
    #[arg(long, value_name = "s3://BUCKET/PREFIX", global = true)]
    url: Option<String>,
    /// The S3 endpoint, `http(s)://host[:port]`.
    #[arg(long, value_name = "URL", global = true)]
    endpoint: Option<String>,
    /// The region requests are signed for.
    #[arg(long, default_value = "us-east-1", global = true)]
    region: String,
    /// A file with the access key id on its first line and the secret on its second.
    #[arg(long, value_name = "FILE", global = true)]
    credentials: Option<PathBuf>,
    /// Virtual-host requests (`bucket.host`) instead of path-style (`host/bucket`).
    #[arg(long, global = true)]
    virtual_host: bool,
    /// For an https endpoint signed by a private CA: its certificate (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    ca: Option<PathBuf>,
}

/// `kdump fleet …`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    bucket: Bucket,
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Signatures with their count, hosts, kernels and first/last time seen.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The crashes of one signature, and one of them in detail (panic, backtrace, log tail).
    Show {
        /// The signature (or a unique start of it).
        signature: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download one crash's file (the dump by default): `kdump fleet fetch HOST/TIME DEST`.
    Fetch {
        /// `HOST/TIME`, as `list` and `show` print it.
        crash: String,
        /// Where to write it.
        dest: PathBuf,
        /// Which file of the crash.
        #[arg(long, default_value = "vmcore")]
        file: String,
    },
    /// Write one static HTML page: a table of signatures, a chart of crashes per day.
    Report {
        /// The page to write.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
    /// Publish a crash directory from a local target (as `kdump setup` writes them) to the
    /// bucket: the small files, the index entry, then the dump.
    Add {
        /// The crash directory (with info.json; dmesg.txt, kdump.log and vmcore when present).
        dir: PathBuf,
    },
}

pub fn run(a: &FleetArgs) -> anyhow::Result<()> {
    let (client, url) = connect(&a.bucket)?;
    match &a.command {
        FleetCommand::List { json } => list(&client, &url, *json),
        FleetCommand::Show { signature, json } => show(&client, &url, signature, *json),
        FleetCommand::Fetch { crash, dest, file } => fetch(&client, &url, crash, file, dest),
        FleetCommand::Report { html } => report(&client, &url, html),
        FleetCommand::Add { dir } => add(&client, &url, dir),
    }
}

fn connect(b: &Bucket) -> anyhow::Result<(Client, S3Url)> {
    if let Some(path) = &b.config {
        let (cfg, _) = crate::service::load_config(path)?;
        let kdump_service::Destination::S3(s3) = cfg.destination()? else {
            bail!("{}: target.url is not an s3:// bucket; give --url, --endpoint and --credentials", path.display());
        };
        let (client, _) = crate::s3_target::load(&s3, Duration::from_secs(30))?;
        return Ok((client, s3.url));
    }
    let url = b.url.as_deref().context("--url s3://BUCKET/PREFIX (or --config FILE) is needed")?;
    let url = S3Url::parse(url)?;
    let endpoint = b.endpoint.clone().context("--endpoint http(s)://HOST[:PORT] is needed")?;
    let path = b.credentials.as_deref().context("--credentials FILE is needed (access key id, then secret)")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let credentials = Credentials::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let ca_pem = match &b.ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let client = Client::new(ClientConfig {
        endpoint,
        ca_pem,
        region: b.region.clone(),
        bucket: url.bucket.clone(),
        addressing: if b.virtual_host { Addressing::VirtualHost } else { Addressing::Path },
        credentials,
        timeout: Duration::from_secs(30),
        address: None,
    })?;
    Ok((client, url))
}

/// Every crash the index names (LIST requests only, 1,000 keys each).
fn crashes(client: &Client, url: &S3Url) -> anyhow::Result<Vec<CrashRef>> {
    let index = format!("{}/", url.key(INDEX));
    let entries = RetryPolicy::default().run(|| client.list_objects(&index, None)).context("cannot list the index")?;
    Ok(entries.iter().filter_map(|e| CrashRef::from_index_key(&url.prefix, &e.key)).collect())
}

/// One crash's `info.json`, parsed.
fn info(client: &Client, url: &S3Url, folder: &str) -> anyhow::Result<serde_json::Value> {
    let mut body = Vec::new();
    let key = url.key(&format!("{folder}/info.json"));
    RetryPolicy::default()
        .run(|| {
            body.clear();
            client.get_object(&key, &mut body)
        })
        .with_context(|| format!("cannot read {key}"))?;
    serde_json::from_slice(&body).with_context(|| format!("{key} is not JSON"))
}

/// Summaries with their titles (one `info.json` per signature).
fn summaries(client: &Client, url: &S3Url, crashes: &[CrashRef]) -> Vec<SignatureSummary> {
    let mut out = summarize(crashes);
    for s in &mut out {
        s.title = info(client, url, &s.latest)
            .ok()
            .and_then(|v| v.pointer("/signature/title").and_then(|t| t.as_str()).map(str::to_string));
    }
    out
}

fn list(client: &Client, url: &S3Url, json: bool) -> anyhow::Result<()> {
    let crashes = crashes(client, url)?;
    let sums = summaries(client, url, &crashes);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &sums)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "{} crashes, {} signatures", crashes.len(), sums.len())?;
    writeln!(out, "{:<16} {:>6} {:>6}  {:<19}  {:<19}  TITLE", "SIGNATURE", "COUNT", "HOSTS", "FIRST", "LAST")?;
    for s in &sums {
        writeln!(
            out,
            "{:<16} {:>6} {:>6}  {:<19}  {:<19}  {}",
            s.signature,
            s.count,
            s.hosts.len(),
            s.first_seen,
            s.last_seen,
            s.title.as_deref().unwrap_or("?")
        )?;
    }
    Ok(())
}

fn show(client: &Client, url: &S3Url, wanted: &str, json: bool) -> anyhow::Result<()> {
    let all = crashes(client, url)?;
    let ids: std::collections::BTreeSet<&str> =
        all.iter().map(|c| c.signature.as_str()).filter(|s| s.starts_with(wanted)).collect();
    let id = match ids.len() {
        1 => ids.into_iter().next().unwrap_or_default().to_string(),
        0 => bail!("no crash has a signature starting with {wanted:?}: see kdump fleet list"),
        n => bail!("{n} signatures start with {wanted:?}: give more of it"),
    };
    let mut of: Vec<&CrashRef> = all.iter().filter(|c| c.signature == id).collect();
    of.sort_by(|a, b| b.time.cmp(&a.time));
    let latest = of[0];
    let folder = format!("{}/{}", latest.host, latest.time);
    let detail = info(client, url, &folder).ok();
    let mut log = Vec::new();
    let _ = client.get_object(&url.key(&format!("{folder}/dmesg.txt")), &mut log);
    let log = String::from_utf8_lossy(&log);
    let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "signature": id,
            "crashes": of,
            "representative": folder,
            "info": detail,
            "log_tail": tail,
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    let s = |p: &str| detail.as_ref().and_then(|v| v.pointer(p)).and_then(|v| v.as_str()).unwrap_or("?").to_string();
    writeln!(out, "signature {id}: {}", s("/signature/title"))?;
    writeln!(out, "{} crashes:", of.len())?;
    for c in &of {
        writeln!(out, "  {}/{}  {}", c.host, c.time, c.release)?;
    }
    writeln!(out, "\nthe latest, {folder}:\npanic:  {}", s("/panic"))?;
    writeln!(out, "backtrace:")?;
    if let Some(frames) = detail.as_ref().and_then(|v| v.pointer("/backtrace")).and_then(|v| v.as_array()) {
        for f in frames {
            let sym = f.pointer("/symbol").and_then(|v| v.as_str()).unwrap_or("?");
            writeln!(out, "  {sym}")?;
        }
    }
    writeln!(out, "log (last {} lines):", tail.len())?;
    for l in tail {
        writeln!(out, "  {l}")?;
    }
    Ok(())
}

fn fetch(client: &Client, url: &S3Url, crash: &str, file: &str, dest: &Path) -> anyhow::Result<()> {
    if crash.split('/').count() != 2 || file.contains('/') {
        bail!("give the crash as HOST/TIME (as kdump fleet list prints it) and a file name");
    }
    let key = url.key(&format!("{crash}/{file}"));
    let partial = kdump_collector::save::partial_name(dest);
    let mut out = kdump_collector::save::create_new(&partial, false)?;
    let n = client.get_object(&key, &mut out).with_context(|| format!("cannot download {key}"))?;
    out.sync_all()?;
    kdump_collector::save::commit(&partial, dest)?;
    eprintln!("kdump: {key}: {n} bytes to {}", dest.display());
    Ok(())
}

fn report(client: &Client, url: &S3Url, html: &Path) -> anyhow::Result<()> {
    let crashes = crashes(client, url)?;
    let sums = summaries(client, url, &crashes);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let (y, mo, d, h, mi, s) = kdump_service::naming::civil(now);
    let page =
        html_report(&sums, &crashes, &format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC from {}", url.bucket));
    std::fs::write(html, page).with_context(|| format!("cannot write {}", html.display()))?;
    eprintln!("kdump: {} crashes, {} signatures: {}", crashes.len(), sums.len(), html.display());
    Ok(())
}

fn add(client: &Client, url: &S3Url, dir: &Path) -> anyhow::Result<()> {
    let info_path = dir.join("info.json");
    let text = std::fs::read(&info_path).with_context(|| format!("cannot read {}", info_path.display()))?;
    let crash = crate::s3_target::crash_ref(&text).with_context(|| {
        format!("{} has no signature or crash_time: write it with this kdump's info --json", info_path.display())
    })?;
    // The small files first: the crash is visible even if the dump does not get there.
    let mut small: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    small.insert("info.json", text);
    for name in ["dmesg.txt", "kdump.log"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            small.insert(name, b);
        }
    }
    let files: Vec<(&str, &[u8])> = small.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let folder = crate::s3_target::publish_small(client, url, &crash, &files, RetryPolicy::default())?;
    eprintln!("kdump: {folder}: {} small files, indexed under signature {}", small.len(), crash.signature);
    let vmcore = dir.join("vmcore");
    let Ok(mut file) = std::fs::File::open(&vmcore) else {
        eprintln!("kdump: {} has no vmcore: only the report is published", dir.display());
        return Ok(());
    };
    let len = file.metadata()?.len();
    let key = format!("{folder}/vmcore");
    let mut sink = MultipartSink::start(client.clone(), &key, MultipartConfig::for_estimated_size(len))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    let copied = loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(anyhow::Error::from(e).context(format!("cannot read {}", vmcore.display()))),
        };
        if let Err(e) = kdump_dumpfile::WriteAt::write_at(&mut sink, at, &buf[..n]) {
            break Err(anyhow::Error::from(e).context(format!("cannot upload {key}")));
        }
        at += n as u64;
    };
    match copied {
        Ok(()) => {
            sink.complete().with_context(|| format!("cannot complete {key}"))?;
            eprintln!("kdump: {key}: {at} bytes");
            Ok(())
        }
        Err(e) => {
            let _ = sink.abort(&format!("{e:#}"));
            Err(e)
        }
    }
}
