//! AWS Signature Version 4 for S3 requests, as pure code: canonical request, string to sign,
//! signing key and the `Authorization` header. No I/O, no clock: the caller passes the time.

use kdump_sha256::{DIGEST_LEN, Sha256};

/// `SHA-256("")` in hex: the payload hash of a request without a body.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (sent in every request).
    pub access_key_id: String,
    /// The secret access key (never sent; only signs).
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs and panics.
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses a credentials file: the access key id on the first line, the secret on the
    /// second; surrounding whitespace is ignored, and so is anything after the second line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().map(str::trim);
        let id = lines.next().unwrap_or("");
        let secret = lines.next().unwrap_or("");
        if id.is_empty() || secret.is_empty() {
            return Err("the credentials file must hold the access key id on its first line and the secret \
                        access key on its second"
                .into());
        }
        if id.chars().chain(secret.chars()).any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the access key id and secret may not contain spaces or control characters".into());
        }
        Ok(Credentials { access_key_id: id.to_string(), secret_access_key: secret.to_string() })
    }
}

/// What a signature covers besides the request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope<'a> {
    /// `YYYYMMDDTHHMMSSZ`, also sent as `x-amz-date`.
    pub amz_date: &'a str,
    /// Region, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service, `s3` for S3.
    pub service: &'a str,
}

impl Scope<'_> {
    fn date(&self) -> &str {
        self.amz_date.get(..8).unwrap_or(self.amz_date)
    }

    /// `date/region/service/aws4_request`.
    pub fn credential_scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date(), self.region, self.service)
    }
}

/// The parts of an HTTP request that are signed.
#[derive(Debug, Clone)]
pub struct SignableRequest<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The path as sent, already URI-encoded (see [`encode_path`]).
    pub path: &'a str,
    /// Query parameters, not encoded (a parameter without value has `""`).
    pub query: &'a [(String, String)],
    /// Headers to sign, names in any case; must include `host` and `x-amz-date`.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body (or `UNSIGNED-PAYLOAD`).
    pub payload_hash: &'a str,
}

/// Percent-encodes everything but the unreserved characters `A-Z a-z 0-9 - _ . ~`
/// (and `/` when `keep_slash`), as SigV4 requires.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An object key (or `bucket/key`) as an encoded absolute path: S3 encodes a path once and
/// keeps its slashes.
pub fn encode_path(path: &str) -> String {
    let p = uri_encode(path, true);
    if p.starts_with('/') { p } else { format!("/{p}") }
}

/// The canonical query string: encoded names and values, sorted, `name=value` joined by `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut q: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    q.sort();
    q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Lower-cased, sorted header names with trimmed values whose runs of spaces are one space;
/// repeated names joined with `,`. Returns (canonical headers block, signed header list).
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    h.sort_by(|a, b| a.0.cmp(&b.0));
    let mut block = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, (k, v)) in h.iter().enumerate() {
        if i > 0 && h[i - 1].0 == *k {
            block.pop(); // the newline
            block.push(',');
        } else {
            block.push_str(k);
            block.push(':');
            names.push(k);
        }
        block.push_str(v);
        block.push('\n');
    }
    (block, names.join(";"))
}

/// The canonical request (SigV4 task 1).
pub fn canonical_request(req: &SignableRequest<'_>) -> String {
    let (headers, signed) = canonical_headers(req.headers);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        canonical_query(req.query),
        headers,
        signed,
        req.payload_hash
    )
}

/// The string to sign (task 2).
pub fn string_to_sign(scope: &Scope<'_>, canonical_request: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{}\n{}\n{}",
        scope.amz_date,
        scope.credential_scope(),
        hex(&kdump_sha256::digest(canonical_request.as_bytes()))
    )
}

