//! The S3 client: endpoint and bucket addressing, signed requests, and the operations a dump
//! upload and `kdump fleet` need.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Result, S3Error};
use crate::http::{self, HostPort, Request, Response};
use crate::sigv4::{self, Credentials, Scope, SignableRequest};
use crate::xml::{self, ListPage, ObjectEntry};

/// Largest XML answer read (a 1,000-key listing is about 300 KiB).
const MAX_XML: usize = 16 << 20;

/// How the bucket is named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `http://endpoint/bucket/key`: works with any server and any bucket name.
    Path,
    /// `http://bucket.endpoint/key`: AWS's default; the server must serve the bucket's host name.
    VirtualHost,
}

/// `s3://bucket/prefix` split into its bucket and key prefix (no leading or trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket.
    pub bucket: String,
    /// Key prefix, possibly empty.
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| S3Error::Config(format!("{url:?} is not an s3://bucket/prefix URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        Ok(S3Url { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
    }

    /// `prefix/name` (or `name` with no prefix).
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}/{}", self.prefix, name) }
    }
}

fn check_bucket(bucket: &str) -> Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(S3Error::Config(format!(
            "bucket name {bucket:?}: 3 to 63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
        )))
    }
}

/// A parsed endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host and port (80 or 443 when the URL has none).
    pub host_port: HostPort,
    /// `https://`: TLS.
    pub https: bool,
}

/// Parses an endpoint URL, `http://host[:port][/]` or `https://host[:port][/]`.
pub fn parse_endpoint(url: &str) -> Result<Endpoint> {
    let (rest, https) = if let Some(r) = url.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, false)
    } else {
        return Err(S3Error::Config(format!("endpoint {url:?} must start with http:// or https://")));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(S3Error::Config(format!("endpoint {url:?}: expected http://host[:port] with no path")));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| S3Error::Config(format!("endpoint {url:?}: unclosed [")))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| S3Error::Config(format!("endpoint {url:?}: bad port {p:?}")))?,
        None if https => 443,
        None => 80,
    };
    if host.is_empty() {
        return Err(S3Error::Config(format!("endpoint {url:?} has no host")));
    }
    Ok(Endpoint { host_port: HostPort { host: host.to_string(), port, address: None }, https })
}

/// Everything a [`Client`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host[:port]` or `https://host[:port]`.
    pub endpoint: String,
    /// For `https://`: the PEM certificate(s) of the CA that signed the endpoint's certificate;
    /// `None` trusts Mozilla's roots (built in), as for AWS.
    pub ca_pem: Option<Vec<u8>>,
    /// Region the signature is scoped to (`us-east-1` for most non-AWS servers).
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Path-style or virtual-host requests.
    pub addressing: Addressing,
    /// The key pair.
    pub credentials: Credentials,
    /// Timeout of each connect, send and receive.
    pub timeout: Duration,
    /// Connect to this address instead of resolving the endpoint's host name.
    pub address: Option<std::net::IpAddr>,
}

/// How often and how patiently to retry a request that failed for a transient reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each next one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 4, first_backoff: Duration::from_millis(500) }
    }
}

impl RetryPolicy {
    /// Runs `op` until it succeeds, fails for a reason that would repeat, or the attempts are
    /// used up; returns the last error.
    pub fn run<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let mut wait = self.first_backoff;
        let mut attempt = 1;
        loop {
            match op() {
                Err(e) if e.is_transient() && attempt < self.attempts.max(1) => {
                    std::thread::sleep(wait);
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

/// A blocking S3 client for one bucket.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    cfg: ClientConfig,
    /// Idle kept-alive connections, shared by the clones (the multipart upload threads).
    pool: Arc<http::Pool>,
}

impl Client {
    /// A client; checks the endpoint and bucket name (no request is made).
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let mut endpoint = parse_endpoint(&cfg.endpoint)?;
        endpoint.host_port.address = cfg.address;
        check_bucket(&cfg.bucket)?;
        if cfg.region.is_empty() || cfg.region.contains(['/', ' ']) {
            return Err(S3Error::Config(format!("region {:?}", cfg.region)));
        }
        let tls = match (endpoint.https, &cfg.ca_pem) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(S3Error::Config(format!(
                    "a CA file is given, but endpoint {} is not https://",
                    cfg.endpoint
                )));
            }
            (true, ca) => Some(http::tls_config(ca.as_deref()).map_err(S3Error::Config)?),
        };
        Ok(Client { endpoint, tls, cfg, pool: Arc::default() })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.cfg.bucket
    }

    /// `host:port` of the endpoint.
    pub fn endpoint(&self) -> &HostPort {
        &self.endpoint.host_port
    }

