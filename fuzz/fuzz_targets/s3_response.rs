//! What an S3 endpoint answers is untrusted: the HTTP response parser (status line, headers,
//! chunked and length-framed bodies) and the XML documents never panic.
#![no_main]

use std::io::{BufReader, Read};

use kdump_s3::{http, xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // XML alone (the seeds are documents), then the bytes as a whole HTTP answer.
    if let Ok(root) = xml::parse(data) {
        let _ = (root.child_text("Code"), root.children_named("Contents").count());
    }
    let _ = xml::parse_list_objects(data);
    let _ = xml::parse_error(data);
    let _ = xml::parse_upload_id(data);
    let _ = xml::parse_uploads(data);
    for method in ["GET", "HEAD"] {
        if let Ok(mut r) = http::read_response(BufReader::with_capacity(64, data), method) {
            let _ = r.header("etag");
            let mut body = Vec::new();
            if (&mut r.body).take(1 << 20).read_to_end(&mut body).is_ok() {
                let _ = xml::parse_list_objects(&body);
                let _ = xml::parse_error(&body);
            }
        }
    }
});
