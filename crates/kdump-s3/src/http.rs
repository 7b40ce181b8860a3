//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, plain or TLS (rustls):
//! connections kept alive in a small [`Pool`] and reused (a reused connection the server has
//! closed meanwhile is replaced by a new one, once), `Content-Length` request bodies, responses
//! with a length, chunked or read to the close; header sections and chunk lines bounded; every
//! socket operation under a timeout. The server's bytes are untrusted: malformed answers are
//! errors, never panics.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Result, S3Error};

/// Largest response header section accepted.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most response header fields accepted.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// Where requests go: a host (name or address) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The address to connect to instead of resolving `host` (the capture kernel has no
    /// resolver); `host` still names the server in the Host header and for TLS.
    pub address: Option<std::net::IpAddr>,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One request.
#[derive(Debug)]
pub struct Request<'a> {
    /// Method.
    pub method: &'a str,
    /// Encoded path with its query.
    pub target: String,
    /// Header fields (without `Content-Length` and `Connection`, which are added).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: &'a [u8],
}

/// A connection: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Conn {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// TLS settings of a connection: the rustls configuration (trusted roots) and the name the
/// certificate must carry.
#[derive(Debug, Clone)]
pub struct Tls {
    /// rustls client configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// Host name (or IP address) to verify the certificate against and to send as SNI.
    pub server_name: String,
}

/// A rustls configuration on the `ring` provider trusting the certificates of `ca_pem` (PEM,
/// one or more), or Mozilla's roots (built in) without one.
pub fn tls_config(ca_pem: Option<&[u8]>) -> std::result::Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("the CA file is not PEM certificates: {e}"))?;
                roots.add(cert).map_err(|e| format!("a certificate of the CA file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the CA file holds no certificate".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A response whose body has not been read yet.
#[derive(Debug)]
pub struct Response<R = Conn> {
    /// Status code.
    pub status: u16,
    /// Header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body<R>,
}

impl<R> Response<R> {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The connection, if the body has been read to its end, nothing follows it, and the
    /// server did not say it closes: ready for the next request.
    pub fn into_idle(self) -> Option<R> {
        let done = matches!(self.body.mode, Mode::Length(0) | Mode::Chunked { done: true, .. });
        let close = self.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        (done && !close && self.body.conn.buffer().is_empty()).then(|| self.body.conn.into_inner())
    }
}

/// Idle connections to one endpoint, kept for the next request (at most [`Pool::MAX_IDLE`]).
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// Most idle connections kept.
    pub const MAX_IDLE: usize = 4;

    fn take(&self) -> Option<Conn> {
        self.idle.lock().ok()?.pop()
    }

    /// Keeps a connection for reuse (dropped when the pool is full).
    pub fn put(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < Self::MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

#[derive(Debug)]
enum Mode {
    Length(u64),
    Chunked { left: u64, done: bool },
    Close,
}

/// A response body, decoded from its transfer framing as it is read.
#[derive(Debug)]
pub struct Body<R = Conn> {
    conn: BufReader<R>,
    mode: Mode,
}

impl<R: Read> Body<R> {
    /// Reads at most `limit` bytes of the body (for error documents and XML answers); more is
    /// an error.
    pub fn read_bounded(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.take(limit as u64 + 1).read_to_end(&mut out)?;
        if out.len() > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("response body over {limit} bytes")));
        }
        Ok(out)
    }

    fn chunk_header(&mut self) -> io::Result<u64> {
        let line = read_line(&mut self.conn, MAX_CHUNK_LINE)?;
        let size = line.split(';').next().unwrap_or("").trim();
        if size.is_empty() || size.len() > 15 {
            return Err(bad(format!("bad chunk size line {line:?}")));
        }
        u64::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {size:?}")))
    }
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.mode {
            Mode::Length(0) => Ok(0),
            Mode::Length(left) => {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside the body"));
                }
                self.mode = Mode::Length(left - n as u64);
                Ok(n)
            }
            Mode::Chunked { done: true, .. } => Ok(0),
            Mode::Chunked { left: 0, done: false } => {
                let size = self.chunk_header()?;
                if size == 0 {
                    // Trailers up to the empty line.
                    let mut total = 0;
                    loop {
                        let l = read_line(&mut self.conn, MAX_CHUNK_LINE)?;
                        total += l.len() + 2;
                        if l.is_empty() {
                            break;
                        }
                        if total > MAX_HEADER_BYTES {
                            return Err(bad("chunked trailers too large".into()));
                        }
                    }
                    self.mode = Mode::Chunked { left: 0, done: true };
                    return Ok(0);
                }
                self.mode = Mode::Chunked { left: size, done: false };
                self.read(buf)
            }
            Mode::Chunked { left, done: false } => {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a chunk"));
                }
                let left = left - n as u64;
                if left == 0 {
                    let crlf = read_line(&mut self.conn, 2)?;
                    if !crlf.is_empty() {
                        return Err(bad("chunk not followed by CRLF".into()));
                    }
                }
                self.mode = Mode::Chunked { left, done: false };
                Ok(n)
            }
            Mode::Close => self.conn.read(buf),
        }
    }
}

