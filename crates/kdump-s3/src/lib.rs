// SPDX-License-Identifier: GPL-2.0-only
//! Dumps straight to S3-compatible object storage.
//!
//! A small blocking client, built for the capture kernel: SigV4 signing as pure code over
//! `kdump-sha256` ([`sigv4`]), HTTP/1.1 over `std::net::TcpStream` ([`http`]; `https://`
//! through rustls on `ring`, no OpenSSL, trusting Mozilla's built-in roots or the CA of a PEM
//! file), S3's XML read by a bounded parser that never panics ([`xml`]), the operations a dump upload and a fleet view
//! need ([`Client`]), and [`MultipartSink`], the `WriteAt` the kdump-compressed writer writes
//! through while the dump is uploaded in parts.

pub mod client;
pub mod error;
pub mod http;
pub mod multipart;
pub mod sigv4;
pub mod xml;

pub use client::{Addressing, Client, ClientConfig, Endpoint, RetryPolicy, S3Url, parse_endpoint};
pub use error::{Result, S3Error};
pub use multipart::{
    Aborted, Completed, MAX_PARTS, MIN_PART_SIZE, MultipartConfig, MultipartSink, Progress, marker_key,
};
pub use sigv4::Credentials;
pub use xml::{ListPage, ObjectEntry};
