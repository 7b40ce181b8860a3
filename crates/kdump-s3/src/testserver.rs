//! Test support (feature `test-server`): a real S3 server for tests, SeaweedFS's `weed mini`
//! (master, volume, filer and S3 gateway in one process), on 127.0.0.1 only, every port chosen
//! free, its data and log in a directory the caller owns; stopped when dropped. With TLS it
//! also serves https with a certificate for 127.0.0.1 from a private CA made on the spot.
//!
//! The `weed` binary: `$KDUMP_WEED`, else `target/tools/seaweedfs/bin/weed` (installed by
//! scripts/seaweedfs.sh), else `weed` on `PATH`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Addressing, Client, ClientConfig};
use crate::sigv4::Credentials;

/// A running SeaweedFS; see the [module docs](self).
#[derive(Debug)]
pub struct SeaweedFs {
    child: Child,
    dir: PathBuf,
    args: Vec<String>,
    bucket: String,
    s3_port: u16,
    https: Option<(u16, Vec<u8>)>,
}

/// The `weed` binary to run.
pub fn weed_binary() -> PathBuf {
    if let Some(w) = std::env::var_os("KDUMP_WEED") {
        return w.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/seaweedfs/bin/weed");
    if venv.exists() { venv } else { "weed".into() }
}

fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let ls = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    ls.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// A private CA and a certificate it signed for 127.0.0.1 and localhost, written to `dir`;
/// returns the CA's PEM and the paths of the certificate and key.
fn private_ca(dir: &Path) -> Result<(Vec<u8>, PathBuf, PathBuf), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let e = |e: rcgen::Error| format!("making the test CA: {e}");
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "kdump test CA");
    let ca = ca.self_signed(&ca_key).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(e)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(e)?;
    let (c, k) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&c, cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&k, key.serialize_pem()).map_err(|e| e.to_string())?;
    Ok((ca.pem().into_bytes(), c, k))
}

impl SeaweedFs {
    /// The access key id of the server's one identity (an admin).
    pub const ACCESS_KEY_ID: &'static str = "KDUMPTESTKEY";
    /// Its secret.
    pub const SECRET: &'static str = "kdump-test-secret/with+signs";

    /// Starts a server keeping its data in `dir`, with `bucket` created, and waits until it
    /// stores and returns an object. `tls` adds an https port.
    pub fn start(dir: &Path, bucket: &str, tls: bool) -> Result<Self, String> {
        let p = free_ports(11).map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        let ident = format!(
            r#"{{"identities":[{{"name":"kdump","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#,
            Self::ACCESS_KEY_ID,
            Self::SECRET
        );
        std::fs::write(dir.join("identities.json"), ident).map_err(|e| e.to_string())?;
        let mut args: Vec<String> = vec![
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            "-admin.ui=false".into(),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
            "-webdav=false".into(),
            // It would report statistics to an outside server by default: only 127.0.0.1 here.
            "-master.telemetry=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-s3.config={}", dir.join("identities.json").display()),
            format!("-bucket={bucket}"),
            // Virtual-host requests name the bucket in the Host header: bucket.127.0.0.1:port.
            "-s3.domainName=127.0.0.1".into(),
        ];
        let mut https = None;
        if tls {
            let (ca, cert, key) = private_ca(dir)?;
            args.push(format!("-s3.port.https={}", p[10]));
            args.push(format!("-s3.cert.file={}", cert.display()));
            args.push(format!("-s3.key.file={}", key.display()));
            https = Some((p[10], ca));
        }
        let child = Self::spawn(dir, &args)?;
        let mut s = SeaweedFs { child, dir: dir.to_path_buf(), args, bucket: bucket.to_string(), s3_port: p[6], https };
        s.wait_ready()?;
        Ok(s)
    }

    fn spawn(dir: &Path, args: &[String]) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("weed.log"))
            .map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        Command::new(weed_binary())
            .arg("mini")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}): install SeaweedFS with scripts/seaweedfs.sh (run by scripts/deps.sh)",
                    weed_binary().display()
                )
            })
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let t = Instant::now();
        let config = if self.https.is_some() { self.tls_client_config(true) } else { self.client_config() };
        let c = Client::new(config).map_err(|e| e.to_string())?;
        loop {
            // Listing needs the filer; reading and writing also the master and volume server.
            if c.check_writable(".kdump-ready-probe").is_ok() {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "weed exited ({st}); its log:\n{}",
                    std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
                ));
            }
            if t.elapsed() > Duration::from_secs(90) {
                return Err(format!("SeaweedFS not ready in 90 s; see {}", self.dir.join("weed.log").display()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The S3 port (http) on 127.0.0.1.
    pub fn s3_port(&self) -> u16 {
        self.s3_port
    }

    /// The https port, when started with TLS.
    pub fn https_port(&self) -> Option<u16> {
        self.https.as_ref().map(|h| h.0)
    }

    /// Stops the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills and starts it again on the same ports and data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.child = Self::spawn(&self.dir, &self.args)?;
        self.wait_ready()
    }

    /// A client configuration for the http port, path-style, region `us-east-1`.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            endpoint: format!("http://127.0.0.1:{}", self.s3_port),
            ca_pem: None,
            region: "us-east-1".into(),
            bucket: self.bucket.clone(),
            addressing: Addressing::Path,
            credentials: Credentials {
                access_key_id: Self::ACCESS_KEY_ID.into(),
                secret_access_key: Self::SECRET.into(),
            },
            timeout: Duration::from_secs(20),
            address: None,
        }
    }

    /// The https port's configuration, trusting the private CA, or (without `with_ca`) only
    /// the built-in roots. Panics when started without TLS.
    pub fn tls_client_config(&self, with_ca: bool) -> ClientConfig {
        let Some((port, ca)) = self.https.clone() else { panic!("SeaweedFs started without TLS") };
        ClientConfig {
            endpoint: format!("https://127.0.0.1:{port}"),
            ca_pem: with_ca.then_some(ca),
            ..self.client_config()
        }
    }

    /// A client for the http port.
    pub fn client(&self) -> Client {
        match Client::new(self.client_config()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.kill();
    }
}
