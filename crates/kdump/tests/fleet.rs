//! `kdump fleet` against a real S3 server (SeaweedFS on 127.0.0.1): crash directories published
//! with `add` are listed by signature, shown, fetched byte for byte and drawn in the HTML
//! report; and a bucket holding 10,000 crashes is listed from its index alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_s3::testserver::SeaweedFs;
use kdump_service::fleet::CrashRef;

struct Fleet {
    _server: SeaweedFs,
    endpoint: String,
    credentials: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(bucket: &str) -> (Fleet, kdump_s3::Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = SeaweedFs::start(&dir.path().join("weed"), bucket, false).unwrap_or_else(|e| panic!("{e}"));
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, format!("{}\n{}\n", SeaweedFs::ACCESS_KEY_ID, SeaweedFs::SECRET)).unwrap();
    let endpoint = server.client_config().endpoint;
    let client = server.client();
    (Fleet { _server: server, endpoint, credentials, _dir: dir }, client)
}

impl Fleet {
    fn kdump(&self, url: &str, args: &[&str]) -> std::process::Output {
        let out = Command::new(env!("CARGO_BIN_EXE_kdump"))
            .arg("fleet")
            .args(args)
            .args(["--url", url, "--endpoint", &self.endpoint, "--credentials"])
            .arg(&self.credentials)
            .output()
            .unwrap();
        assert!(out.status.success(), "kdump fleet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

/// A crash directory as the capture init writes it.
fn crash_dir(root: &Path, name: &str, host: &str, time: &str, sig: &str, title: &str, vmcore: &[u8]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let info = serde_json::json!({
        "kernel": {"release": "6.1.0-57-cloud-amd64", "nodename": host},
        "crash_time": time,
        "panic": title,
        "signature": {"id": sig, "title": title, "frames": []},
        "backtrace": [{"address": "0xffffffff81000000", "symbol": "sysrq_handle_crash+0x16/0x20", "reliable": true}],
    });
    std::fs::write(dir.join("info.json"), serde_json::to_vec(&info).unwrap()).unwrap();
    std::fs::write(dir.join("dmesg.txt"), format!("[    1.000000] {title}\n")).unwrap();
    std::fs::write(dir.join("vmcore"), vmcore).unwrap();
    dir
}

#[test]
fn crashes_published_by_add_are_listed_by_signature_shown_fetched_and_reported() {
    let (fleet, _client) = start("fleet");
    let url = "s3://fleet/prod";
    let tmp = tempfile::tempdir().unwrap();
    // Two kinds of crash on three hosts; one dump larger than a part (5 MiB).
    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let dirs = [
        crash_dir(
            tmp.path(),
            "a",
            "web-1",
            "2026-11-30 10:00:00 UTC",
            "1111aaaa2222bbbb",
            "sysrq triggered crash",
            b"dump a",
        ),
        crash_dir(
            tmp.path(),
            "b",
            "web-2",
            "2026-12-01 09:00:00 UTC",
            "1111aaaa2222bbbb",
            "sysrq triggered crash",
            &big,
        ),
        crash_dir(tmp.path(), "c", "db-1", "2026-12-01 11:00:00 UTC", "3333cccc4444dddd", "Out of memory", b"dump c"),
    ];
    for d in &dirs {
        fleet.kdump(url, &["add", d.to_str().unwrap()]);
    }
    let list: serde_json::Value = serde_json::from_slice(&fleet.kdump(url, &["list", "--json"]).stdout).unwrap();
    let rows: Vec<(String, u64, usize, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["signature"].as_str().unwrap().to_string(),
                s["count"].as_u64().unwrap(),
                s["hosts"].as_array().unwrap().len(),
                s["title"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("1111aaaa2222bbbb".to_string(), 2, 2, "sysrq triggered crash".to_string()),
            ("3333cccc4444dddd".to_string(), 1, 1, "Out of memory".to_string())
        ]
    );
    assert_eq!(list[0]["first_seen"], "2026-11-30-10:00:00");
    assert_eq!(list[0]["last_seen"], "2026-12-01-09:00:00");
    // The whole answer, field for field (docs/JSON.md): tests/fixtures/fleet/list.json;
    // `UPDATE_GOLDEN=1` rewrites it (review the diff).
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fleet/list.json");
    let text = serde_json::to_string_pretty(&list).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    assert_eq!(text, expected, "kdump fleet list --json differs from {}", golden.display());

    let show = String::from_utf8(fleet.kdump(url, &["show", "1111"]).stdout).unwrap();
    assert!(show.contains("2 crashes:") && show.contains("web-2/2026-12-01-09:00:00"), "{show}");
    assert!(show.contains("sysrq_handle_crash+0x16/0x20") && show.contains("sysrq triggered crash"), "{show}");

    let dest = tmp.path().join("fetched");
    fleet.kdump(url, &["fetch", "web-2/2026-12-01-09:00:00", dest.to_str().unwrap()]);
    assert!(std::fs::read(&dest).unwrap() == big, "the dump comes back byte for byte");

    let page = tmp.path().join("report.html");
    fleet.kdump(url, &["report", "--html", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg id=\"chart\"") && html.contains("Out of memory") && html.contains("<td>2</td>"));
    assert_eq!(html.matches("<rect ").count(), 3, "2026-11-30: one signature; 2026-12-01: two");

    // The page as a browser draws it: headless Chromium's screenshot shows the chart's bars
    // and the table's swatches in both signatures' colours, and the table's text.
    let shot = tmp.path().join("report.png");
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", tmp.path().join("chromium").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1100,700", "--hide-scrollbars"])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (Debian package chromium) runs");
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let pixels = rgb_pixels(&shot);
    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| **p == rgb).count();
    let (first, second) = (count([0x1f, 0x77, 0xb4]), count([0xff, 0x7f, 0x0e]));
    // Bars are 24 px wide and up to 200 px high; a swatch is 12 × 12.
    assert!(first > 24 * 50 && second > 24 * 50, "chart colours: {first} and {second} pixels");
    let dark = pixels.iter().filter(|p| p.iter().all(|&c| c < 80)).count();
    assert!(dark > 2000, "text: {dark} dark pixels");
}

