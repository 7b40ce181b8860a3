//! What can go wrong talking to an S3 endpoint, each with its cause and its fix.

use std::io;

/// An S3 operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The target URL, endpoint or options are malformed.
    #[error("S3 configuration: {0}")]
    Config(String),
    /// The TLS handshake failed (untrusted or mismatched certificate, no common protocol).
    #[error(
        "TLS with {endpoint} failed: {detail}; if the endpoint's certificate is signed by a private CA, give its PEM \
         as the CA file; check that the endpoint's host name is the one in its certificate"
    )]
    Tls {
        /// `host:port`.
        endpoint: String,
        /// rustls's reason.
        detail: String,
    },
    /// Nothing listens at the endpoint.
    #[error("connection to {endpoint} refused: is the S3 server running and is the endpoint's host and port right?")]
    ConnectionRefused {
        /// `host:port`.
        endpoint: String,
    },
    /// The endpoint did not answer in time.
    #[error(
        "{endpoint} did not answer within {seconds} s ({what}): check the network path to the endpoint, or raise the timeout"
    )]
    Timeout {
        /// `host:port`.
        endpoint: String,
        /// Connecting, sending or receiving.
        what: &'static str,
        /// The timeout.
        seconds: u64,
    },
    /// Any other network error.
    #[error("{endpoint}: {source} (network error while {what})")]
    Network {
        /// `host:port`.
        endpoint: String,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The server's answer is not valid HTTP or not the S3 XML expected.
    #[error("{endpoint}: malformed response: {detail}; is the endpoint an S3 server?")]
    Protocol {
        /// `host:port`.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// The server refused the access key or the signature.
    #[error(
        "the S3 server refused the credentials ({code}: {message}): check the credentials file (access key id on the \
         first line, secret on the second) and the region"
    )]
    Credentials {
        /// `InvalidAccessKeyId`, `SignatureDoesNotMatch`, ...
        code: String,
        /// The server's message.
        message: String,
    },
    /// The signature's time is too far from the server's.
    #[error(
        "the S3 server says this machine's clock is off ({message}): set the clock (the RTC) to UTC within 15 minutes"
    )]
    ClockSkew {
        /// The server's message.
        message: String,
    },
    /// Authenticated, but not allowed.
    #[error(
        "access denied ({message}): the key needs s3:PutObject, GetObject, DeleteObject and ListBucket on the bucket"
    )]
    AccessDenied {
        /// The server's message.
        message: String,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist: create it, or fix the bucket in target.url")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
    },
    /// The object does not exist.
    #[error("object {key:?} does not exist")]
    NoSuchKey {
        /// The key.
        key: String,
    },
    /// The multipart upload is gone (aborted or completed elsewhere).
    #[error("multipart upload of {key:?} no longer exists on the server (aborted, or expired by a lifecycle rule)")]
    NoSuchUpload {
        /// The key.
        key: String,
    },
    /// Any other error the server returned.
    #[error("S3 error {status} {code}: {message}")]
    Service {
        /// HTTP status.
        status: u16,
        /// S3 error code (or the status text when the body had none).
        code: String,
        /// The server's message.
        message: String,
    },
    /// A multipart upload would need more than 10,000 parts.
    #[error(
        "the dump needs more than {max} parts of {part_size} bytes: choose the part size from a larger size estimate"
    )]
    TooManyParts {
        /// The part limit.
        max: u32,
        /// The part size in use.
        part_size: u64,
    },
    /// The sink was used in a way it cannot upload.
    #[error("multipart sink: {0}")]
    Sink(String),
}

impl S3Error {
    /// Whether trying the same request again may succeed (network trouble, server errors,
    /// throttling), as opposed to a refusal that will repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            S3Error::ConnectionRefused { .. }
            | S3Error::Timeout { .. }
            | S3Error::Network { .. }
            | S3Error::Protocol { .. } => true,
            S3Error::Service { status, code, .. } => {
                *status >= 500 || *status == 429 || code == "SlowDown" || code == "RequestTimeout"
            }
            _ => false,
        }
    }

    /// The error of an S3 XML error body (or of the status alone).
    pub fn from_response(status: u16, err: Option<crate::xml::ErrorBody>, bucket: &str, key: &str) -> S3Error {
        let (code, message) = match err {
            Some(e) => (e.code, e.message),
            None => (String::new(), String::new()),
        };
        match code.as_str() {
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AuthorizationHeaderMalformed"
            | "InvalidToken"
            | "ExpiredToken" => S3Error::Credentials { code, message },
            "AccessDenied" => S3Error::AccessDenied { message },
            "RequestTimeTooSkewed" => S3Error::ClockSkew { message },
            "NoSuchBucket" => S3Error::NoSuchBucket { bucket: bucket.to_string() },
            "NoSuchKey" => S3Error::NoSuchKey { key: key.to_string() },
            "NoSuchUpload" => S3Error::NoSuchUpload { key: key.to_string() },
            "" if status == 403 => {
                S3Error::Credentials { code: "403 Forbidden".into(), message: "no error body".into() }
            }
            "" if status == 404 && !key.is_empty() => S3Error::NoSuchKey { key: key.to_string() },
            "" => S3Error::Service { status, code: format!("HTTP {status}"), message },
            _ => S3Error::Service { status, code, message },
        }
    }
}

/// Result of S3 operations.
pub type Result<T> = std::result::Result<T, S3Error>;