/// HMAC-SHA256 (RFC 2104) over [`kdump_sha256`].
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; DIGEST_LEN] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..DIGEST_LEN].copy_from_slice(&kdump_sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(&k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(&k.map(|b| b ^ 0x5c));
    outer.update(&inner.finalize());
    outer.finalize()
}

/// The signing key (task 3): the secret chained through date, region, service.
pub fn signing_key(secret: &str, scope: &Scope<'_>) -> [u8; DIGEST_LEN] {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), scope.date().as_bytes());
    let k = hmac_sha256(&k, scope.region.as_bytes());
    let k = hmac_sha256(&k, scope.service.as_bytes());
    hmac_sha256(&k, b"aws4_request")
}

/// The hex signature of a request (task 4).
pub fn signature(creds: &Credentials, scope: &Scope<'_>, req: &SignableRequest<'_>) -> String {
    let sts = string_to_sign(scope, &canonical_request(req));
    hex(&hmac_sha256(&signing_key(&creds.secret_access_key, scope), sts.as_bytes()))
}

/// The `Authorization` header value.
pub fn authorization(creds: &Credentials, scope: &Scope<'_>, req: &SignableRequest<'_>) -> String {
    let (_, signed) = canonical_headers(req.headers);
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
        creds.access_key_id,
        scope.credential_scope(),
        signed,
        signature(creds, scope, req)
    )
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a payload.
pub fn payload_hash(body: &[u8]) -> String {
    hex(&kdump_sha256::digest(body))
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the Unix epoch (UTC, proleptic Gregorian).
pub fn amz_date(unix_seconds: u64) -> String {
    let (year, month, day, hour, minute, second) =
        kdump_dumpfile::utc::civil(i64::try_from(unix_seconds).unwrap_or(i64::MAX));
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

#[cfg(test)]
mod tests {
    //! Expected values are AWS's: the SigV4 test suite (`aws-sig-v4-test-suite`, credentials
    //! `AKIDEXAMPLE`, 2015-08-30T12:36:00Z, service `service`) and the S3 examples of
    //! "Signature Calculations for the Authorization Header" (`AKIAIOSFODNN7EXAMPLE`,
    //! 2013-05-24, `examplebucket`).
    use super::*;

    fn suite_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }
    fn s3_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        }
    }
    const SUITE: Scope<'static> = Scope { amz_date: "20150830T123600Z", region: "us-east-1", service: "service" };
    const S3: Scope<'static> = Scope { amz_date: "20130524T000000Z", region: "us-east-1", service: "s3" };

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn suite(method: &str, path: &str, query: &[(&str, &str)], extra: &[(&str, &str)]) -> String {
        let mut headers = h(&[("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")]);
        headers.extend(h(extra));
        let query = h(query);
        let req =
            SignableRequest { method, path, query: &query, headers: &headers, payload_hash: EMPTY_PAYLOAD_SHA256 };
        authorization(&suite_creds(), &SUITE, &req)
    }

    #[test]
    fn aws_test_suite() {
        let p = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ";
        assert_eq!(
            suite("GET", "/", &[], &[]),
            format!(
                "{p}SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(
            suite("POST", "/", &[], &[]),
            format!(
                "{p}SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
        assert_eq!(
            suite("GET", "/", &[("Param2", "value2"), ("Param1", "value1")], &[]),
            format!(
                "{p}SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
        assert_eq!(
            suite("POST", "/", &[], &[("My-Header1", "VALUE1")]),
            format!(
                "{p}SignedHeaders=host;my-header1;x-amz-date, Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"
            )
        );
        assert_eq!(
            suite("GET", "/", &[], &[("My-Header1", " value1"), ("My-Header2", "\"a   b   c\"")]),
            format!(
                "{p}SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
            )
        );
        let unreserved = encode_path("-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
        assert_eq!(
            suite("GET", &unreserved, &[], &[]),
            format!(
                "{p}SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"
            )
        );
        // get-vanilla's intermediate results.
        let headers = h(&[("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")]);
        let req = SignableRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            payload_hash: EMPTY_PAYLOAD_SHA256,
        };
        let creq = canonical_request(&req);
        assert_eq!(
            creq,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign(&SUITE, &creq),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
    }

    fn s3(method: &str, path: &str, query: &[(&str, &str)], extra: &[(&str, &str)], payload: &str) -> String {
        let mut headers = h(&[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", payload),
        ]);
        headers.extend(h(extra));
        let query = h(query);
        let req = SignableRequest { method, path, query: &query, headers: &headers, payload_hash: payload };
        signature(&s3_creds(), &S3, &req)
    }

    #[test]
    fn aws_s3_examples() {
        // GET Object, the first 10 bytes.
        assert_eq!(
            s3("GET", "/test.txt", &[], &[("Range", "bytes=0-9")], EMPTY_PAYLOAD_SHA256),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        // PUT Object: a key that needs encoding, a body.
        let body = payload_hash(b"Welcome to Amazon S3.");
        assert_eq!(body, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        assert_eq!(encode_path("test$file.text"), "/test%24file.text");
        assert_eq!(
            s3(
                "PUT",
                &encode_path("test$file.text"),
                &[],
                &[("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
                &body
            ),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
        // GET Bucket lifecycle: a parameter without a value.
        assert_eq!(
            s3("GET", "/", &[("lifecycle", "")], &[], EMPTY_PAYLOAD_SHA256),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        // GET Bucket (List Objects): the query sorted.
        assert_eq!(
            s3("GET", "/", &[("prefix", "J"), ("max-keys", "2")], &[], EMPTY_PAYLOAD_SHA256),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn hmac_rfc4231_case_2() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn credentials_file() {
        let c = Credentials::parse("AKID\n  secret/x+y \n").unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.as_str()), ("AKID", "secret/x+y"));
        assert!(Credentials::parse("AKID\n").is_err());
        assert!(Credentials::parse("").is_err());
        assert!(!format!("{c:?}").contains("secret"));
    }
}