    /// Host header and encoded path of `key` ("" for the bucket itself).
    pub fn host_and_path(&self, key: &str) -> (String, String) {
        let ep = &self.endpoint.host_port;
        let default_port = if self.endpoint.https { 443 } else { 80 };
        let hp = if ep.port == default_port { ep.host.clone() } else { ep.to_string() };
        match self.cfg.addressing {
            Addressing::Path if key.is_empty() => (hp, sigv4::encode_path(&self.cfg.bucket)),
            Addressing::Path => (hp, sigv4::encode_path(&format!("{}/{}", self.cfg.bucket, key))),
            Addressing::VirtualHost => (format!("{}.{}", self.cfg.bucket, hp), sigv4::encode_path(key)),
        }
    }

    /// The headers of a signed request at `unix_time` (host, x-amz-date,
    /// x-amz-content-sha256, the extra ones, authorization).
    pub fn signed_headers(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        payload_hash: &str,
        unix_time: u64,
    ) -> (String, Vec<(String, String)>) {
        let (host, path) = self.host_and_path(key);
        let amz_date = sigv4::amz_date(unix_time);
        let mut headers = vec![
            ("Host".to_string(), host),
            ("x-amz-date".to_string(), amz_date.clone()),
            ("x-amz-content-sha256".to_string(), payload_hash.to_string()),
        ];
        headers.extend(extra.iter().cloned());
        let scope = Scope { amz_date: &amz_date, region: &self.cfg.region, service: "s3" };
        let req = SignableRequest { method, path: &path, query, headers: &headers, payload_hash };
        let auth = sigv4::authorization(&self.cfg.credentials, &scope, &req);
        headers.push(("Authorization".to_string(), auth));
        let mut target = path;
        if !query.is_empty() {
            target.push('?');
            target.push_str(&sigv4::canonical_query(query));
        }
        (target, headers)
    }