fn bad(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

/// One line without its CRLF (or LF), at most `limit` bytes.
fn read_line(r: &mut impl BufRead, limit: usize) -> io::Result<String> {
    let mut line = Vec::new();
    r.take(limit as u64 + 2).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > limit {
            bad(format!("line over {limit} bytes"))
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a line")
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("a line that is not UTF-8".into()))
}

/// Turns an I/O error into the S3 error that names cause and fix.
pub fn net_error(endpoint: &HostPort, what: &'static str, timeout: Duration, e: io::Error) -> S3Error {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return S3Error::Tls { endpoint: endpoint.to_string(), detail: tls.to_string() };
    }
    let endpoint = endpoint.to_string();
    match e.kind() {
        io::ErrorKind::ConnectionRefused => S3Error::ConnectionRefused { endpoint },
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            S3Error::Timeout { endpoint, what, seconds: timeout.as_secs().max(1) }
        }
        io::ErrorKind::InvalidData => S3Error::Protocol { endpoint, detail: e.to_string() },
        _ => S3Error::Network { endpoint, what, source: e },
    }
}

fn connect(endpoint: &HostPort, tls: Option<&Tls>, timeout: Duration) -> Result<Conn> {
    let addrs: Vec<_> = match endpoint.address {
        Some(a) => vec![std::net::SocketAddr::new(a, endpoint.port)],
        None => (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(|e| net_error(endpoint, "resolving the host", timeout, e))?
            .collect(),
    };
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = stream.ok_or_else(|| {
        net_error(
            endpoint,
            "connecting",
            timeout,
            last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address")),
        )
    })?;
    let io_err = |e| net_error(endpoint, "configuring the socket", timeout, e);
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let _ = stream.set_nodelay(true);
    Ok(match tls {
        None => Conn::Plain(stream),
        Some(t) => {
            let name = rustls::pki_types::ServerName::try_from(t.server_name.clone())
                .map_err(|_| S3Error::Config(format!("{:?} is not a host name for TLS", t.server_name)))?;
            let c = rustls::ClientConnection::new(Arc::clone(&t.config), name)
                .map_err(|e| S3Error::Tls { endpoint: endpoint.to_string(), detail: e.to_string() })?;
            Conn::Tls(Box::new(rustls::StreamOwned::new(c, stream)))
        }
    })
}

/// How an exchange on a connection failed: `stale` when the server had closed it before
/// taking the request (nothing could be written, or the answer ended before its first byte).
struct Failed {
    error: io::Error,
    what: &'static str,
    stale: bool,
}

fn exchange(conn: Conn, head: &[u8], req: &Request<'_>) -> std::result::Result<Response, Failed> {
    let mut conn = conn;
    let sent = conn.write_all(head).and_then(|()| conn.write_all(req.body)).and_then(|()| conn.flush());
    if let Err(error) = sent {
        return Err(Failed { error, what: "sending the request", stale: true });
    }
    let mut conn = BufReader::with_capacity(64 * 1024, conn);
    match conn.fill_buf() {
        Ok([]) => {
            let error = io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection");
            return Err(Failed { error, what: "reading the response", stale: true });
        }
        Ok(_) => {}
        Err(error) => {
            let stale = matches!(error.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted);
            return Err(Failed { error, what: "reading the response", stale });
        }
    }
    read_response(conn, req.method).map_err(|error| Failed { error, what: "reading the response", stale: false })
}

/// Sends a request (over TLS when `tls` is given) on an idle connection of `pool` or a new
/// one, and reads the status line and headers of the answer. Give the connection back with
/// [`Response::into_idle`] and [`Pool::put`] once the body is read. Without a pool the request
/// asks the server to close the connection.
pub fn send(
    endpoint: &HostPort,
    tls: Option<&Tls>,
    timeout: Duration,
    req: &Request<'_>,
    pool: Option<&Pool>,
) -> Result<Response> {
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (k, v) in &req.headers {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(S3Error::Config(format!("header {k:?} has a line break or colon")));
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    if pool.is_none() {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    if let Some(conn) = pool.and_then(Pool::take) {
        match exchange(conn, head.as_bytes(), req) {
            Ok(r) => return Ok(r),
            // Closed by the server while idle: once more on a new connection.
            Err(f) if f.stale => {}
            Err(f) => return Err(net_error(endpoint, f.what, timeout, f.error)),
        }
    }
    let conn = connect(endpoint, tls, timeout)?;
    exchange(conn, head.as_bytes(), req).map_err(|f| net_error(endpoint, f.what, timeout, f.error))
}

/// Reads a status line and header section from `conn` and frames the body that follows
/// (`method` decides whether a HEAD answer has one). Malformed input is `InvalidData`.
pub fn read_response<R: Read>(mut conn: BufReader<R>, method: &str) -> io::Result<Response<R>> {
    let status_line = read_line(&mut conn, 8192)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status.filter(|s| (100..600).contains(s) && version.starts_with("HTTP/1.")) else {
        return Err(bad(format!("status line {status_line:?}")));
    };
    let mut headers = Vec::new();
    let mut total = 0usize;
    loop {
        let line = read_line(&mut conn, 8192)?;
        if line.is_empty() {
            break;
        }
        total += line.len() + 2;
        if total > MAX_HEADER_BYTES || headers.len() >= MAX_HEADERS {
            return Err(bad("response headers too large".into()));
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(bad(format!("header line {line:?}")));
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    if (100..200).contains(&status) {
        return Err(bad(format!("unexpected interim status {status}")));
    }
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let mode = if method == "HEAD" || status == 204 || status == 304 {
        Mode::Length(0)
    } else if find("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        Mode::Chunked { left: 0, done: false }
    } else if let Some(len) = find("content-length") {
        Mode::Length(len.parse::<u64>().map_err(|_| bad(format!("Content-Length {len:?}")))?)
    } else {
        Mode::Close
    };
    Ok(Response { status, headers, body: Body { conn, mode } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::path::Path;

    /// Serves one canned answer on 127.0.0.1 and returns what the client sent.
    fn serve(answer: &'static [u8]) -> (HostPort, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).unwrap();
            got.truncate(n);
            s.write_all(answer).unwrap();
            got
        });
        (HostPort { host: "127.0.0.1".into(), port, address: None }, t)
    }

    fn get(ep: &HostPort) -> Result<Response> {
        send(
            ep,
            None,
            Duration::from_secs(5),
            &Request { method: "GET", target: "/x".into(), headers: vec![], body: b"" },
            None,
        )
    }

    #[test]
    fn chunked_body() {
        let (ep, t) = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n");
        let mut r = get(&ep).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.read_bounded(100).unwrap(), b"hello world");
        let sent = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(sent.starts_with("GET /x HTTP/1.1\r\n"));
        assert!(sent.contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn length_body_and_limits() {
        let (ep, _t) = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef");
        let mut r = get(&ep).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body.read_bounded(100).unwrap(), b"abc");
        let (ep, _t) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
        assert!(get(&ep).unwrap().body.read_bounded(5).is_err());
    }

    #[test]
    fn malformed_answers_are_errors() {
        for a in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
        ] {
            let (ep, _t) = serve(a);
            let r = get(&ep).and_then(|mut r| {
                r.body.read_bounded(1 << 20).map_err(|e| net_error(&ep, "reading", Duration::from_secs(1), e))
            });
            assert!(r.is_err(), "{:?}", String::from_utf8_lossy(a));
        }
        for a in [
            &b"SMTP ready\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        ] {
            let (ep, _t) = serve(a);
            assert!(matches!(get(&ep), Err(S3Error::Protocol { .. })), "{:?}", String::from_utf8_lossy(a));
        }
    }

    #[test]
    fn refused_and_timeout_are_typed() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = HostPort { host: "127.0.0.1".into(), port: l.local_addr().unwrap().port(), address: None };
        drop(l);
        assert!(matches!(get(&ep), Err(S3Error::ConnectionRefused { .. })));
        // A server that accepts and never answers.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = HostPort { host: "127.0.0.1".into(), port: l.local_addr().unwrap().port(), address: None };
        let r = send(
            &ep,
            None,
            Duration::from_millis(300),
            &Request { method: "GET", target: "/".into(), headers: vec![], body: b"" },
            None,
        );
        assert!(matches!(r, Err(S3Error::Timeout { .. })), "{r:?}");
        drop(l);
    }

    /// The fuzz seeds are valid answers (so fuzzing starts past the framing).
    #[test]
    fn fuzz_seeds_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/s3_response");
        let chunked = std::fs::read(dir.join("chunked.http")).unwrap();
        let mut r = read_response(BufReader::new(&chunked[..]), "GET").unwrap();
        let page = crate::xml::parse_list_objects(&r.body.read_bounded(4096).unwrap()).unwrap();
        assert_eq!(page.objects[0].key, "a");
        let error = std::fs::read(dir.join("error.http")).unwrap();
        let mut r = read_response(BufReader::new(&error[..]), "GET").unwrap();
        assert_eq!((r.status, r.header("etag")), (404, Some("\"x\"")));
        assert_eq!(crate::xml::parse_error(&r.body.read_bounded(4096).unwrap()).unwrap().code, "NoSuchKey");
        for x in ["list.xml", "error.xml", "initiate.xml", "uploads.xml"] {
            crate::xml::parse(&std::fs::read(dir.join(x)).unwrap()).unwrap();
        }
    }
}
