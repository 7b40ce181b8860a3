// SPDX-License-Identifier: GPL-2.0-only
//! Dumps straight to S3-compatible object storage.
//!
//! A small blocking client, built for the capture kernel: SigV4 signing as pure code over
//! `kdump-sha256` ([`sigv4`]), HTTP/1.1 over `std::net::TcpStream` ([`http`]; `https://`
//! through rustls on `ring`, no OpenSSL, trusting Mozilla's built-in roots or the CA of a PEM
//! file), S3's XML read by a bounded parser that never panics ([`xml`]), the operations a dump upload and a fleet view
//! need ([`Client`]), and [`MultipartSink`], the `WriteAt` the kdump-compressed writer writes
//! through while the dump is uploaded in parts.
//!
//! A capture kernel's upload, in outline (small files first, so a crash is visible even when
//! the dump fails):
//!
//! ```no_run
//! # fn pages() -> Vec<(u64, Vec<u8>)> { Vec::new() }
//! use std::time::Duration;
//! use kdump_dumpfile::{Codec, KdumpConfig, KdumpWriter};
//! use kdump_s3::{Addressing, Client, ClientConfig, Credentials, MultipartConfig, MultipartSink, RetryPolicy, S3Url};
//!
//! let url = S3Url::parse("s3://crash-dumps/fleet")?;
//! let client = Client::new(ClientConfig {
//!     endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
//!     ca_pem: None,
//!     region: "eu-west-1".into(),
//!     bucket: url.bucket.clone(),
//!     addressing: Addressing::VirtualHost,
//!     credentials: Credentials::parse("AKIA...\nsecret\n").map_err(kdump_s3::S3Error::Config)?,
//!     timeout: Duration::from_secs(30),
//!     address: None,
//! })?;
//! let dir = url.key("host1/20261201T053000Z");
//! RetryPolicy::default().run(|| client.put_object(&format!("{dir}/dmesg.txt"), b"..."))?;
//!
//! let parts = MultipartConfig::for_estimated_size(2 << 30); // the dump's estimated size
//! let mut sink = MultipartSink::start(client.clone(), &format!("{dir}/vmcore"), parts)?;
//! let progress = sink.progress(); // bytes_uploaded() for the progress line
//! let mut cfg = KdumpConfig::new(4096, 1 << 20, vec![0..1 << 20], Codec::Zstd);
//! cfg.data_alignment = Some(parts.part_size); // metadata parts apart from data parts
//! let written = (|| {
//!     let mut w = KdumpWriter::new(&mut sink, cfg)?;
//!     for (pfn, page) in pages() {
//!         w.append_page(pfn, &page)?;
//!     }
//!     w.finish().map(|_| ())
//! })();
//! match written {
//!     Ok(()) => {
//!         sink.complete()?; // parts left, part 1 last, CompleteMultipartUpload, marker removed
//!     }
//!     Err(e) => {
//!         // No object appears; `<key>.incomplete` says why.
//!         let _ = sink.abort(&e.to_string());
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod http;
pub mod multipart;
pub mod sigv4;
#[cfg(feature = "test-server")]
pub mod testserver;
pub mod xml;

pub use client::{Addressing, Client, ClientConfig, Endpoint, RetryPolicy, S3Url, parse_endpoint};
pub use error::{Result, S3Error};
pub use multipart::{
    Aborted, Completed, MAX_PARTS, MIN_PART_SIZE, MultipartConfig, MultipartSink, Progress, marker_key,
};
pub use sigv4::Credentials;
pub use xml::{ListPage, ObjectEntry};