    /// Sends a signed request; a non-2xx answer becomes its typed error.
    fn call(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        body: &[u8],
    ) -> Result<Response> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (target, headers) = self.signed_headers(method, key, query, extra, &sigv4::payload_hash(body), now);
        let tls = self.tls.as_ref().map(|config| {
            // The certificate must name the host the request is for (bucket.host with
            // virtual-host addressing).
            let host = match self.cfg.addressing {
                Addressing::Path => self.endpoint.host_port.host.clone(),
                Addressing::VirtualHost => format!("{}.{}", self.cfg.bucket, self.endpoint.host_port.host),
            };
            http::Tls { config: Arc::clone(config), server_name: host }
        });
        let req = Request { method, target, headers, body };
        let resp = http::send(&self.endpoint.host_port, tls.as_ref(), self.cfg.timeout, &req, Some(&self.pool))?;
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        let status = resp.status;
        let text = self.read_xml(resp).unwrap_or_default();
        Err(S3Error::from_response(status, xml::parse_error(&text), &self.cfg.bucket, key))
    }

    /// Reads the (bounded) rest of an answer and keeps its connection for the next request.
    fn read_xml(&self, mut resp: Response) -> Result<Vec<u8>> {
        let body = resp.body.read_bounded(MAX_XML).map_err(|e| self.net("reading the answer", e))?;
        if let Some(conn) = resp.into_idle() {
            self.pool.put(conn);
        }
        Ok(body)
    }

    fn net(&self, what: &'static str, e: io::Error) -> S3Error {
        http::net_error(&self.endpoint.host_port, what, self.cfg.timeout, e)
    }

    fn protocol(&self, detail: String) -> S3Error {
        S3Error::Protocol { endpoint: self.endpoint.host_port.to_string(), detail }
    }

    /// Stores a whole object (PutObject).
    pub fn put_object(&self, key: &str, body: &[u8]) -> Result<()> {
        let r = self.call("PUT", key, &[], &[], body)?;
        let _ = self.read_xml(r);
        Ok(())
    }

    /// Streams an object into `out` (GetObject); returns its size.
    pub fn get_object(&self, key: &str, out: &mut dyn Write) -> Result<u64> {
        let mut r = self.call("GET", key, &[], &[], b"")?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = r.body.read(&mut buf).map_err(|e| self.net("receiving the object", e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| S3Error::Sink(format!("writing the downloaded object: {e}")))?;
            total += n as u64;
        }
        if let Some(conn) = r.into_idle() {
            self.pool.put(conn);
        }
        Ok(total)
    }

    /// Removes an object (DeleteObject); a missing object is not an error.
    pub fn delete_object(&self, key: &str) -> Result<()> {
        match self.call("DELETE", key, &[], &[], b"") {
            Ok(r) => {
                let _ = self.read_xml(r);
                Ok(())
            }
            Err(S3Error::NoSuchKey { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One page of ListObjectsV2.
    pub fn list_objects_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ListPage> {
        self.list_page(prefix, None, continuation, max_keys)
    }

    /// The distinct next path levels under `prefix` (`prefix` ends with `/`): ListObjectsV2
    /// with the delimiter `/`, every page. For `fleet/` these are `fleet/<host>/`.
    pub fn list_prefixes(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(prefix, Some("/"), token.as_deref(), None)?;
            all.extend(page.prefixes);
            match page.next_continuation_token {
                Some(t) if token.as_deref() == Some(t.as_str()) => {
                    return Err(self.protocol("ListObjectsV2 returned the same continuation token twice".into()));
                }
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }

    fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ListPage> {
        let mut q = vec![("list-type".to_string(), "2".to_string()), ("prefix".to_string(), prefix.to_string())];
        if let Some(d) = delimiter {
            q.push(("delimiter".to_string(), d.to_string()));
        }
        if let Some(t) = continuation {
            q.push(("continuation-token".to_string(), t.to_string()));
        }
        if let Some(m) = max_keys {
            q.push(("max-keys".to_string(), m.to_string()));
        }
        let r = self.call("GET", "", &q, &[], b"")?;
        let body = self.read_xml(r)?;
        xml::parse_list_objects(&body).map_err(|e| self.protocol(format!("ListObjectsV2: {e}")))
    }

    /// Every object under `prefix`, following continuation tokens page by page.
    pub fn list_objects(&self, prefix: &str, page_size: Option<u32>) -> Result<Vec<ObjectEntry>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_objects_page(prefix, token.as_deref(), page_size)?;
            all.extend(page.objects);
            match page.next_continuation_token {
                Some(t) if token.as_deref() == Some(t.as_str()) => {
                    return Err(self.protocol("ListObjectsV2 returned the same continuation token twice".into()));
                }
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }

    /// Starts a multipart upload; returns its upload id.
    pub fn create_multipart_upload(&self, key: &str) -> Result<String> {
        let r = self.call("POST", key, &[("uploads".into(), String::new())], &[], b"")?;
        let body = self.read_xml(r)?;
        xml::parse_upload_id(&body).map_err(|e| self.protocol(format!("CreateMultipartUpload: {e}")))
    }

    /// Uploads part `part_number` (1..=10,000); returns its ETag.
    pub fn upload_part(&self, key: &str, upload_id: &str, part_number: u32, body: &[u8]) -> Result<String> {
        let q = [("partNumber".to_string(), part_number.to_string()), ("uploadId".to_string(), upload_id.to_string())];
        let r = self.call("PUT", key, &q, &[], body)?;
        let etag = r.header("etag").map(str::to_string);
        let _ = self.read_xml(r);
        etag.ok_or_else(|| self.protocol(format!("UploadPart {part_number}: no ETag in the answer")))
    }

    /// Completes a multipart upload from (part number, ETag) pairs in ascending order.
    pub fn complete_multipart_upload(&self, key: &str, upload_id: &str, parts: &[(u32, String)]) -> Result<()> {
        let mut doc = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            doc.push_str(&format!("<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>", xml::escape(etag)));
        }
        doc.push_str("</CompleteMultipartUpload>");
        let q = [("uploadId".to_string(), upload_id.to_string())];
        let r = self.call("POST", key, &q, &[], doc.as_bytes())?;
        // S3 may answer 200 and report the failure in the body.
        let body = self.read_xml(r)?;
        if let Some(e) = xml::parse_error(&body) {
            return Err(S3Error::from_response(500, Some(e), &self.cfg.bucket, key));
        }
        Ok(())
    }

    /// Abandons a multipart upload: its parts are deleted and no object appears.
    pub fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let q = [("uploadId".to_string(), upload_id.to_string())];
        let r = self.call("DELETE", key, &q, &[], b"")?;
        let _ = self.read_xml(r);
        Ok(())
    }

    /// The multipart uploads in progress under `prefix`, as (key, upload id).
    pub fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let q = [("uploads".to_string(), String::new()), ("prefix".to_string(), prefix.to_string())];
        let r = self.call("GET", "", &q, &[], b"")?;
        let body = self.read_xml(r)?;
        xml::parse_uploads(&body).map_err(|e| self.protocol(format!("ListMultipartUploads: {e}")))
    }

    /// Checks that the bucket takes, returns and removes an object: a small test object under
    /// `key`, removed again. Each failure says what to fix.
    pub fn check_writable(&self, key: &str) -> Result<()> {
        let probe = b"kdump check-target probe\n";
        self.put_object(key, probe)?;
        let mut back = Vec::new();
        self.get_object(key, &mut back)?;
        self.delete_object(key)?;
        if back != probe {
            return Err(self.protocol("the test object read back differs from what was written".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn client(addressing: Addressing) -> Client {
        Client::new(ClientConfig {
            endpoint: "http://127.0.0.1:9000/".into(),
            ca_pem: None,
            region: "us-east-1".into(),
            bucket: "crash-dumps".into(),
            addressing,
            credentials: Credentials { access_key_id: "AK".into(), secret_access_key: "SK".into() },
            timeout: Duration::from_secs(5),
            address: None,
        })
        .unwrap()
    }

    #[test]
    fn endpoints() {
        let hp = |u: &str| parse_endpoint(u).map(|e| (e.host_port.host, e.host_port.port, e.https)).unwrap();
        assert_eq!(hp("http://127.0.0.1:8333"), ("127.0.0.1".into(), 8333, false));
        assert_eq!(hp("http://s3.local/"), ("s3.local".into(), 80, false));
        assert_eq!(hp("http://[::1]:9000"), ("::1".into(), 9000, false));
        assert_eq!(hp("https://s3.eu-west-1.amazonaws.com"), ("s3.eu-west-1.amazonaws.com".into(), 443, true));
        assert_eq!(hp("https://minio.lan:9000"), ("minio.lan".into(), 9000, true));
        for bad in ["ftp://x", "http://", "http://h:0", "http://h:99999", "http://h/path", "http://u@h"] {
            assert!(matches!(parse_endpoint(bad), Err(S3Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn s3_urls() {
        let u = S3Url::parse("s3://crash-dumps/fleet/a/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("crash-dumps", "fleet/a"));
        assert_eq!(u.key("h/t/vmcore"), "fleet/a/h/t/vmcore");
        assert_eq!(S3Url::parse("s3://bkt").unwrap().key("x"), "x");
        for bad in ["s3://", "s3://B", "http://b/p", "s3://-ab/p", "s3://a_b"] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addressing_styles() {
        let p = client(Addressing::Path);
        assert_eq!(
            p.host_and_path("h/2026 x/vmcore"),
            ("127.0.0.1:9000".into(), "/crash-dumps/h/2026%20x/vmcore".into())
        );
        assert_eq!(p.host_and_path(""), ("127.0.0.1:9000".into(), "/crash-dumps".into()));
        let v = client(Addressing::VirtualHost);
        assert_eq!(v.host_and_path("a/b"), ("crash-dumps.127.0.0.1:9000".into(), "/a/b".into()));
        let (target, headers) = v.signed_headers(
            "GET",
            "",
            &[("prefix".into(), "a b".into()), ("list-type".into(), "2".into())],
            &[],
            sigv4::EMPTY_PAYLOAD_SHA256,
            1_369_353_600,
        );
        assert_eq!(target, "/?list-type=2&prefix=a%20b");
        let auth = &headers.iter().find(|(k, _)| k == "Authorization").unwrap().1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="));
    }

    /// A server on 127.0.0.1 answering `200` with an empty body to every request; closes each
    /// connection after one answer (without saying so) when `close_each`. Returns the port and
    /// the count of connections accepted.
    fn empty_200_server(close_each: bool) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut w = conn;
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0u8; len];
                        r.read_exact(&mut body).unwrap();
                        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
                        if close_each {
                            return;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    fn local_client(port: u16) -> Client {
        Client::new(ClientConfig { endpoint: format!("http://127.0.0.1:{port}"), ..client(Addressing::Path).cfg })
            .unwrap()
    }

    #[test]
    fn connections_are_kept_alive_and_replaced_when_closed() {
        use std::sync::atomic::Ordering;
        let (port, accepted) = empty_200_server(false);
        let c = local_client(port);
        for i in 0..5 {
            c.put_object(&format!("k{i}"), b"body").unwrap();
        }
        c.delete_object("k0").unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // A server that closes after each answer: the idle connection is found closed and
        // replaced, transparently.
        let (port, accepted) = empty_200_server(true);
        let c = local_client(port);
        for i in 0..3 {
            c.put_object(&format!("k{i}"), b"body").unwrap();
            std::thread::sleep(Duration::from_millis(20)); // the close reaches us
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn retries_only_transient_errors() {
        let policy = RetryPolicy { attempts: 3, first_backoff: Duration::from_millis(1) };
        let mut n = 0;
        let r: Result<()> = policy.run(|| {
            n += 1;
            Err(S3Error::ConnectionRefused { endpoint: "x".into() })
        });
        assert!(r.is_err());
        assert_eq!(n, 3);
        let mut n = 0;
        let r: Result<()> = policy.run(|| {
            n += 1;
            Err(S3Error::NoSuchBucket { bucket: "b".into() })
        });
        assert!(matches!(r, Err(S3Error::NoSuchBucket { .. })));
        assert_eq!(n, 1);
    }
}