/// The RGB pixels of a PNG.
fn rgb_pixels(path: &Path) -> Vec<[u8; 3]> {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    buf[..info.buffer_size()].chunks(step).map(|p| [p[0], p[1], p[2]]).collect()
}

#[test]
fn ten_thousand_crashes_are_listed_from_the_index_alone() {
    let (fleet, client) = start("big");
    let url = "s3://big/fleet";
    // 10,000 crashes of 7 signatures on 500 hosts over 30 days: index entries only (no
    // info.json: titles are then unknown, and nothing but LIST requests can answer).
    let crashes: Vec<CrashRef> = (0..10_000u32)
        .map(|i| {
            let sig = format!("{:016x}", u64::from(i % 7) * 0x1111_1111);
            let time = format!("2026-11-{:02}-{:02}:{:02}:{:02}", 1 + i % 30, i % 24, i % 60, (i / 60) % 60);
            CrashRef::new(&sig, &time, &format!("host-{}", i % 500), "6.1.0-57-cloud-amd64")
        })
        .collect();
    std::thread::scope(|s| {
        for chunk in crashes.chunks(1250) {
            let client = client.clone();
            s.spawn(move || {
                for c in chunk {
                    client.put_object(&c.index_key("fleet"), b"").unwrap();
                }
            });
        }
    });
    let list: serde_json::Value = serde_json::from_slice(&fleet.kdump(url, &["list", "--json"]).stdout).unwrap();
    let sigs = list.as_array().unwrap();
    assert_eq!(sigs.len(), 7);
    assert_eq!(sigs.iter().map(|s| s["count"].as_u64().unwrap()).sum::<u64>(), 10_000);
    assert!(sigs.iter().all(|s| s["hosts"].as_array().unwrap().len() <= 500));
    assert_eq!(sigs[0]["count"], 1429, "10,000 = 6 × 1,429 + 1,426: the first six signatures first");
}

/// A config whose target is the fleet's bucket, with `credentials`.
fn s3_config(dir: &Path, endpoint: &str, credentials: &Path) -> PathBuf {
    let path = dir.join("kdump.toml");
    let text = format!(
        "[target]\nurl = \"s3://fleet/prod\"\nendpoint = \"{endpoint}\"\ncredentials = \"{}\"\n\
         [network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n",
        credentials.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn kdump(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kdump")).args(args).arg("--config").arg(config).output().unwrap()
}

#[test]
fn check_target_and_fleet_take_the_bucket_from_the_config() {
    let (fleet, client) = start("fleet");
    let tmp = tempfile::tempdir().unwrap();
    let config = s3_config(tmp.path(), &fleet.endpoint, &fleet.credentials);
    let out = kdump(&["check-target"], &config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ok          reachable, credentials accepted, bucket fleet writable"), "{text}");
    assert!(client.list_objects("prod/", None).unwrap().is_empty(), "the probe object is removed");

    let dir = crash_dir(tmp.path(), "a", "db-1", "2026-12-01 10:00:00 UTC", "3333cccc4444dddd", "oops", b"dump");
    let out = kdump(&["fleet", "add", dir.to_str().unwrap()], &config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kdump(&["fleet", "list", "--json"], &config);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["signature"], "3333cccc4444dddd");
    assert_eq!(list[0]["count"], 1);

    // Wrong secret: refused with the fix, exit 1.
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, format!("{}\nnot-the-secret\n", SeaweedFs::ACCESS_KEY_ID)).unwrap();
    let out = kdump(&["check-target"], &s3_config(tmp.path(), &fleet.endpoint, &wrong));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("PROBLEM     the S3 server refused the credentials"), "{text}");
    assert!(text.contains("check the credentials file"), "{text}");
    // No server there: said so.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = kdump(&["check-target"], &s3_config(tmp.path(), &format!("http://127.0.0.1:{port}"), &fleet.credentials));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("connection to 127.0.0.1:") && text.contains("refused"), "{text}");
    // A config whose target is not a bucket.
    let disk = tmp.path().join("disk.toml");
    std::fs::write(&disk, "[target]\ndevice = \"LABEL=crash\"\n").unwrap();
    let out = kdump(&["fleet", "list"], &disk);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an s3:// bucket"));
}
